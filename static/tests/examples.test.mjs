// The examples in static/README.md run here, so the documentation cannot drift from working code.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";

import { useRefreshManager } from "../examples/axios-interceptors.js";

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
