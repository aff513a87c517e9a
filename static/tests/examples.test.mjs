// The examples in static/README.md run here, so the documentation cannot drift from working code.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";

import { useRefreshManager } from "../examples/axios-interceptors.js";
import { openLiveFeed } from "../examples/live-socket.js";
import { fakeWebSockets, makeWorld, settle } from "./fakes.mjs";

const here = new URL("../", import.meta.url);

test("the README shows the interceptor example exactly as it is tested", async () => {
  const readme = await readFile(new URL("README.md", here), "utf8");
  const example = await readFile(new URL("examples/axios-interceptors.js", here), "utf8");
  assert.ok(readme.includes(example.trim()), "static/README.md must show examples/axios-interceptors.js verbatim");
});

/** A minimal axios-shaped client over a scripted server. */
function fakeClient(server) {
  const request = [];
  const response = [];
  const client = {
    interceptors: {
      request: { use: (f) => request.push(f) },
      response: { use: (ok, failed) => response.push([ok, failed]) },
    },
    async request(config) {
      for (const f of request) config = await f(config);
      const answer = server(config);
      const [ok, failed] = response[0];
      if (answer.status < 400) return ok(answer);
      return failed({ response: answer, config });
    },
  };
  return client;
}

function fakeManager(tokens) {
  const manager = { accessToken: tokens[0], refreshes: 0 };
  manager.refresh = async () => {
    manager.refreshes += 1;
    manager.accessToken = tokens[manager.refreshes] ?? null;
    return manager.accessToken !== null;
  };
  return manager;
}

const expired = { status: 401, headers: { "www-authenticate": 'Bearer error="invalid_token"' } };

test("attaches the token, refreshes once on an invalid-token 401 and replays", async () => {
  const seen = [];
  const server = (config) => {
    seen.push(config.headers.Authorization);
    return config.headers.Authorization === "Bearer new" ? { status: 200, data: "ok" } : expired;
  };
  const manager = fakeManager(["old", "new"]);
  const client = fakeClient(server);
  useRefreshManager(client, manager);

  const answer = await client.request({ url: "/api/me", headers: {} });

  assert.equal(answer.data, "ok");
  assert.deepEqual(seen, ["Bearer old", "Bearer new"]);
  assert.equal(manager.refreshes, 1);
});

test("does not loop when the refreshed token is refused too", async () => {
  const manager = fakeManager(["old", "new"]);
  const client = fakeClient(() => expired);
  useRefreshManager(client, manager);

  await assert.rejects(client.request({ url: "/api/me", headers: {} }), (error) => error.response.status === 401);
  assert.equal(manager.refreshes, 1);
});

test("a 401 without an invalid_token challenge, or a logged-out manager, is passed to the app", async () => {
  const plain401 = { status: 401, headers: { "www-authenticate": 'Bearer realm="api"' } };
  const manager = fakeManager(["old"]);
  const client = fakeClient(() => plain401);
  useRefreshManager(client, manager);
  await assert.rejects(client.request({ url: "/x", headers: {} }));
  assert.equal(manager.refreshes, 0);

  const loggedOut = fakeManager(["old"]);
  const other = fakeClient(() => expired);
  useRefreshManager(other, loggedOut);
  await assert.rejects(other.request({ url: "/x", headers: {} }));
  assert.equal(loggedOut.refreshes, 1);
});

test("the README shows the live socket example exactly as it is tested", async () => {
  const readme = await readFile(new URL("README.md", here), "utf8");
  const example = await readFile(new URL("examples/live-socket.js", here), "utf8");
  assert.ok(readme.includes(example.trim()), "static/README.md must show examples/live-socket.js verbatim");
});

const expOf = (token) => JSON.parse(Buffer.from(token.split(".")[1], "base64url")).exp;

test("the live feed is renewed in band, and resumes after the last update when a connection drops", async (t) => {
  const world = makeWorld();
  const tab = world.openTab();
  await tab.manager.start();
  const { WebSocket, sockets } = fakeWebSockets();
  const updates = [];
  const info = t.mock.method(console, "info", () => {});
  const feed = openLiveFeed(tab.manager, (update) => updates.push(update), {
    WebSocket, baseUrl: "https://app.example/", now: world.clock.now, setTimeout: world.clock.setTimeout,
    clearTimeout: world.clock.clearTimeout, random: () => 0.5, events: null, log: () => {},
  });
  await settle();
  assert.equal(sockets[0].url, "wss://app.example/ws/feed");
  // no protocol of the feed's own: the marker and the token only, so the server selects the marker
  assert.deepEqual(sockets[0].protocols, ["starlette-refresh", `starlette-refresh.bearer.${tab.manager.accessToken}`]);
  sockets[0].accept("starlette-refresh");
  assert.deepEqual(JSON.parse(sockets[0].sent[0]), { type: "resume", after: null });
  sockets[0].receive(JSON.stringify({ id: 7, text: "hello" }));
  assert.deepEqual(updates, [{ id: 7, text: "hello" }]);

  await world.clock.advance(810_000); // the manager refreshes before the token ends
  assert.equal(world.server.refreshCalls.length, 2);
  assert.deepEqual(sockets[0].sent.slice(1), [`starlette-refresh.renew ${tab.manager.accessToken}`]);
  sockets[0].receive(`starlette-refresh.renewed ${expOf(tab.manager.accessToken)}`); // the server's answer
  assert.equal(feed.renewals, 1);
  assert.deepEqual(updates, [{ id: 7, text: "hello" }], "the answer is the socket's, not an update");
  await world.clock.advance(100_000); // past the first token's end: the same connection lives on
  sockets[0].receive(JSON.stringify({ id: 8, text: "still here" }));
  assert.equal(sockets.length, 1);
  assert.equal(feed.state, "open");
  assert.deepEqual(updates.map(({ id }) => id), [7, 8]);

  sockets[0].drop(1012, "service restart"); // the connection drops: updates sent meanwhile are lost
  await world.clock.advance(750); // random() 0.5: the first backoff
  assert.equal(sockets.length, 2);
  assert.equal(sockets[1].token, tab.manager.accessToken);
  assert.equal(world.server.refreshCalls.length, 2, "the reconnect needed no refresh of its own");
  sockets[1].accept("starlette-refresh");
  assert.deepEqual(JSON.parse(sockets[1].sent[0]), { type: "resume", after: 8 });

  await tab.manager.logout();
  assert.equal(feed.state, "closed");
  assert.deepEqual(info.mock.calls.at(-1).arguments, ["Live feed closed for good (1000 logged out)"]);
});
