// Issue 13: refresh-manager bugs found by a model-based test of its state machine (fast-check), each
// shrunk to a deterministic test that failed before its fix.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { answers, makeWorld, settle } from "./fakes.mjs";

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
});
