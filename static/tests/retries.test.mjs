// Duties 6 and 7: retry outages with capped jittered backoff and never log out for them; log out on
// definite answers only; logouts reach the other tabs.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { RefreshError } from "../refresh-manager.js";
import { answers, makeWorld, networkError, settle } from "./fakes.mjs";

const HOUR = 3_600_000;

const FAILURES = [
  ["a network error", networkError, "network error", null],
  ["500", () => answers.plain(500), "500", 500],
  ["502", () => answers.plain(502), "502", 502],
  ["503 temporarily_unavailable", () => answers.error(503, "temporarily_unavailable"), "503 temporarily_unavailable", 503],
  ["429", () => answers.plain(429), "429", 429],
  ["408", () => answers.plain(408), "408", 408],
]; // a 403 or a 200 without a token is a final error now: see faults.test.mjs

describe("retryable failures", () => {
  for (const [name, answer, label, status] of FAILURES) {
    it(`retries ${name} with backoff, reconnecting, and recovers`, async () => {
      const world = makeWorld();
      world.server.refreshQueue.push(answer, answer);
      const tab = world.openTab();
      let resolved = null;
      const started = tab.manager.start().then((value) => (resolved = value));
      await settle();
      assert.equal(tab.manager.state, "reconnecting");
      assert.equal(resolved, null, "start() waits for a definite answer");
      const [first] = tab.of("error");
      assert.ok(first.error instanceof RefreshError);
      assert.equal(first.error.status, status);
      assert.equal(first.retryInMs, 750);
      assert.ok(tab.messages().includes(`Refresh failed (${label}); retrying in 0.8s`));
      await world.clock.advance(749);
      assert.equal(world.server.calls.length, 1);
      await world.clock.advance(1);
      assert.equal(world.server.calls.length, 2);
      assert.equal(tab.of("error")[1].retryInMs, 1_500);
      await world.clock.advance(1_500);
      assert.equal(await started, true);
      assert.equal(world.server.calls.length, 3);
      assert.equal(tab.manager.state, "logged-in");
      assert.deepEqual(tab.of("state").map((d) => d.state), ["refreshing", "reconnecting", "logged-in"]);
      assert.deepEqual(tab.of("logged-out"), []);
    });
  }

  it("honours Retry-After as a minimum delay", async () => {
    const world = makeWorld();
    world.server.refreshQueue.push(() => answers.error(503, "temporarily_unavailable", { "Retry-After": "5" }));
    const tab = world.openTab();
    const started = tab.manager.start();
    await settle();
    assert.deepEqual(tab.of("error").map((d) => d.retryInMs), [5_000]);
    assert.ok(tab.messages().includes("Refresh failed (503 temporarily_unavailable); retrying in 5.0s"));
    await world.clock.advance(4_999);
    assert.equal(world.server.calls.length, 1);
    await world.clock.advance(1);
    assert.equal(await started, true);
    assert.equal(world.server.calls.length, 2);
  });

  it("backs off exponentially up to maxMs and never logs out during a long outage", async () => {
    const world = makeWorld();
    const tab = world.openTab();
    await tab.manager.start();
    world.server.refreshQueue.push(...Array(1_000).fill(() => answers.error(503, "temporarily_unavailable")));
    await world.clock.advance(2 * HOUR);
    const delays = tab.of("error").map((d) => d.retryInMs);
    assert.deepEqual(delays.slice(0, 7), [750, 1_500, 3_000, 6_000, 12_000, 22_500, 22_500]);
    assert.ok(delays.every((delay) => delay <= 30_000));
    assert.ok(delays.length > 250);
    assert.equal(tab.manager.state, "reconnecting", "the token has expired, the user is still not logged out");
    assert.deepEqual(tab.of("logged-out"), []);
    assert.ok(tab.manager.accessToken);
    world.server.refreshQueue.length = 0; // the store is back
    await world.clock.advance(30_000);
    assert.equal(tab.manager.state, "logged-in");
    assert.equal(tab.manager.expiresAt, tab.manager.lastRefreshAt + 900_000);
    assert.ok(tab.manager.lastRefreshAt >= world.clock.now() - 30_000);
  });

  it("retries at once when the browser comes back online", async () => {
    const world = makeWorld();
    world.server.refreshQueue.push(networkError, networkError, networkError);
    const tab = world.openTab();
    const started = tab.manager.start();
    await world.clock.advance(750 + 1_500);
    assert.equal(world.server.calls.length, 3);
    tab.events.dispatchEvent(new Event("online"));
    await settle();
    assert.equal(world.server.calls.length, 4);
    assert.equal(await started, true);
    assert.equal(world.clock.pending, 1, "the backoff timer is gone, the proactive one armed");
  });
});

describe("definite answers", () => {
  for (const [status, error, reason] of [[400, "invalid_grant", "invalid_grant"], [401, "invalid_grant", "invalid_grant"], [400, "invalid_request", "no_session"]]) {
    it(`${status} ${error} logs out, clears timers and stops refreshing`, async () => {
      const world = makeWorld();
      const tab = world.openTab();
      const other = world.openTab("other");
      await tab.manager.start();
      await other.manager.start();
      await settle();
      world.server.refreshQueue.push(() => answers.error(status, error));
      assert.equal(await tab.manager.refresh(), false);
      await settle();
      assert.equal(tab.manager.state, "logged-out");
      assert.equal(tab.manager.accessToken, null);
      assert.equal(tab.manager.expiresAt, null);
      assert.deepEqual(tab.of("logged-out"), [{ reason }]);
      assert.ok(tab.messages().includes(`Session ended (${error}); logged out`));
      assert.deepEqual(other.of("logged-out"), [{ reason: "other-tab" }]);
      assert.equal(other.manager.state, "logged-out");
      assert.equal(world.storage.getItem("starlette-refresh:state"), null);
      assert.equal(world.clock.pending, 0);
      const calls = world.server.calls.length;
      await world.clock.advance(5 * HOUR);
      tab.events.dispatchEvent(new Event("focus"));
      other.document.dispatchEvent(new Event("visibilitychange"));
      await settle();
      assert.equal(world.server.calls.length, calls, "no more refresh attempts");
    });
  }
});

describe("logout()", () => {
  it("posts logoutUrl, forgets the token and logs out every tab", async () => {
    const world = makeWorld();
    const tab = world.openTab();
    const other = world.openTab("other");
    await tab.manager.start();
    await world.clock.advance(1_000);
    await other.manager.start();
    await settle();
    const token = tab.manager.accessToken;
    await tab.manager.logout();
    await settle();
    const call = world.server.calls.at(-1);
    assert.equal(call.url, "/auth/logout");
    assert.equal(call.method, "POST");
    assert.equal(call.credentials, "same-origin");
    assert.equal(call.authorization, `Bearer ${token}`);
    assert.equal(tab.manager.accessToken, null);
    assert.equal(tab.manager.state, "logged-out");
    assert.deepEqual(tab.of("logged-out"), [{ reason: "logout" }]);
    assert.deepEqual(other.of("logged-out"), [{ reason: "other-tab" }]);
    assert.equal(other.manager.accessToken, null);
    assert.ok(other.messages().includes("Logged out in another tab"));
    assert.equal(world.clock.pending, 0);
    const calls = world.server.calls.length;
    await world.clock.advance(HOUR);
    assert.equal(world.server.calls.length, calls);
  });

  it("interrupts a retrying refresh, which then stays quiet", async () => {
    const world = makeWorld();
    world.server.refreshQueue.push(networkError, networkError);
    const tab = world.openTab();
    const started = tab.manager.start();
    await settle();
    await tab.manager.logout();
    assert.equal(await started, false);
    await world.clock.advance(HOUR);
    assert.deepEqual(world.server.calls.map((call) => call.url), ["/auth/refresh", "/auth/logout"]);
    assert.deepEqual(tab.of("logged-out"), [{ reason: "logout" }]);
  });

  it("logs a failed logout request but logs out locally anyway", async () => {
    const world = makeWorld();
    const tab = world.openTab("tab", {
      fetch: async (url) => (url === "/auth/logout" ? answers.error(503, "temporarily_unavailable") : world.server.issue()),
    });
    await tab.manager.start();
    await tab.manager.logout();
    assert.equal(tab.manager.state, "logged-out");
    assert.ok(tab.messages().some((line) => line.startsWith("Logout request failed (503 temporarily_unavailable)")));
  });
});
