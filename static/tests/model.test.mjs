// Issue 13: refresh-manager bugs found by a model-based test of its state machine (fast-check), each
// shrunk to a deterministic test that failed before its fix.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { answers, deferred, makeWorld, settle } from "./fakes.mjs";

// Bugs the model found, shrunk to deterministic tests (each failed before its fix).
describe("found by the model", () => {
  it("a tab stopped while another tab logs out does not come back logged in on start()", async () => {
    // shrunk: open(2), close(2), open(0), logout(0), open(2)
    const world = makeWorld();
    const a = world.openTab("a");
    const b = world.openTab("b");
    assert.equal(await a.manager.start(), true);
    a.manager.stop(); // deaf to the channel from now on
    await b.manager.start();
    await settle();
    await b.manager.logout();
    await settle();
    world.server.refreshQueue.push(() => answers.error(401, "invalid_grant")); // the logout ended the session
    assert.equal(await a.manager.start(), false, "restores through the cookie, which the logout cleared");
    assert.equal(a.manager.accessToken, null);
    assert.equal(a.manager.state, "logged-out");
    assert.equal(a.calls().filter((call) => call.url.endsWith("/auth/refresh")).length, 2);
  });

  it("nor with its old token after a login in another tab: it restores the new session", async () => {
    const world = makeWorld();
    const a = world.openTab("a");
    const b = world.openTab("b");
    await a.manager.start();
    const old = a.manager.accessToken;
    a.manager.stop();
    await b.manager.start();
    b.manager.setSession({ access_token: "new-login", expires_in: 900 }); // maybe another user
    await settle();
    assert.equal(await a.manager.start(), true);
    assert.notEqual(a.manager.accessToken, old, "the token from before the login is dropped");
    assert.equal(a.manager.accessToken, world.server.current, "and the session restored through the cookie");
    assert.equal(a.manager.state, "logged-in");
  });

  it("a logged-out tab does not wake on another tab's refresh, only on a login", async () => {
    // shrunk: server mode 503 (the logout request fails: the session lives on), open(0), logout(0),
    // open(1): the new tab restores the session, and the logged-out tab took its token
    const world = makeWorld();
    const a = world.openTab("a");
    await a.manager.start();
    await a.manager.logout(); // the fake server keeps the session, as when the logout request fails
    const b = world.openTab("b");
    assert.equal(await b.manager.start(), true, "a page opened now restores the session through the cookie");
    await settle();
    assert.equal(a.manager.accessToken, null, "the tab that logged out stays out");
    assert.equal(a.manager.state, "logged-out");
    b.manager.setSession({ access_token: "new-login", expires_in: 900 });
    await settle();
    assert.equal(a.manager.accessToken, "new-login", "a login wakes it");
  });

  it("a tab whose refresh failed for good hears a logout in another tab, and stays out", async () => {
    // shrunk: the server answers 503, open(1), next refresh answers 403, open(0), logout(1) (its
    // request fails: the session lives on), open(2): the new tab restored the session, and the tab
    // that had failed took its token
    const world = makeWorld();
    const a = world.openTab("a");
    const b = world.openTab("b");
    await a.manager.start();
    world.server.refreshQueue.push(() => answers.error(403, "cross_site_request"));
    assert.equal(await b.manager.start(), false);
    assert.equal(b.manager.state, "failed");
    await a.manager.logout();
    await settle();
    assert.equal(b.manager.state, "logged-out", "logged out in every tab");
    assert.deepEqual(b.of("logged-out"), [{ reason: "other-tab" }]);
    const c = world.openTab("c");
    assert.equal(await c.manager.start(), true, "the session the logout request left alive, restored by a new page");
    await settle();
    assert.equal(b.manager.accessToken, null, "the logged-out tab stays out");
  });

  it("a refresh answer that comes after a login in another tab, before its message, does not log the login out", async () => {
    // shrunk: pause the channel, open(0), open(1), logout(1), next refresh answers held, jump 60000,
    // event(0, focus), login(1), then the held answer (401: the cookie it carried was cleared) came
    // before the channel's messages
    const world = makeWorld();
    const a = world.openTab("a");
    const b = world.openTab("b");
    await a.manager.start();
    await b.manager.start();
    await settle();
    const reply = deferred();
    world.server.refreshQueue.push(() => reply.promise);
    const flight = a.manager.refresh();
    await settle();
    world.bus.paused = true; // b's login is on its way to a
    b.manager.setSession({ access_token: "new-login", expires_in: 900 });
    reply.resolve(answers.error(401, "invalid_grant")); // the answer for the session the login replaced
    assert.equal(await flight, true, "superseded by the login: its callers learn the tab is logged in");
    world.bus.resume();
    await settle();
    for (const tab of [a, b]) {
      assert.equal(tab.manager.accessToken, "new-login", `${tab.name} keeps the login`);
      assert.equal(tab.manager.state, "logged-in");
      assert.deepEqual(tab.of("logged-out"), []);
    }
  });

  it("nor does a token for the session the login replaced come back", async () => {
    const world = makeWorld();
    const a = world.openTab("a");
    const b = world.openTab("b");
    await a.manager.start();
    await b.manager.start();
    await settle();
    const reply = deferred();
    world.server.refreshQueue.push(() => reply.promise);
    const flight = a.manager.refresh();
    await settle();
    world.bus.paused = true;
    b.manager.setSession({ access_token: "new-login", expires_in: 900 });
    reply.resolve(world.server.issue()); // a token of the old session
    assert.equal(await flight, true);
    assert.notEqual(a.manager.accessToken, world.server.current, "the old session's token is dropped");
    world.bus.resume();
    await settle();
    assert.equal(a.manager.accessToken, "new-login");
    assert.equal(b.manager.accessToken, "new-login");
    assert.deepEqual(b.of("refreshed").map((detail) => detail.source), ["network", "login"]);
  });

  it("a tab restoring while another tab logs out is logged out by its message, not left refreshing", async () => {
    // from the model: the restore's answer came after the logout, before its message
    const world = makeWorld();
    const a = world.openTab("a");
    const b = world.openTab("b");
    await a.manager.start();
    await settle();
    const reply = deferred();
    world.server.refreshQueue.push(() => reply.promise);
    const restore = b.manager.start();
    await settle();
    world.bus.paused = true;
    await a.manager.logout(); // the fake server keeps the session, as when the logout request fails
    reply.resolve(world.server.issue());
    assert.equal(await restore, false, "the answer came from before the logout: dropped");
    assert.equal(b.manager.accessToken, null);
    world.bus.resume();
    await settle();
    assert.equal(b.manager.state, "logged-out");
    assert.deepEqual(b.of("logged-out"), [{ reason: "other-tab" }]);
    const c = world.openTab("c");
    assert.equal(await c.manager.start(), true, "a page opened now restores the session");
    await settle();
    assert.equal(b.manager.accessToken, null, "and the logged-out tab stays out");
  });

  it("requests rejected before a logout do not refresh the logged-out tab, at once or after the floor", async () => {
    // shrunk: tokens live 0.01 s, open(0), fetch(0), fetch(0), fetch(0), logout(0), then the floor passed
    const world = makeWorld({ lifetime: 60 });
    const tab = world.openTab();
    await tab.manager.start();
    world.server.api = () => answers.invalidToken();
    assert.equal((await tab.manager.fetch("/api/first")).status, 401);
    assert.equal(world.server.refreshCalls.length, 2, "the restore, and one refresh for the rejected request");
    const waiting = [tab.manager.fetch("/api/b"), tab.manager.fetch("/api/c")]; // rejected: they wait for the floor
    await settle();
    await tab.manager.logout();
    world.server.refreshQueue.push(...Array(5).fill(() => answers.error(401, "invalid_grant")));
    await world.clock.advance(1_000);
    assert.deepEqual((await Promise.all(waiting)).map((response) => response.status), [401, 401]);
    assert.equal(world.server.refreshCalls.length, 2, "no refresh for a tab that logged out meanwhile");
    assert.equal(tab.manager.state, "logged-out");
    assert.deepEqual(tab.of("logged-out").map((detail) => detail.reason), ["logout"]);
  });

  it("logout() ends even when its request hangs: the request gets refreshTimeoutMs, as a refresh does", async () => {
    // shrunk: the server hangs, open(0), logout(0)
    const world = makeWorld();
    const signals = [];
    const hangLogout = (url, init) => (url === "/auth/logout" ? (signals.push(init.signal), new Promise(() => {})) : world.server.issue());
    const tab = world.openTab("tab", { fetch: async (url, init) => hangLogout(url, init) });
    await tab.manager.start();
    let done = false;
    void tab.manager.logout().then(() => (done = true));
    await world.clock.advance(9_999);
    assert.equal(done, false);
    assert.equal(tab.manager.state, "logged-out", "the local logout does not wait for the request");
    await world.clock.advance(1);
    assert.equal(done, true);
    assert.equal(signals[0].aborted, true, "the request is aborted");
    assert.ok(tab.messages().includes("Logout request failed (timed out after 10s); the server keeps the session until it expires"));
    assert.equal(world.clock.pending, 0);
  });
});
