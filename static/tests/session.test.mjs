// Duties 1-3 and 7: memory-only token, restore with one refresh, proactive scheduling from local
// receipt time, wake-up re-checks, events and log lines.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { T0, answers, makeWorld, settle } from "./fakes.mjs";

const HOUR = 3_600_000;

describe("start() and the token in memory", () => {
  it("restores the session with exactly one cookie refresh", async () => {
    const world = makeWorld();
    const tab = world.openTab();
    assert.equal(await tab.manager.start(), true);
    const calls = world.server.calls;
    assert.equal(calls.length, 1);
    assert.equal(calls[0].url, "/auth/refresh");
    assert.equal(calls[0].method, "POST");
    assert.equal(calls[0].credentials, "same-origin");
    assert.equal(calls[0].body, undefined);
    assert.equal(tab.manager.state, "logged-in");
    assert.equal(tab.manager.accessToken, world.server.current);
    assert.equal(tab.manager.expiresAt, T0 + 900_000);
    assert.equal(tab.manager.refreshCount, 1);
    assert.equal(tab.manager.lastRefreshAt, T0);
  });

  it("writes nothing token-like to storage", async () => {
    const world = makeWorld();
    const tab = world.openTab();
    await tab.manager.start();
    await world.clock.advance(HOUR);
    tab.manager.setSession({ access_token: "login-token-XYZ", expires_in: 900 });
    const dump = world.storage.dump();
    assert.ok(dump.length > 0, "the shared state is in storage");
    for (const token of [...world.server.issued, "login-token-XYZ"]) assert.ok(!dump.includes(token));
    assert.ok(!dump.includes("SECRET") && !dump.includes("eyJ"));
    const state = JSON.parse(world.storage.getItem("starlette-refresh:state"));
    assert.deepEqual(Object.keys(state).sort(), ["id", "refreshedAt"]);
  });

  // invalid_grant is 400 (RFC 6749 section 5.2); servers before starlette-refresh 0.2 answered it 401
  for (const [status, error, reason] of [[400, "invalid_request", "no_session"], [400, "invalid_grant", "invalid_grant"], [401, "invalid_grant", "invalid_grant"]]) {
    it(`resolves false on ${status} ${error}, with no timer left`, async () => {
      const world = makeWorld();
      world.server.refreshQueue.push(() => answers.error(status, error));
      const tab = world.openTab();
      assert.equal(await tab.manager.start(), false);
      assert.equal(world.server.calls.length, 1);
      assert.equal(tab.manager.state, "logged-out");
      assert.equal(tab.manager.accessToken, null);
      assert.deepEqual(tab.of("logged-out"), [{ reason }]);
      assert.ok(tab.messages().includes(`No session to restore (${error})`));
      assert.equal(world.clock.pending, 0);
      assert.equal(world.bus.channels.size, 1, "the channel stays open for a later login");
      assert.equal([...world.bus.channels][0].posted.length, 0, "a tab without a session tells no one");
    });
  }

  it("setSession adopts a login answer and schedules its refresh", async () => {
    const world = makeWorld();
    const tab = world.openTab();
    tab.manager.setSession({ access_token: "login-token", token_type: "Bearer", expires_in: 600 });
    assert.equal(tab.manager.state, "logged-in");
    assert.equal(tab.manager.accessToken, "login-token");
    assert.equal(tab.manager.expiresAt, T0 + 600_000);
    assert.equal(tab.manager.refreshCount, 0);
    assert.deepEqual(tab.of("refreshed"), [{ accessToken: "login-token", expiresIn: 600, expiresAt: T0 + 600_000, source: "login" }]);
    assert.ok(tab.messages().includes("Session started (expires in 600s)"));
    assert.equal(await tab.manager.start(), true, "start() after a login needs no refresh");
    assert.equal(world.server.calls.length, 0);
    await world.clock.advance(540_000);
    assert.equal(world.server.calls.length, 1, "refreshed 60 s before expiry");
    assert.throws(() => tab.manager.setSession({ expires_in: 900 }), TypeError);
  });
});

describe("proactive scheduling", () => {
  it("refreshes at expiresAt - max(60 s, lifetime/10) and logs it", async () => {
    const world = makeWorld({ lifetime: 900 });
    const tab = world.openTab();
    await tab.manager.start();
    await world.clock.advance(809_999);
    assert.equal(world.server.calls.length, 1);
    await world.clock.advance(1);
    assert.equal(world.server.calls.length, 2);
    assert.deepEqual(tab.of("expiring"), [{ expiresInMs: 90_000 }]);
    const lines = tab.messages();
    assert.ok(lines.some((line) => /^Token expiring in \d+s, refreshing proactively\.\.\.$/.test(line)));
    assert.ok(lines.includes("Token expiring in 90s, refreshing proactively..."));
    assert.equal(lines.filter((line) => line === "Token refreshed successfully (expires in 900s)").length, 2);
    assert.equal(tab.manager.expiresAt, T0 + 810_000 + 900_000);
    assert.equal(tab.manager.refreshCount, 2);
    assert.equal(tab.manager.lastRefreshAt, T0 + 810_000);
    const [, second] = tab.of("refreshed");
    assert.deepEqual(second, { accessToken: world.server.current, expiresIn: 900, expiresAt: T0 + 1_710_000, source: "network" });
    assert.deepEqual(tab.of("state").map((d) => d.state), ["refreshing", "logged-in", "refreshing", "logged-in"]);
  });

  it("uses a margin of half the lifetime for 20 s tokens", async () => {
    const world = makeWorld({ lifetime: 20 });
    const tab = world.openTab();
    await tab.manager.start();
    await world.clock.advance(9_999);
    assert.equal(world.server.calls.length, 1);
    await world.clock.advance(1);
    assert.equal(world.server.calls.length, 2);
    await world.clock.advance(60_000 - 10_000);
    assert.equal(world.server.calls.length, 7, "one refresh every 10 s, no loop");
  });

  it("honours an explicit marginMs", async () => {
    const world = makeWorld({ lifetime: 900 });
    const tab = world.openTab("tab", { marginMs: 5_000 });
    await tab.manager.start();
    await world.clock.advance(894_999);
    assert.equal(world.server.calls.length, 1);
    await world.clock.advance(1);
    assert.equal(world.server.calls.length, 2);
  });

  for (const skewMs of [-5 * HOUR, 7 * HOUR]) {
    it(`ignores a server clock ${skewMs / HOUR} h off (Date header and token iat/exp): no refresh loop`, async () => {
      const world = makeWorld({ lifetime: 900, skewMs });
      const tab = world.openTab();
      await tab.manager.start();
      await world.clock.advance(HOUR);
      // every 810 s: at 810, 1620, 2430 and 3240 s, plus the restore
      assert.equal(world.server.refreshCalls.length, 1 + Math.floor(3600 / 810));
      assert.equal(tab.manager.state, "logged-in");
    });
  }

  it("caps a huge lifetime's timer instead of overflowing into a loop", async () => {
    const world = makeWorld({ lifetime: 60 * 24 * 3600 });
    const tab = world.openTab();
    await tab.manager.start();
    await world.clock.advance(HOUR);
    assert.equal(world.server.calls.length, 1);
  });
});

describe("wake-up re-checks", () => {
  async function asleep(ms) {
    const world = makeWorld({ lifetime: 900 });
    const tab = world.openTab();
    await tab.manager.start();
    world.clock.sleep(ms); // the machine slept: its timers were suspended too
    return { world, tab };
  }

  for (const [type, target] of [["visibilitychange", "document"], ["focus", "events"], ["online", "events"], ["pageshow", "events"]]) {
    it(`refreshes at once on ${type} when the token expired during a sleep`, async () => {
      const { world, tab } = await asleep(2 * HOUR);
      tab[target].dispatchEvent(new Event(type));
      await settle();
      assert.equal(world.server.calls.length, 2);
      assert.equal(tab.manager.state, "logged-in");
      assert.equal(tab.manager.expiresAt, world.clock.now() + 900_000);
      assert.ok(tab.messages().includes(`Woke up (${type}): token expired, refreshing now`));
    });
  }

  it("refreshes at once when the token is within the margin", async () => {
    const { world, tab } = await asleep(850_000);
    tab.events.dispatchEvent(new Event("focus"));
    await settle();
    assert.equal(world.server.calls.length, 2);
    assert.ok(tab.messages().includes("Woke up (focus): token expires in 50s, refreshing now"));
  });

  it("does nothing when the token is still fresh, and re-arms the timer", async () => {
    const { world, tab } = await asleep(300_000);
    for (const type of ["focus", "online", "pageshow"]) tab.events.dispatchEvent(new Event(type));
    tab.document.dispatchEvent(new Event("visibilitychange"));
    await settle();
    assert.equal(world.server.calls.length, 1);
    assert.ok(tab.messages().includes("Woke up (focus): token expires in 600s"));
    assert.equal(world.clock.pending, 1, "exactly one refresh timer");
    await world.clock.advance(509_999);
    assert.equal(world.server.calls.length, 1);
    await world.clock.advance(1);
    assert.equal(world.server.calls.length, 2, "the re-armed timer fires at 810 s by the wall clock");
  });

  it("ignores visibilitychange while hidden, and wake-ups when logged out", async () => {
    const { world, tab } = await asleep(2 * HOUR);
    tab.document.visibilityState = "hidden";
    tab.document.dispatchEvent(new Event("visibilitychange"));
    await settle();
    assert.equal(world.server.calls.length, 1);
    await tab.manager.logout();
    const before = world.server.calls.length;
    tab.document.visibilityState = "visible";
    tab.document.dispatchEvent(new Event("visibilitychange"));
    tab.events.dispatchEvent(new Event("focus"));
    await settle();
    assert.equal(world.server.calls.length, before);
  });
});

describe("logs", () => {
  it("never contain a token, whatever happened", async () => {
    const world = makeWorld({ lifetime: 300 });
    const one = world.openTab("one");
    const two = world.openTab("two");
    await one.manager.start();
    await two.manager.start();
    world.server.refreshQueue.push(() => answers.error(503, "temporarily_unavailable", { "Retry-After": "2" }));
    world.server.api = () => answers.invalidToken();
    await world.clock.advance(HOUR);
    await one.manager.fetch("/api/x");
    one.manager.setSession({ access_token: "login-token-SECRET", expires_in: 300 });
    await settle();
    world.server.refreshQueue.push(() => answers.error(400, "invalid_grant"));
    await two.manager.refresh();
    await settle();
    const tokens = [...world.server.issued, "login-token-SECRET"];
    assert.ok(world.logs.length > 20);
    for (const { message } of world.logs) {
      assert.ok(!tokens.some((token) => message.includes(token)) && !message.includes("SECRET"), message);
    }
    for (const line of ["Token refreshed successfully (expires in 300s)", "Another tab refreshed the token",
      "Refresh failed (503 temporarily_unavailable); retrying in 2.0s", "Session ended (invalid_grant); logged out",
      "Logged out in another tab", "Another tab logged in"]) {
      assert.ok(world.logs.some((entry) => entry.message === line), line);
    }
  });
});
