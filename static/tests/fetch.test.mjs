// Duty 5: fetch() attaches the bearer token, waits for a running refresh, refreshes once on a 401
// invalid_token and replays the request intact, and never loops.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { answers, deferred, makeWorld, settle } from "./fakes.mjs";

async function loggedIn(options) {
  const world = makeWorld(options);
  const tab = world.openTab();
  await tab.manager.start();
  return { world, tab, manager: tab.manager, server: world.server };
}

/** The API rejects the first `n` calls with 401 invalid_token, then accepts the current token. */
function rejectFirst(server, n, reject = answers.invalidToken) {
  let seen = 0;
  server.api = (call) => {
    seen++;
    if (seen <= n) return reject();
    return call.authorization === `Bearer ${server.current}` ? answers.json({ ok: true, body: call.body }) : answers.invalidToken();
  };
}

describe("fetch()", () => {
  it("attaches Authorization: Bearer and keeps the caller's headers and init", async () => {
    const { manager, server } = await loggedIn();
    const response = await manager.fetch("/api/me", { headers: { "X-Trace": "t1" }, credentials: "include" });
    assert.equal(response.status, 200);
    const [call] = server.apiCalls;
    assert.equal(call.authorization, `Bearer ${manager.accessToken}`);
    assert.equal(new Headers(call.init.headers).get("X-Trace"), "t1");
    assert.equal(call.init.credentials, "include");
  });

  it("waits for a running refresh before sending", async () => {
    const { manager, server } = await loggedIn();
    const gate = deferred();
    server.refreshQueue.push(async () => {
      await gate.promise;
      return server.issue();
    });
    const oldToken = manager.accessToken;
    void manager.refresh();
    const pending = manager.fetch("/api/me");
    await settle();
    assert.equal(server.apiCalls.length, 0);
    gate.resolve();
    assert.equal((await pending).status, 200);
    assert.equal(server.apiCalls.length, 1);
    assert.notEqual(server.apiCalls[0].authorization, `Bearer ${oldToken}`);
    assert.equal(server.apiCalls[0].authorization, `Bearer ${manager.accessToken}`);
  });

  it("refreshes first when the token has expired (no wake-up event seen)", async () => {
    const { world, manager, server } = await loggedIn();
    world.clock.jump(3_600_000);
    const response = await manager.fetch("/api/me");
    assert.equal(response.status, 200);
    assert.deepEqual(server.calls.map((call) => call.url), ["/auth/refresh", "/auth/refresh", "/api/me"]);
  });

  it("on 401 invalid_token refreshes once and replays the request with its body intact", async () => {
    const { manager, server } = await loggedIn();
    rejectFirst(server, 1);
    const body = JSON.stringify({ title: "draft", tags: ["a", "b"] });
    const response = await manager.fetch("/api/notes", {
      method: "POST", body, headers: { "Content-Type": "application/json" },
    });
    assert.equal(response.status, 200);
    assert.equal(server.apiCalls.length, 2);
    assert.equal(server.refreshCalls.length, 2, "the restore plus exactly one refresh");
    const [first, second] = server.apiCalls;
    assert.equal(first.body, body);
    assert.equal(second.body, body);
    assert.equal(second.method, "POST");
    assert.equal(new Headers(second.init.headers).get("Content-Type"), "application/json");
    assert.notEqual(first.authorization, second.authorization);
    assert.equal(second.authorization, `Bearer ${manager.accessToken}`);
    assert.deepEqual(await response.json(), { ok: true, body });
  });

  it("replays a Request object with its body intact", async () => {
    const { manager, server } = await loggedIn();
    rejectFirst(server, 1);
    const request = new Request("http://app.test/api/upload", {
      method: "PUT", body: "line one\nline two", headers: { "X-Kind": "text" },
    });
    const response = await manager.fetch(request);
    assert.equal(response.status, 200);
    assert.deepEqual(server.apiCalls.map((call) => call.body), ["line one\nline two", "line one\nline two"]);
    assert.deepEqual(server.apiCalls.map((call) => call.method), ["PUT", "PUT"]);
    assert.equal(new Headers(server.apiCalls[1].init.headers).get("X-Kind"), "text");
    assert.equal(server.apiCalls[1].authorization, `Bearer ${manager.accessToken}`);
  });

  it("returns a second 401 as is: no loop", async () => {
    const { manager, server } = await loggedIn();
    rejectFirst(server, Infinity);
    const response = await manager.fetch("/api/me");
    assert.equal(response.status, 401);
    assert.equal(server.apiCalls.length, 2);
    assert.equal(server.refreshCalls.length, 2);
    assert.equal((await response.json()).error, "invalid_token");
  });

  it("returns a 401 without error=invalid_token as is, without refreshing", async () => {
    const { manager, server } = await loggedIn();
    for (const reject of [answers.bareChallenge, () => answers.plain(401), () => answers.error(401, "insufficient_scope")]) {
      rejectFirst(server, 1, reject);
      const response = await manager.fetch("/api/me");
      assert.equal(response.status, 401);
    }
    assert.equal(server.apiCalls.length, 3);
    assert.equal(server.refreshCalls.length, 1);
  });

  it("several 401s at once share one refresh", async () => {
    const { manager, server } = await loggedIn();
    rejectFirst(server, 3);
    const responses = await Promise.all([1, 2, 3].map((i) => manager.fetch(`/api/items/${i}`)));
    assert.deepEqual(responses.map((r) => r.status), [200, 200, 200]);
    assert.equal(server.refreshCalls.length, 2);
    assert.equal(server.apiCalls.length, 6);
  });

  it("returns the 401 when the refresh ends the session", async () => {
    const { manager, server, tab } = await loggedIn();
    rejectFirst(server, 1);
    server.refreshQueue.push(() => answers.error(400, "invalid_grant"));
    const response = await manager.fetch("/api/me");
    assert.equal(response.status, 401);
    assert.equal(server.apiCalls.length, 1);
    assert.equal(manager.state, "logged-out");
    assert.deepEqual(tab.of("logged-out"), [{ reason: "invalid_grant" }]);
  });

  it("sends the request without a token when logged out", async () => {
    const world = makeWorld();
    world.server.refreshQueue.push(() => answers.error(400, "invalid_request"));
    const tab = world.openTab();
    assert.equal(await tab.manager.start(), false);
    world.server.api = () => answers.bareChallenge();
    const response = await tab.manager.fetch("/api/public", { headers: { Accept: "text/plain" } });
    assert.equal(response.status, 401);
    assert.equal(world.server.apiCalls[0].authorization, null);
    assert.equal(world.server.refreshCalls.length, 1, "no refresh attempt");
  });

  it("does not wait for a failing refresh while the token still works (store outage)", async () => {
    const { world, manager, server } = await loggedIn();
    server.refreshQueue.push(...Array(5).fill(() => answers.error(503, "temporarily_unavailable", { "Retry-After": "2" })));
    await world.clock.advance(811_000);
    assert.equal(manager.state, "reconnecting");
    const response = await manager.fetch("/api/me");
    assert.equal(response.status, 200);
    assert.equal(server.apiCalls[0].authorization, `Bearer ${manager.accessToken}`);
  });

  it("lets init.signal abort the wait for a refresh", async () => {
    const world = makeWorld();
    world.server.refreshQueue.push(...Array(5).fill(() => answers.error(503, "temporarily_unavailable")));
    const tab = world.openTab();
    void tab.manager.start();
    await settle();
    assert.equal(tab.manager.state, "reconnecting");
    const controller = new AbortController();
    const pending = tab.manager.fetch("/api/me", { signal: controller.signal });
    controller.abort(new Error("user left the page"));
    await assert.rejects(pending, /user left the page/);
    assert.equal(world.server.apiCalls.length, 0);
    tab.manager.stop();
  });
});
