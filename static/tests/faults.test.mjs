// Issue 13 (duties 9-16): the faults a real network and a real laptop throw at the manager. Each test
// here failed on the manager as it was before the fix it proves.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { RefreshError, RefreshManager } from "../refresh-manager.js";
import { RefreshingWebSocket } from "../refresh-socket.js";
import { T0, answers, deferred, fakeWebSockets, makeWorld, networkError, settle } from "./fakes.mjs";

const HOUR = 3_600_000;

const LOCK = "starlette-refresh";

/** A refresh answer that never comes: it records the request's signal and ignores it. */
function hang(signals) {
  return (call) => {
    signals.push(call.init.signal);
    return new Promise(() => {});
  };
}

describe("a hung refresh (duty 9)", () => {
  it("is aborted after refreshTimeoutMs, releases the lock and is retried with backoff", async () => {
    const world = makeWorld();
    const signals = [];
    world.server.refreshQueue.push(hang(signals));
    const tab = world.openTab();
    let resolved = null;
    void tab.manager.start().then((value) => (resolved = value));
    await world.clock.advance(9_999);
    assert.equal(signals.length, 1);
    assert.ok(signals[0] instanceof AbortSignal, "the refresh fetch gets a signal");
    assert.equal(signals[0].aborted, false);
    assert.ok(world.locks.isHeld(LOCK));
    await world.clock.advance(1);
    assert.equal(signals[0].aborted, true, "the hung request is aborted");
    assert.equal(world.locks.isHeld(LOCK), false, "and no longer holds the cross-tab lock");
    assert.equal(tab.manager.state, "reconnecting");
    const [failure] = tab.of("error");
    assert.ok(failure.error instanceof RefreshError);
    assert.equal(failure.error.status, null);
    assert.equal(failure.retryInMs, 750);
    assert.ok(tab.messages().includes("Refresh failed (timed out after 10s); retrying in 0.8s"));
    await world.clock.advance(750);
    assert.equal(resolved, true, "the retry got a token");
    assert.equal(world.server.refreshCalls.length, 2);
    assert.equal(tab.manager.state, "logged-in");
  });

  it("abandons an answer whose body never ends, and honours refreshTimeoutMs", async () => {
    const world = makeWorld();
    world.server.refreshQueue.push(() => new Response(new ReadableStream({ start() {} }), { status: 200 }));
    const tab = world.openTab("tab", { refreshTimeoutMs: 3_000 });
    let resolved = null;
    void tab.manager.start().then((value) => (resolved = value));
    await world.clock.advance(2_999);
    assert.deepEqual(tab.of("error"), []);
    await world.clock.advance(1);
    assert.equal(tab.of("error").length, 1);
    await world.clock.advance(750);
    assert.equal(resolved, true);
  });

  it("lets the other tab take the lock once the hung request is abandoned, and both recover", async () => {
    const world = makeWorld();
    const a = world.openTab("a");
    const b = world.openTab("b");
    await a.manager.start();
    await b.manager.start();
    await settle();
    world.server.refreshQueue.push(hang([]));
    const first = a.manager.refresh();
    await settle();
    const second = b.manager.refresh();
    await world.clock.advance(10_000);
    assert.equal(await second, true, "b got the lock when a's request was abandoned");
    assert.equal(b.calls().length, 2, "its restore and this refresh");
    await settle();
    assert.equal(await first, true, "a took b's token over the channel");
    assert.equal(a.calls().length, 2, "and made no request of its own after the abandoned one");
    assert.equal(a.manager.accessToken, b.manager.accessToken);
  });
});

const FINAL = [
  ["403 cross_site_request", () => answers.error(403, "cross_site_request"), 403, "cross_site_request", "403 cross_site_request"],
  ["404 from a wrong refreshUrl", () => answers.plain(404), 404, null, "404"],
  ["405", () => answers.plain(405), 405, null, "405"],
  ["422", () => answers.error(422, "unprocessable"), 422, "unprocessable", "422 unprocessable"],
  ["a 200 without expires_in", () => answers.json({ access_token: "t", token_type: "Bearer" }), 200, null, "200 malformed answer"],
  ["a 200 with expires_in \"soon\"", () => answers.json({ access_token: "t", expires_in: "soon" }), 200, null, "200 malformed answer"],
  ["a 200 that is not JSON", () => answers.plain(200), 200, null, "200 malformed answer"],
];

describe("permanent errors are final (duty 10)", () => {
  for (const [name, answer, status, code, text] of FINAL) {
    it(`${name}: start() resolves false at once, state failed, error emitted, never retried`, async () => {
      const world = makeWorld();
      world.server.refreshQueue.push(answer, answer, answer);
      const tab = world.openTab();
      let resolved = null;
      void tab.manager.start().then((value) => (resolved = value));
      await settle();
      assert.equal(resolved, false);
      assert.equal(tab.manager.state, "failed");
      assert.equal(tab.manager.accessToken, null);
      const [failure, ...more] = tab.of("error");
      assert.deepEqual(more, []);
      assert.equal(failure.retryInMs, null);
      assert.ok(failure.error instanceof RefreshError);
      assert.equal(failure.error.status, status);
      assert.equal(failure.error.code, code);
      assert.equal(failure.error.retryable, false);
      assert.ok(tab.messages().includes(`Refresh failed for good (${text}); not retrying`));
      assert.deepEqual(tab.of("logged-out"), [], "not a logout: the session may well be alive");
      assert.equal(world.clock.pending, 0);
      await world.clock.advance(HOUR);
      tab.events.dispatchEvent(new Event("online"));
      await settle();
      assert.equal(world.server.refreshCalls.length, 1, "no retry, whatever the time or the events");
    });
  }

  it("a logged-in tab whose proactive refresh gets a 403 drops its token and stops", async () => {
    const world = makeWorld();
    const tab = world.openTab();
    await tab.manager.start();
    world.server.refreshQueue.push(() => answers.error(403, "cross_site_request"));
    await world.clock.advance(810_000);
    assert.equal(tab.manager.state, "failed");
    assert.equal(tab.manager.accessToken, null, "logged-in only with a token it can keep alive");
    assert.equal(world.clock.pending, 0);
    await world.clock.advance(HOUR);
    assert.equal(world.server.refreshCalls.length, 2);
    assert.equal(await tab.manager.refresh(), true, "an explicit refresh tries again");
    assert.equal(tab.manager.state, "logged-in");
  });

  it("an outage is still retried (5xx, 408, 429, network errors): only 4xx answers are final", async () => {
    const world = makeWorld();
    world.server.refreshQueue.push(() => answers.plain(504), () => answers.plain(408), () => answers.plain(429), networkError);
    const tab = world.openTab();
    const started = tab.manager.start();
    await world.clock.advance(60_000);
    assert.equal(await started, true);
    assert.deepEqual(tab.of("error").map(({ error }) => error.status), [504, 408, 429, null]);
    assert.ok(tab.of("error").every(({ error, retryInMs }) => error.retryable && retryInMs > 0));
  });
});

describe("every wait is bounded (duty 11)", () => {
  it("honours Retry-After only up to the backoff cap", async () => {
    const world = makeWorld();
    world.server.refreshQueue.push(() => answers.error(503, "temporarily_unavailable", { "Retry-After": "86400" }));
    const tab = world.openTab();
    const started = tab.manager.start();
    await settle();
    assert.deepEqual(tab.of("error").map((d) => d.retryInMs), [30_000]);
    assert.ok(tab.messages().includes("Refresh failed (503 temporarily_unavailable); retrying in 30.0s"));
    await world.clock.advance(30_000);
    assert.equal(await started, true);
    assert.equal(world.server.refreshCalls.length, 2);
  });

  it("caps an HTTP-date Retry-After and a smaller backoff.maxMs too", async () => {
    const world = makeWorld();
    const tomorrow = new Date(world.clock.now() + 24 * HOUR).toUTCString();
    world.server.refreshQueue.push(() => answers.error(503, "temporarily_unavailable", { "Retry-After": tomorrow }));
    const tab = world.openTab("tab", { backoff: { maxMs: 5_000 } });
    void tab.manager.start();
    await settle();
    assert.deepEqual(tab.of("error").map((d) => d.retryInMs), [5_000]);
  });

  it("fetch() answers within lockTimeoutMs + handoffWaitMs + refreshTimeoutMs + backoff.maxMs (51 s) during an outage", async () => {
    const world = makeWorld();
    const tab = world.openTab();
    await tab.manager.start();
    world.server.refreshQueue.push(...Array(100).fill(() => answers.error(503, "temporarily_unavailable", { "Retry-After": "3600" })));
    world.clock.jump(HOUR); // the token ran out while the tab slept
    world.server.api = () => answers.invalidToken();
    let answered = null;
    void tab.manager.fetch("/api/me").then((response) => (answered = response));
    await world.clock.advance(50_999);
    assert.equal(answered, null, "it waits for the refresh meanwhile");
    assert.equal(world.server.apiCalls.length, 0);
    await world.clock.advance(1);
    assert.equal(answered?.status, 401, "the server's answer to the expired token");
    assert.equal(world.server.apiCalls.length, 1, "sent once: no replay after the deadline");
    assert.ok(tab.messages().includes("Gave up waiting for a refresh; sending the request as it is"));
    assert.equal(tab.manager.state, "reconnecting", "the refresh itself goes on retrying");
  });
});

describe("the token goes to the app's own origin only (duty 14)", () => {
  async function loggedIn(options) {
    const world = makeWorld();
    const tab = world.openTab("tab", options); // the page is at http://app.test
    await tab.manager.start();
    world.server.api = (call) => (call.authorization ? answers.json({ ok: true }) : answers.invalidToken());
    return { world, tab };
  }

  for (const url of ["https://evil.example/api/steal", "//evil.example/api/steal", "https://app.test/api/me",
    "http://app.test:8080/api/me"]) {
    it(`fetch("${url}") sends no Authorization, and its 401 triggers no refresh or replay`, async () => {
      const { world, tab } = await loggedIn();
      const response = await tab.manager.fetch(url);
      assert.equal(response.status, 401);
      assert.deepEqual(world.server.apiCalls.map((call) => call.authorization), [null]);
      assert.equal(world.server.refreshCalls.length, 1, "only the restore");
    });
  }

  it("a Request to another origin goes without the token too; the page's own urls keep it", async () => {
    const { world, tab } = await loggedIn();
    await tab.manager.fetch(new Request("https://evil.example/api/steal", { method: "POST", body: "x" }));
    await tab.manager.fetch(new Request("http://app.test/api/me"));
    await tab.manager.fetch("/api/me");
    await tab.manager.fetch(new URL("http://app.test/api/me"));
    const token = `Bearer ${tab.manager.accessToken}`;
    assert.deepEqual(world.server.apiCalls.map((call) => call.authorization), [null, token, token, token]);
  });

  it("tokenOrigins and an absolute refreshUrl add origins that get the token and its refresh-and-replay", async () => {
    const { world, tab } = await loggedIn({
      tokenOrigins: ["https://api.example", "https://files.example/any/path"],
      refreshUrl: "https://auth.example/auth/refresh",
    });
    let first = true;
    world.server.api = (call) => {
      const ok = !first && call.authorization === `Bearer ${world.server.current}`;
      first = false;
      return ok ? answers.json({ ok: true }) : answers.invalidToken();
    };
    const response = await tab.manager.fetch("https://api.example/api/me");
    assert.equal(response.status, 200, "refreshed once and replayed");
    await tab.manager.fetch("https://files.example/api/list");
    await tab.manager.fetch("https://auth.example/api/whoami");
    await tab.manager.fetch("https://evil.example/api/steal");
    const token = `Bearer ${tab.manager.accessToken}`;
    assert.deepEqual(world.server.apiCalls.slice(1).map((call) => call.authorization), [token, token, token, null]);
  });

  it("rejects a tokenOrigins entry that is not an absolute URL or origin", () => {
    assert.throws(() => new RefreshManager({ tokenOrigins: ["api.example"] }), /tokenOrigins: api\.example is not an absolute URL/);
    assert.throws(() => new RefreshManager({ tokenOrigins: "https://api.example" }), TypeError);
  });

  it("RefreshingWebSocket offers the token only to the page's origin or its tokenOrigins", async () => {
    const { tab } = await loggedIn();
    const { WebSocket, sockets } = fakeWebSockets();
    const options = { WebSocket, baseUrl: "https://app.example/page", events: null, log: () => {} };
    assert.throws(() => new RefreshingWebSocket(tab.manager, "wss://evil.example/ws", options),
      /not to https:\/\/evil\.example/);
    assert.throws(() => new RefreshingWebSocket(tab.manager, "ws://app.example/ws", options), TypeError,
      "ws: is not the page's https: origin");
    assert.equal(sockets.length, 0, "no socket was opened with the token");
    const own = new RefreshingWebSocket(tab.manager, "/ws", options);
    const api = new RefreshingWebSocket(tab.manager, "wss://api.example/ws", { ...options, tokenOrigins: ["https://api.example"] });
    await settle();
    assert.deepEqual(sockets.map((socket) => [socket.url, socket.token]), [
      ["wss://app.example/ws", tab.manager.accessToken], ["wss://api.example/ws", tab.manager.accessToken]]);
    own.close();
    api.close();
  });
});

describe("options are validated, and no answer causes a refresh storm (duty 15)", () => {
  const BAD = [
    [{ marginMs: NaN }, TypeError, /^marginMs must be a finite number/],
    [{ marginMs: -1 }, RangeError, /^marginMs must be between 0 and 86400000 ms, not -1$/],
    [{ marginMs: Infinity }, TypeError, /^marginMs/],
    [{ marginMs: "60000" }, TypeError, /^marginMs/],
    [{ backoff: { baseMs: NaN } }, TypeError, /^backoff\.baseMs/],
    [{ backoff: { baseMs: 0 } }, RangeError, /^backoff\.baseMs must be between 100 and 60000 ms/],
    [{ backoff: { baseMs: 5_000, maxMs: 1_000 } }, RangeError, /^backoff\.maxMs must be between 5000 and 300000 ms/],
    [{ backoff: { maxMs: 1e12 } }, RangeError, /^backoff\.maxMs/],
    [{ lockTimeoutMs: -5 }, RangeError, /^lockTimeoutMs must be between 100 and 120000 ms/],
    [{ lockTimeoutMs: Infinity }, TypeError, /^lockTimeoutMs/],
    [{ refreshTimeoutMs: 0 }, RangeError, /^refreshTimeoutMs must be between 1000 and 120000 ms/],
    [{ checkIntervalMs: 500 }, RangeError, /^checkIntervalMs must be between 1000 and 60000 ms, not 500$/],
    [{ checkIntervalMs: NaN }, TypeError, /^checkIntervalMs must be a finite number/],
    [{ minIntervalMs: 500 }, RangeError, /^minIntervalMs must be between 1000 and 60000 ms, not 500$/],
    [{ minIntervalMs: "1s" }, TypeError, /^minIntervalMs must be a finite number/],
    [{ refreshTimeoutMs: NaN }, TypeError, /^refreshTimeoutMs/],
    [{ handoffWaitMs: 1e9 }, RangeError, /^handoffWaitMs must be between 0 and 10000 ms/],
  ];
  for (const [options, type, message] of BAD) {
    it(`rejects ${JSON.stringify(options, (_, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v))}`, () => {
      assert.throws(() => new RefreshManager(options), (error) => error instanceof type && message.test(error.message));
    });
  }

  it("accepts the bounds themselves", () => {
    for (const options of [{ marginMs: 0 }, { marginMs: 86_400_000 }, { backoff: { baseMs: 100, maxMs: 100 } },
      { lockTimeoutMs: 120_000, refreshTimeoutMs: 1_000, handoffWaitMs: 0 }, { marginMs: null }]) {
      assert.ok(new RefreshManager(options));
    }
  });

  it("expires_in 0.01 costs one refresh a second, not thousands", async () => {
    const world = makeWorld();
    world.server.refreshQueue.push(...Array(10_000).fill(() => world.server.issue(0.01)));
    const tab = world.openTab();
    await tab.manager.start();
    await world.clock.advance(10_000);
    assert.equal(world.server.refreshCalls.length, 11);
  });

  it("a login or another tab's message with an unusable lifetime is refused or ignored, never looped on", async () => {
    const world = makeWorld();
    const tab = world.openTab();
    await tab.manager.start();
    const token = tab.manager.accessToken;
    assert.throws(() => tab.manager.setSession({ access_token: "t", expires_in: Infinity }), TypeError);
    const [channel] = world.bus.channels;
    const rogue = world.bus.open("starlette-refresh");
    for (const bad of [{ remainingMs: NaN, expiresIn: 900 }, { remainingMs: 9e5, expiresIn: NaN }, { remainingMs: Infinity, expiresIn: 900 }]) {
      rogue.postMessage({ type: "token", accessToken: "rogue", id: "x", login: true, ...bad });
    }
    await world.clock.advance(60_000);
    assert.equal(channel.closed, false);
    assert.equal(tab.manager.accessToken, token);
    assert.equal(world.server.refreshCalls.length, 1);
  });
});

describe("a logged-out tab stays logged out: only a new login wakes it (duty 13)", () => {
  async function threeTabs() {
    const world = makeWorld();
    const [a, b, c] = ["a", "b", "c"].map((name) => world.openTab(name));
    for (const tab of [a, b, c]) await tab.manager.start();
    await settle();
    return { world, a, b, c };
  }

  it("a tab that logged out does not adopt the token of a refresh that crossed its logout", async () => {
    const { world, a, b, c } = await threeTabs();
    const before = a.seen.length;
    world.bus.paused = true; // b's token and a's logout are in flight at the same time
    assert.equal(await b.manager.refresh(), true);
    await a.manager.logout();
    world.bus.resume();
    await settle();
    for (const tab of [a, b, c]) {
      assert.equal(tab.manager.state, "logged-out", `${tab.name} is logged out`);
      assert.equal(tab.manager.accessToken, null, `${tab.name} holds no token`);
    }
    assert.deepEqual(a.seen.slice(before).map(({ type, detail }) => `${type} ${detail.state ?? detail.reason}`),
      ["state logged-out", "logged-out logout"], "a never went back to logged-in");
    assert.equal(world.clock.pending, 0);
    c.manager.setSession({ access_token: "new-login", expires_in: 900 }); // a new login wakes every tab
    await settle();
    assert.equal(a.manager.accessToken, "new-login");
    assert.equal(b.manager.accessToken, "new-login");
  });

  it("nor while a refresh of its own, started after the logout, is out", async () => {
    const { world, a, b } = await threeTabs();
    world.bus.paused = true;
    await b.manager.refresh();
    await a.manager.logout();
    const answer = deferred();
    world.server.refreshQueue.push(() => answer.promise);
    const again = a.manager.refresh();
    await settle();
    world.bus.resume();
    await settle();
    assert.equal(a.manager.accessToken, null, "b's message predates the logout");
    answer.resolve(answers.error(400, "invalid_request"));
    assert.equal(await again, false);
    assert.equal(a.manager.state, "logged-out");
  });
});

describe("a superseded refresh lets go at once (duties 8, 13)", () => {
  it("another tab's logout during a hung refresh aborts it: the lock is freed and logged-out emitted now", async () => {
    const world = makeWorld();
    const a = world.openTab("a");
    const b = world.openTab("b");
    await a.manager.start();
    await b.manager.start();
    await settle();
    const signals = [];
    world.server.refreshQueue.push(hang(signals));
    const flight = b.manager.refresh();
    await settle();
    assert.ok(world.locks.isHeld(LOCK), "b holds the lock while its refresh hangs");
    await a.manager.logout();
    await settle();
    assert.equal(signals[0].aborted, true, "b's request is dropped");
    assert.equal(world.locks.isHeld(LOCK), false);
    assert.equal(await flight, false);
    assert.deepEqual(b.of("logged-out").map((detail) => detail.reason), ["other-tab"],
      "announced at once, not refreshTimeoutMs later");
    assert.equal(b.manager.state, "logged-out");
    assert.deepEqual(b.of("error"), [], "a dropped request is no failure");
  });

  it("a login in this tab aborts the refresh out, whose late answer would carry the old session's cookie", async () => {
    const world = makeWorld();
    const tab = world.openTab();
    await tab.manager.start();
    const signals = [];
    world.server.refreshQueue.push(hang(signals));
    void tab.manager.refresh();
    await settle();
    tab.manager.setSession({ access_token: "new-login", expires_in: 900 });
    assert.equal(signals[0].aborted, true);
    await world.clock.advance(20_000);
    assert.equal(world.server.refreshCalls.length, 2, "and it is not retried");
    assert.equal(tab.manager.accessToken, "new-login");
  });
});

describe("a new login supersedes any refresh in flight (duty 13)", () => {
  const LOGIN = { access_token: "new-login", expires_in: 900 };
  for (const [name, answer] of [["a token", (world) => world.server.issue()],
    ["400 invalid_grant", () => answers.error(400, "invalid_grant")], ["400 invalid_request", () => answers.error(400, "invalid_request")]]) {
    it(`setSession() while a refresh is out: its answer (${name}) neither replaces the login's token nor logs it out`, async () => {
      const world = makeWorld();
      const tab = world.openTab();
      const other = world.openTab("other");
      await tab.manager.start();
      await other.manager.start();
      await settle();
      const reply = deferred();
      world.server.refreshQueue.push(() => reply.promise);
      const flight = tab.manager.refresh();
      await settle();
      tab.manager.setSession(LOGIN);
      reply.resolve(answer(world));
      assert.equal(await flight, true, "the refresh's callers learn that the tab is logged in");
      await settle();
      for (const t of [tab, other]) {
        assert.equal(t.manager.accessToken, "new-login", `${t.name} keeps the login's token`);
        assert.equal(t.manager.state, "logged-in");
        assert.deepEqual(t.of("logged-out"), []);
      }
      assert.equal(tab.of("refreshed").at(-1).source, "login");
      assert.equal(world.clock.pending, 2, "a proactive refresh per tab, nothing else");
    });
  }

  it("a login in another tab supersedes this tab's refresh, and one during a backoff ends the retries", async () => {
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
    b.manager.setSession(LOGIN);
    await settle();
    reply.resolve(answers.error(400, "invalid_grant"));
    assert.equal(await flight, true);
    await settle();
    assert.equal(a.manager.accessToken, "new-login");
    assert.equal(b.manager.accessToken, "new-login");
    world.server.refreshQueue.push(() => answers.plain(503));
    const retrying = a.manager.refresh();
    await settle();
    assert.equal(a.manager.state, "reconnecting");
    a.manager.setSession({ access_token: "third", expires_in: 900 });
    assert.equal(await retrying, true);
    const calls = world.server.refreshCalls.length;
    await world.clock.advance(60_000);
    assert.equal(world.server.refreshCalls.length, calls, "no retry after the login");
    assert.equal(a.manager.accessToken, "third");
  });

  it("a logout that crosses a newer login in another tab does not undo it (fails before item 4)", async () => {
    const world = makeWorld();
    const a = world.openTab("a");
    const c = world.openTab("c");
    await a.manager.start();
    await c.manager.start();
    await settle();
    world.bus.paused = true;
    await a.manager.logout();
    c.manager.setSession(LOGIN);
    world.bus.resume();
    await settle();
    assert.equal(c.manager.accessToken, "new-login");
    assert.equal(c.manager.state, "logged-in");
    assert.equal(a.manager.accessToken, "new-login", "the logged-out tab woke on the login");
  });
});

describe("deadlines run on a monotonic clock, checked while the tab is visible (duty 12)", () => {
  async function loggedIn(options) {
    const world = makeWorld();
    const tab = world.openTab("tab", options);
    await tab.manager.start();
    return { world, tab };
  }

  it("a wall clock set back an hour, then a wake event, neither delays nor skips the refresh", async () => {
    const { world, tab } = await loggedIn();
    await world.clock.advance(400_000);
    world.clock.setWall(-HOUR);
    tab.events.dispatchEvent(new Event("focus")); // re-arms the timer: from the clocks, not 59 min on
    await world.clock.advance(409_999);
    assert.equal(world.server.refreshCalls.length, 1);
    await world.clock.advance(1);
    assert.equal(world.server.refreshCalls.length, 2, "refreshed 810 s after the token, as always");
    assert.deepEqual(tab.of("expiring").map((d) => d.expiresInMs), [90_000]);
    await world.clock.advance(810_000);
    assert.equal(world.server.refreshCalls.length, 3, "and every 810 s after");
  });

  it("expiresAt follows a wall clock set back: now() plus the life the token truly has left", async () => {
    const { world, tab } = await loggedIn();
    await world.clock.advance(400_000);
    world.clock.setWall(-HOUR);
    assert.equal(tab.manager.expiresAt - world.clock.now(), 500_000, "500 s left, not an hour and 500 s");
    world.server.refreshQueue.push(...Array(40).fill(() => answers.plain(503))); // an outage outlasts the token
    await world.clock.advance(600_000);
    assert.equal(tab.manager.state, "reconnecting");
    assert.ok(tab.manager.expiresAt <= world.clock.now(), "the page can tell the token has run out");
  });

  it("a wall clock set forward refreshes early, never late", async () => {
    const { world, tab } = await loggedIn();
    world.clock.setWall(HOUR);
    tab.events.dispatchEvent(new Event("focus"));
    await settle();
    assert.equal(world.server.refreshCalls.length, 2);
    await world.clock.advance(809_999);
    assert.equal(world.server.refreshCalls.length, 2);
    await world.clock.advance(1);
    assert.equal(world.server.refreshCalls.length, 3);
  });

  it("a sleep with no wake event at all: the periodic check refreshes within checkIntervalMs", async () => {
    const { world, tab } = await loggedIn();
    world.clock.sleep(2 * HOUR); // the monotonic clock and the timers stood still; the token ran out
    await world.clock.advance(5_000);
    assert.equal(world.server.refreshCalls.length, 2);
    assert.ok(tab.messages().includes("Token expired, refreshing now"));
    assert.equal(tab.manager.state, "logged-in");
    assert.equal(tab.manager.expiresAt, tab.manager.lastRefreshAt + 900_000, "local receipt time + expires_in");
    assert.equal(tab.manager.lastRefreshAt, T0 + 2 * HOUR + 5_000);
  });

  it("checkIntervalMs sets the period; a hidden tab is not checked, and wakes on visibilitychange", async () => {
    const { world, tab } = await loggedIn({ checkIntervalMs: 30_000 });
    world.clock.sleep(2 * HOUR);
    await world.clock.advance(29_999);
    assert.equal(world.server.refreshCalls.length, 1);
    await world.clock.advance(1);
    assert.equal(world.server.refreshCalls.length, 2);
    tab.document.visibilityState = "hidden";
    tab.events.dispatchEvent(new Event("focus")); // re-arms the timer while hidden: at the deadline only
    world.clock.sleep(2 * HOUR);
    await world.clock.advance(60_000);
    assert.equal(world.server.refreshCalls.length, 2, "no periodic check while hidden");
    tab.document.visibilityState = "visible";
    tab.document.dispatchEvent(new Event("visibilitychange"));
    await settle();
    assert.equal(world.server.refreshCalls.length, 3);
  });
});

describe("a floor between refreshes (duty 15)", () => {
  it("an API that refuses even fresh tokens: 20 fetch() calls cost at most one refresh per minIntervalMs", async () => {
    const world = makeWorld();
    const tab = world.openTab();
    await tab.manager.start();
    world.server.api = () => answers.invalidToken();
    const statuses = [];
    const calls = (async () => {
      for (let i = 0; i < 20; i++) statuses.push((await tab.manager.fetch("/api/me")).status);
    })();
    await settle();
    assert.equal(world.server.refreshCalls.length, 2, "the restore, and one refresh for the first rejection");
    await world.clock.advance(999);
    assert.equal(world.server.refreshCalls.length, 2, "the next rejected request waits for the floor");
    await world.clock.advance(1);
    assert.equal(world.server.refreshCalls.length, 3);
    await world.clock.advance(9_000);
    assert.equal(world.server.refreshCalls.length, 12, "one a second");
    await world.clock.advance(10_000);
    await calls;
    assert.deepEqual(statuses, Array(20).fill(401), "each answered, with the server's 401");
    assert.equal(world.server.refreshCalls.length, 21);
    assert.equal(world.server.apiCalls.length, 40, "each sent, refreshed once and replayed once");
  });

  it("wake events do not refresh a token younger than minIntervalMs, however short its life", async () => {
    const world = makeWorld();
    world.server.refreshQueue.push(...Array(100).fill(() => world.server.issue(0.01)));
    const tab = world.openTab();
    await tab.manager.start();
    for (let i = 0; i < 10; i++) {
      await world.clock.advance(6); // past half the 10 ms lifetime: due
      tab.events.dispatchEvent(new Event(i % 2 ? "focus" : "online"));
      tab.document.dispatchEvent(new Event("visibilitychange"));
      await settle();
    }
    assert.equal(world.server.refreshCalls.length, 1, "not one refresh per wake event");
    await world.clock.advance(940);
    assert.equal(world.server.refreshCalls.length, 2, "then refreshed, once the floor has passed");
  });

  it("minIntervalMs sets the floor; an explicit refresh() is not held to it", async () => {
    const world = makeWorld();
    world.server.refreshQueue.push(...Array(100).fill(() => world.server.issue(0.01)));
    const tab = world.openTab("tab", { minIntervalMs: 5_000 });
    await tab.manager.start();
    await world.clock.advance(10_000);
    assert.equal(world.server.refreshCalls.length, 3, "at 0, 5 and 10 s");
    assert.equal(await tab.manager.refresh(), true);
    assert.equal(world.server.refreshCalls.length, 4);
    assert.ok(new RefreshManager({ minIntervalMs: 60_000 }) && new RefreshManager({ minIntervalMs: 1_000 }));
  });
});
