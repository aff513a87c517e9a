// refresh-socket.js: a WebSocket kept authenticated by a real RefreshManager (fake server and clock).
// The test plays the WebSocket server through the fake sockets: accept(), receive(), drop().
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { RENEWED_PREFIX, RENEW_PREFIX, RefreshingWebSocket, SOCKET_PROTOCOL, bearerProtocols } from "../refresh-socket.js";
import { CountingTarget, T0, answers, deferred, fakeWebSockets, jwtLike, makeWorld, settle } from "./fakes.mjs";

const HOUR = 3_600_000;
const EVENT_TYPES = ["open", "message", "close", "state", "renewed"];

/**
 * A RefreshingWebSocket over fake sockets, in `world` (a fresh one by default) with a started
 * manager. random() is 0.5, so backoff delays are 750, 1500, 3000, 6000... ms.
 */
async function connect({ world = makeWorld(), tab = world.openTab(), start = true, url = "/ws/feed?room=1", ...options } = {}) {
  if (start) await tab.manager.start();
  const { WebSocket, sockets } = fakeWebSockets();
  const timers = new Set(); // the socket's own timers: the manager has some too
  const logs = [];
  const seen = [];
  const online = new CountingTarget();
  const ws = new RefreshingWebSocket(tab.manager, url, {
    WebSocket,
    baseUrl: "https://app.example/dashboard/",
    now: world.clock.now,
    setTimeout: (fn, ms) => {
      const id = world.clock.setTimeout(() => { timers.delete(id); fn(); }, ms);
      timers.add(id);
      return id;
    },
    clearTimeout: (id) => { timers.delete(id); world.clock.clearTimeout(id); },
    random: () => 0.5,
    events: online,
    log: (level, message) => logs.push({ level, message }),
    ...options,
  });
  for (const type of EVENT_TYPES) ws.addEventListener(type, (event) => seen.push({ type, detail: event.detail }));
  await settle();
  return {
    world, tab, ws, sockets, timers, logs, online, seen,
    get last() { return sockets.at(-1); },
    of: (type) => seen.filter((event) => event.type === type).map((event) => event.detail),
    lastClose: () => seen.filter((event) => event.type === "close").at(-1)?.detail,
  };
}

/** Holds the next refresh answer until the returned deferred is resolved. */
function slowRefresh(world) {
  const gate = deferred();
  world.server.refreshQueue.push(async () => { await gate.promise; return world.server.issue(); });
  return gate;
}

/** A started tab whose refresh is in flight (held by `gate`) when a socket is created on it. */
async function connectDuringRefresh() {
  const world = makeWorld();
  const tab = world.openTab();
  await tab.manager.start();
  const gate = slowRefresh(world);
  void tab.manager.refresh();
  const s = await connect({ world, tab, start: false });
  return { gate, s };
}

describe("bearerProtocols", () => {
  it("offers the app's protocols, then the marker, then the token entry", () => {
    assert.equal(SOCKET_PROTOCOL, "starlette-refresh");
    const token = jwtLike(1, T0, 900);
    assert.deepEqual(bearerProtocols(token), ["starlette-refresh", `starlette-refresh.bearer.${token}`]);
    assert.deepEqual(bearerProtocols("abc", ["chat.v2", "json"]),
      ["chat.v2", "json", "starlette-refresh", "starlette-refresh.bearer.abc"]);
  });

  it("refuses what is not a subprotocol token, without quoting it", () => {
    for (const bad of ["", null, undefined, 42, "SECRET a", "SECRET,b", "SECRET\u00e9", 'SECRET"', "SECRET(1)", "SECRET/x"]) {
      assert.throws(() => bearerProtocols(/** @type {any} */ (bad)),
        (error) => error instanceof TypeError && !error.message.includes("SECRET"), String(bad));
    }
  });
});

describe("connecting", () => {
  it("resolves the url against the page and offers the token after the app's protocols", async () => {
    const s = await connect({ protocols: ["chat.v2"] });
    assert.equal(s.sockets.length, 1);
    assert.equal(s.last.url, "wss://app.example/ws/feed?room=1");
    assert.equal(s.ws.url, "wss://app.example/ws/feed?room=1");
    assert.deepEqual(s.last.protocols,
      ["chat.v2", "starlette-refresh", `starlette-refresh.bearer.${s.tab.manager.accessToken}`]);
    assert.equal(s.ws.state, "connecting");
    assert.equal(s.ws.socket, s.last);
    assert.equal(s.world.server.refreshCalls.length, 1, "a fresh token needs no refresh");
    s.last.accept();
    assert.equal(s.ws.state, "open");
    assert.equal(s.ws.protocol, "starlette-refresh");
    assert.equal(s.ws.connections, 1);
    assert.deepEqual(s.of("open"), [{ protocol: "starlette-refresh", connections: 1 }]);
    assert.deepEqual(s.of("state"), [{ state: "open" }]);
    for (const [url, baseUrl, expected, tokenOrigins] of [
      ["live", "http://localhost:8000/app/page", "ws://localhost:8000/app/live"],
      ["/ws", "https://app.example/a/b", "wss://app.example/ws"],
      ["wss://other.example/x", "http://app.example/", "wss://other.example/x", ["https://other.example"]],
      [new URL("https://api.example/ws"), null, "wss://api.example/ws", ["https://api.example/"]],
    ]) {
      assert.equal((await connect({ url, baseUrl, tokenOrigins })).last.url, expected);
    }
    await assert.rejects(connect({ url: "/ws", baseUrl: null }), TypeError);
  });

  it("refreshes first when the token has less than minTokenMs left, not when it has more", async () => {
    for (const [leftMs, refreshes] of [[800, 2], [1_200, 1]]) {
      const world = makeWorld();
      const tab = world.openTab();
      await tab.manager.start();
      const first = tab.manager.accessToken;
      world.clock.jump(900_000 - leftMs); // throttled timers: the manager's own refresh has not run
      const s = await connect({ world, tab, start: false });
      assert.equal(world.server.refreshCalls.length, refreshes, `${leftMs} ms left`);
      assert.equal(s.last.token, tab.manager.accessToken);
      assert.equal(s.last.token === first, refreshes === 1);
    }
  });

  it("waits for a running refresh, and restores a session the manager has not started", async () => {
    const { gate, s } = await connectDuringRefresh();
    assert.equal(s.sockets.length, 0, "no socket while the manager is refreshing");
    gate.resolve();
    await settle();
    assert.equal(s.last.token, s.world.server.current);
    assert.equal(s.world.server.refreshCalls.length, 2, "shared the manager's refresh");

    const fresh = await connect({ start: false });
    assert.equal(fresh.world.server.refreshCalls.length, 1);
    assert.equal(fresh.last.token, fresh.world.server.current);
  });

  it("closes for good, with no socket, when there is no session", async () => {
    const world = makeWorld();
    world.server.refreshQueue.push(() => answers.error(400, "invalid_grant"));
    const s = await connect({ world, start: false });
    assert.equal(s.sockets.length, 0);
    assert.equal(s.ws.state, "closed");
    assert.deepEqual(s.of("close"), [{ code: 1000, reason: "logged out", wasOpen: false, reconnectInMs: null }]);
    assert.equal(s.online.listeners, 0);
    s.tab.manager.setSession({ access_token: "later-login", expires_in: 900 });
    await settle();
    assert.equal(s.sockets.length, 0, "closed for good: a later login does not reopen it");

    const other = makeWorld();
    const stopped = other.openTab();
    stopped.manager.stop(); // its refresh() resolves false, without a logged-out event
    const idle = await connect({ world: other, tab: stopped, start: false });
    assert.equal(idle.sockets.length, 0);
    assert.deepEqual(idle.of("close"), [{ code: 1000, reason: "logged out", wasOpen: false, reconnectInMs: null }]);
  });
});

describe("token expiry (4401)", () => {
  it("refreshes when the manager still holds the token, then reconnects at once", async () => {
    const s = await connect();
    const first = s.last;
    first.accept();
    await s.world.clock.advance(60_000);
    first.drop(4401, "token expired");
    await settle();
    assert.equal(s.world.server.refreshCalls.length, 2);
    assert.equal(s.sockets.length, 2);
    assert.notEqual(s.last.token, first.token);
    assert.equal(s.last.token, s.tab.manager.accessToken);
    assert.deepEqual(s.of("close"), [{ code: 4401, reason: "token expired", wasOpen: true, reconnectInMs: 0 }]);
    assert.equal(s.timers.size, 0, "no wait");
    s.last.accept();
    assert.equal(s.ws.connections, 2);
  });

  it("needs no refresh when the manager already replaced the token", async () => {
    const s = await connect();
    const first = s.last;
    first.accept();
    await s.world.clock.advance(810_000); // the manager's proactive refresh
    assert.equal(s.world.server.refreshCalls.length, 2);
    assert.equal(s.sockets.length, 1, "a refresh alone changes nothing");
    assert.equal(first.closedWith, null);
    first.drop(4401, "token expired");
    await settle();
    assert.equal(s.world.server.refreshCalls.length, 2);
    assert.equal(s.sockets.length, 2);
    assert.equal(s.last.token, s.tab.manager.accessToken);
    assert.notEqual(s.last.token, first.token);
  });

  it("backs off when 4401 repeats with no message in between (clocks that disagree)", async () => {
    const s = await connect();
    const expire = async () => {
      s.last.accept();
      s.last.drop(4401, "token expired");
      await settle();
      return s.lastClose().reconnectInMs;
    };
    assert.equal(await expire(), 0);
    assert.equal(s.sockets.length, 2);
    assert.equal(await expire(), 750);
    assert.equal(s.ws.state, "waiting");
    await s.world.clock.advance(749);
    assert.equal(s.sockets.length, 2);
    await s.world.clock.advance(1);
    assert.equal(s.sockets.length, 3);
    assert.equal(await expire(), 1_500);
    await s.world.clock.advance(1_500);
    assert.equal(s.world.server.refreshCalls.length, 4, "each rejected token was refreshed");
    s.last.accept();
    s.last.receive("hello");
    s.last.drop(4401, "token expired");
    assert.equal(s.lastClose().reconnectInMs, 0, "a message in between: a real expiry again");
  });

  it("a revoked session: the refresh fails and the socket closes for good", async () => {
    const s = await connect();
    s.last.accept();
    s.world.server.refreshQueue.push(() => answers.error(400, "invalid_grant"));
    s.last.drop(4401, "session revoked");
    await settle();
    assert.equal(s.ws.state, "closed");
    assert.equal(s.sockets.length, 1);
    assert.deepEqual(s.of("close").map((close) => [close.code, close.reason, close.reconnectInMs]),
      [[4401, "session revoked", 0], [1000, "logged out", null]]);
    await s.world.clock.advance(HOUR);
    assert.equal(s.sockets.length, 1);
  });
});

describe("other closes", () => {
  it("retries refused handshakes with growing backoff and no refresh; a healthy socket resets it", async () => {
    const s = await connect();
    const delays = [];
    for (let i = 0; i < 4; i++) {
      s.last.drop(1006);
      delays.push(s.lastClose().reconnectInMs);
      assert.equal(s.ws.state, "waiting");
      await s.world.clock.advance(delays.at(-1));
    }
    assert.deepEqual(delays, [750, 1_500, 3_000, 6_000]);
    assert.ok(s.of("close").every((close) => close.wasOpen === false && close.code === 1006));
    assert.equal(s.sockets.length, 5);
    assert.equal(s.world.server.refreshCalls.length, 1, "a refused handshake forces no refresh");
    s.last.accept();
    s.last.drop(1011); // opened but short-lived: still failing
    assert.equal(s.lastClose().reconnectInMs, 12_000);
    await s.world.clock.advance(12_000);
    s.last.accept();
    await s.world.clock.advance(10_000);
    s.last.drop(1012, "service restart");
    assert.deepEqual(s.lastClose(), { code: 1012, reason: "service restart", wasOpen: true, reconnectInMs: 750 });
  });

  it("\"online\" ends the wait at once; it changes nothing otherwise", async () => {
    const s = await connect();
    for (let i = 0; i < 3; i++) {
      s.last.drop(1006);
      await s.world.clock.advance(s.lastClose().reconnectInMs);
    }
    s.last.drop(1006);
    assert.equal(s.lastClose().reconnectInMs, 6_000);
    assert.equal(s.timers.size, 1);
    s.online.dispatchEvent(new Event("online"));
    await settle();
    assert.equal(s.sockets.length, 5);
    assert.equal(s.timers.size, 0);
    s.last.accept();
    s.online.dispatchEvent(new Event("online"));
    await settle();
    assert.equal(s.sockets.length, 5);
    assert.equal(s.ws.state, "open");
  });

  for (const code of [1000, 1008, 4403]) {
    it(`does not reconnect after ${code}`, async () => {
      const s = await connect();
      s.last.accept();
      s.last.drop(code, "bye");
      assert.equal(s.ws.state, "closed");
      assert.deepEqual(s.of("close"), [{ code, reason: "bye", wasOpen: true, reconnectInMs: null }]);
      assert.equal(s.online.listeners, 0);
      await s.world.clock.advance(HOUR);
      assert.equal(s.sockets.length, 1);
    });
  }

  it("asks shouldReconnect about every code but 4401", async () => {
    const asked = [];
    const s = await connect({ shouldReconnect: (code) => { asked.push(code); return code !== 1001; } });
    s.last.accept();
    s.last.drop(4401);
    await settle();
    s.last.accept();
    s.last.drop(1008);
    assert.equal(s.lastClose().reconnectInMs, 750);
    await s.world.clock.advance(750);
    s.last.drop(1001);
    assert.equal(s.ws.state, "closed");
    assert.deepEqual(asked, [1008, 1001]);
  });
});

describe("the manager's session", () => {
  it("logged-out closes the socket for good", async () => {
    const s = await connect();
    s.last.accept();
    await s.tab.manager.logout();
    assert.deepEqual(s.last.closedWith, { code: 1000, reason: "logged out" });
    assert.equal(s.ws.state, "closed");
    assert.equal(s.ws.socket, null);
    assert.deepEqual(s.lastClose(), { code: 1000, reason: "logged out", wasOpen: true, reconnectInMs: null });
    s.last.drop(1000, "logged out"); // the browser's own close event, later: stale
    await s.world.clock.advance(HOUR);
    assert.equal(s.sockets.length, 1);
    assert.equal(s.of("close").length, 1);
    assert.equal(s.online.listeners, 0);
  });

  it("a logout in another tab ends a waiting socket and its timer", async () => {
    const world = makeWorld();
    const other = world.openTab("other");
    const s = await connect({ world });
    await other.manager.start();
    s.last.drop(1006);
    assert.equal(s.timers.size, 1);
    await other.manager.logout();
    await settle();
    assert.equal(s.ws.state, "closed");
    assert.equal(s.timers.size, 0);
    assert.deepEqual(s.lastClose(), { code: 1000, reason: "logged out", wasOpen: false, reconnectInMs: null });
  });

  it("a login in another tab (maybe another user) reconnects with its token; a refresh there does not", async () => {
    const world = makeWorld();
    const other = world.openTab("other");
    const s = await connect({ world });
    await other.manager.start();
    await settle();
    const first = s.last;
    first.accept();
    await other.manager.refresh();
    await settle();
    assert.equal(s.sockets.length, 1, "another tab's refresh changes nothing");
    other.manager.setSession({ access_token: "user-2-token", expires_in: 900 });
    await settle();
    assert.deepEqual(first.closedWith, { code: 1000, reason: "new login" });
    assert.equal(s.sockets.length, 2);
    assert.equal(s.last.token, "user-2-token");
    assert.deepEqual(s.lastClose(), { code: 1000, reason: "new login", wasOpen: true, reconnectInMs: 0 });
    first.drop(1000, "new login"); // the replaced socket's late close event
    assert.equal(s.of("close").length, 1);
    assert.equal(s.ws.state, "connecting");
  });
});

/** The `exp` claim (Unix seconds) of a token from the fake server. */
const expOf = (token) => JSON.parse(Buffer.from(token.split(".")[1], "base64url")).exp;

/**
 * Every send() the module tries on `socket`, including those a browser would refuse (while
 * connecting it throws, while closing it discards): `sent` only shows what went out.
 */
function attempts(socket) {
  const tried = [];
  const send = socket.send.bind(socket);
  socket.send = (data) => { tried.push(data); return send(data); };
  return tried;
}

describe("in-band renewal", () => {
  it("sends the manager's new token after a refresh here or in another tab; a login reconnects instead", async () => {
    assert.equal(RENEW_PREFIX, "starlette-refresh.renew ");
    assert.equal(RENEWED_PREFIX, "starlette-refresh.renewed ");
    const world = makeWorld();
    const other = world.openTab("other");
    await other.manager.start(); // before the socket: its token would arrive during the handshake
    const s = await connect({ world });
    const first = s.last;
    first.accept();
    assert.deepEqual(first.sent, [], "the socket's own token is not sent again");
    await world.clock.advance(810_000); // the manager's proactive refresh (one tab's, shared)
    assert.equal(s.tab.of("refreshed").at(-1).source, "network");
    const renewed = s.tab.manager.accessToken;
    assert.notEqual(renewed, first.token);
    assert.deepEqual(first.sent, [`starlette-refresh.renew ${renewed}`]);
    assert.equal(s.sockets.length, 1);
    assert.equal(first.closedWith, null);
    await other.manager.refresh();
    await settle();
    assert.equal(s.tab.of("refreshed").at(-1).source, "other-tab");
    assert.deepEqual(first.sent, [RENEW_PREFIX + renewed, RENEW_PREFIX + s.tab.manager.accessToken]);
    other.manager.setSession({ access_token: "user-2-token", expires_in: 900 });
    await settle();
    assert.equal(first.sent.length, 2, "a login's token is not a renewal: it may be another user's");
    assert.deepEqual(first.closedWith, { code: 1000, reason: "new login" });
    assert.equal(s.last.token, "user-2-token");
  });

  it("consumes the renewed answer: a `renewed` event and a count, never a `message`", async () => {
    const s = await connect();
    const first = s.last;
    first.accept();
    const appMessages = [];
    s.ws.addEventListener("message", (event) => appMessages.push(event.detail.data));
    await s.world.clock.advance(810_000);
    const exp = expOf(s.tab.manager.accessToken);
    first.receive(`starlette-refresh.renewed ${exp}`);
    assert.deepEqual(s.of("renewed"), [{ expiresAt: exp * 1000, renewals: 1 }]);
    assert.equal(s.ws.renewals, 1);
    assert.deepEqual(s.logs.at(-1), { level: "info", message: "Renewed in band (renewal 1)" });
    first.receive("hello");
    await s.world.clock.advance(810_000);
    assert.equal(first.sent.length, 2);
    first.receive(RENEWED_PREFIX + expOf(s.tab.manager.accessToken));
    assert.equal(s.ws.renewals, 2);

    first.drop(1012); // the count is the RefreshingWebSocket's, over its sockets
    await s.world.clock.advance(750);
    s.last.accept();
    await s.world.clock.advance(810_000);
    s.last.receive(RENEWED_PREFIX + expOf(s.tab.manager.accessToken));
    assert.equal(s.ws.renewals, 3);
    assert.deepEqual(s.of("renewed").map(({ renewals }) => renewals), [1, 2, 3]);
    assert.deepEqual(appMessages, ["hello"]);
    assert.deepEqual(s.of("message").map(({ data }) => data), ["hello"]);
    for (const { message } of s.logs) {
      assert.ok(!s.world.server.issued.some((token) => message.includes(token)), message);
    }
  });

  it("ignores a malformed renewed answer, with a warning that does not quote it", async () => {
    const s = await connect();
    s.last.accept();
    await s.world.clock.advance(810_000);
    const malformed = ["", "soon", "-5", "1.5", "1e9", " 1736153100", "1736153100 ", "SECRET", "9".repeat(13)];
    for (const rest of malformed) s.last.receive(RENEWED_PREFIX + rest);
    assert.deepEqual(s.of("renewed"), []);
    assert.deepEqual(s.of("message"), []);
    assert.equal(s.ws.renewals, 0);
    const warnings = s.logs.filter(({ level }) => level === "warn");
    assert.equal(warnings.length, malformed.length);
    assert.ok(warnings.every(({ message }) => message === "Ignored a malformed renewal answer"));
    s.last.receive("starlette-refresh.renewed"); // not the prefix (no space): the app's own
    s.last.receive(RENEWED_PREFIX + "1736153100");
    s.last.receive(RENEWED_PREFIX + "9".repeat(12));
    assert.deepEqual(s.of("message").map(({ data }) => data), ["starlette-refresh.renewed"]);
    assert.deepEqual(s.of("renewed"), [
      { expiresAt: 1_736_153_100_000, renewals: 1 },
      { expiresAt: 999_999_999_999_000, renewals: 2 },
    ]);
    assert.equal(s.ws.state, "open");
  });

  it("is off when the app selected its own protocol, or with renew: false (a 4401 at expiry instead)", async () => {
    const own = await connect({ protocols: ["chat.v2"] });
    own.last.accept("chat.v2");
    await own.world.clock.advance(810_000);
    assert.equal(own.world.server.refreshCalls.length, 2);
    assert.deepEqual(own.last.sent, []);
    own.last.receive(`${RENEWED_PREFIX}1736153100`); // the app's protocol: the prefix is not reserved
    assert.deepEqual(own.of("message").map(({ data }) => data), [`${RENEWED_PREFIX}1736153100`]);
    assert.deepEqual(own.of("renewed"), []);

    const off = await connect({ renew: false });
    const first = off.last;
    first.accept();
    await off.world.clock.advance(810_000);
    assert.equal(off.world.server.refreshCalls.length, 2);
    assert.deepEqual(first.sent, []);
    first.drop(4401, "token expired");
    await settle();
    assert.equal(off.sockets.length, 2);
    assert.equal(off.last.token, off.tab.manager.accessToken);
    off.last.accept();
    await off.world.clock.advance(810_000);
    assert.deepEqual(off.last.sent, []);
  });

  it("tries no renewal while the socket is connecting, closing or waiting", async () => {
    const s = await connect();
    const connecting = attempts(s.last);
    await s.tab.manager.refresh();
    await settle();
    assert.deepEqual(connecting, []);
    s.last.accept();
    const first = s.last;
    const closing = attempts(first);
    first.sent.length = 0;
    first.readyState = 2; // the server started closing
    await s.tab.manager.refresh();
    await settle();
    assert.deepEqual(closing, []);
    first.drop(1012);
    assert.equal(s.ws.state, "waiting");
    await s.tab.manager.refresh(); // no socket: nothing to do, nothing thrown
    await s.world.clock.advance(750);
    assert.equal(s.last.token, s.tab.manager.accessToken, "the next socket offers the newest token");
    s.last.accept();
    assert.deepEqual(s.last.sent, []);
  });

  it("renews right after open when the manager refreshed during the handshake", async () => {
    const s = await connect();
    const offered = s.last.token;
    const tried = attempts(s.last);
    await s.tab.manager.refresh();
    await settle();
    assert.notEqual(s.tab.manager.accessToken, offered);
    assert.deepEqual(tried, [], "not while connecting");
    const sentOnOpen = [];
    s.ws.addEventListener("open", () => sentOnOpen.push(...s.last.sent));
    s.last.accept();
    assert.deepEqual(s.last.sent, [RENEW_PREFIX + s.tab.manager.accessToken]);
    assert.deepEqual(sentOnOpen, s.last.sent, "before the app's open listeners");
  });

  it("never sends the same token twice on one socket", async () => {
    const s = await connect();
    const first = s.last;
    first.accept();
    await s.world.clock.advance(810_000);
    assert.equal(first.sent.length, 1);
    const again = () => s.tab.manager.dispatchEvent(new CustomEvent("refreshed", { detail: { source: "network" } }));
    again(); // a late or repeated event for the token already sent
    assert.equal(first.sent.length, 1);
    first.receive(RENEWED_PREFIX + expOf(s.tab.manager.accessToken));
    again(); // the server now holds it
    assert.equal(first.sent.length, 1);
    first.drop(1012); // a new socket offers its own token: nothing to renew
    await s.world.clock.advance(750);
    s.last.accept();
    again();
    assert.deepEqual(s.last.sent, []);
  });
});

describe("4401 after renewals: which token the server refused", () => {
  it("renewal refused: refreshes when the manager still holds the refused token, then reconnects", async () => {
    const s = await connect();
    const first = s.last;
    first.accept();
    await s.world.clock.advance(810_000);
    const refused = s.tab.manager.accessToken;
    assert.deepEqual(first.sent, [RENEW_PREFIX + refused]);
    first.drop(4401, "renewal refused");
    await settle();
    assert.deepEqual(s.of("close"), [{ code: 4401, reason: "renewal refused", wasOpen: true, reconnectInMs: 0 }]);
    assert.equal(s.world.server.refreshCalls.length, 3);
    assert.equal(s.sockets.length, 2);
    assert.notEqual(s.last.token, refused);
    assert.equal(s.last.token, s.tab.manager.accessToken);
    assert.ok(s.logs.some(({ message }) => message === "Closed (4401 renewal refused); reconnecting now"));
  });

  it("renewal refused names the oldest unanswered renewal: a newer token is offered without a refresh", async () => {
    const s = await connect();
    s.last.accept();
    await s.tab.manager.refresh();
    const refused = s.tab.manager.accessToken;
    await s.tab.manager.refresh();
    await settle();
    const newest = s.tab.manager.accessToken;
    assert.deepEqual(s.last.sent, [RENEW_PREFIX + refused, RENEW_PREFIX + newest]);
    s.last.drop(4401, "renewal refused");
    await settle();
    assert.equal(s.world.server.refreshCalls.length, 3);
    assert.equal(s.last.token, newest);
  });

  it("token expired: the token the server held, the last one it accepted, not one still on its way", async () => {
    const s = await connect();
    s.last.accept();
    await s.world.clock.advance(810_000);
    s.last.drop(4401, "token expired"); // the end of the first token crossed its renewal
    await settle();
    assert.equal(s.world.server.refreshCalls.length, 2, "the renewal's token was never refused");
    assert.equal(s.last.token, s.tab.manager.accessToken);

    const second = s.last;
    second.accept();
    second.receive("hello");
    await s.world.clock.advance(810_000);
    second.receive(RENEWED_PREFIX + expOf(s.tab.manager.accessToken));
    second.drop(4401, "token expired"); // the renewed token ended, and the manager still holds it
    await settle();
    assert.equal(s.world.server.refreshCalls.length, 4);
    assert.equal(s.last.token, s.tab.manager.accessToken);
    assert.notEqual(s.last.token, second.token);
  });
});

describe("close(), send() and stale sockets", () => {
  it("close() leaves no timer and no listener, and is final", async () => {
    const s = await connect();
    s.last.drop(1006);
    assert.equal(s.timers.size, 1);
    assert.equal(s.online.listeners, 1);
    s.ws.close();
    assert.equal(s.timers.size, 0);
    assert.equal(s.online.listeners, 0);
    assert.equal(s.ws.state, "closed");
    assert.deepEqual(s.of("close").at(-1), { code: 1000, reason: "", wasOpen: false, reconnectInMs: null });
    s.ws.close(4000, "again");
    assert.equal(s.of("close").length, 2, "a second close() does nothing");
    s.tab.manager.setSession({ access_token: "new-login", expires_in: 900 });
    await s.world.clock.advance(HOUR);
    assert.equal(s.sockets.length, 1);
  });

  it("close() while a refresh is awaited opens no socket; on an open socket it passes code and reason", async () => {
    const { gate, s } = await connectDuringRefresh();
    s.ws.close();
    gate.resolve();
    await settle();
    assert.equal(s.sockets.length, 0);
    assert.equal(s.of("close").length, 1);

    const open = await connect();
    open.last.accept();
    open.ws.close(4000, "leaving the page");
    assert.deepEqual(open.last.closedWith, { code: 4000, reason: "leaving the page" });
    assert.deepEqual(open.lastClose(), { code: 4000, reason: "leaving the page", wasOpen: true, reconnectInMs: null });
    open.ws.close();
    const invalid = await connect();
    invalid.ws.close(1001, "going away"); // a code browsers refuse to send: the socket still closes
    assert.deepEqual(invalid.last.closedWith, { code: undefined, reason: undefined });
  });

  it("send() is true on the open socket only, and never throws", async () => {
    const s = await connect();
    assert.equal(s.ws.send("early"), false, "connecting");
    s.last.accept();
    assert.equal(s.ws.send("hello"), true);
    assert.deepEqual(s.last.sent, ["hello"]);
    s.last.readyState = 2; // the server started closing
    assert.equal(s.ws.send("late"), false);
    s.last.drop(1012);
    assert.equal(s.ws.send("between"), false, "waiting");
    s.ws.close();
    assert.equal(s.ws.send("after"), false, "closed");
    assert.deepEqual(s.sockets[0].sent, ["hello"]);
  });

  it("ignores every event of a socket it replaced or closed", async () => {
    const s = await connect();
    const first = s.last;
    first.accept();
    first.drop(1012);
    await s.world.clock.advance(750);
    const before = s.seen.length;
    first.accept();
    first.receive("stale");
    first.drop(4401);
    await settle();
    assert.equal(s.seen.length, before);
    assert.equal(s.sockets.length, 2);
    assert.equal(s.ws.state, "connecting");
    s.last.accept();
    s.last.receive("fresh");
    assert.deepEqual(s.of("message").map(({ data }) => data), ["fresh"]);
    assert.ok(s.of("message")[0].event instanceof MessageEvent);
    assert.equal(s.ws.connections, 2);
  });
});

describe("logs and defaults", () => {
  it("never log a token", async () => {
    const s = await connect();
    s.last.accept();
    s.last.receive("x");
    s.last.drop(4401, "token expired");
    await settle();
    s.last.drop(1006);
    await s.world.clock.advance(HOUR);
    s.last.accept();
    s.last.drop(1008, "policy");
    const tokens = s.world.server.issued;
    assert.ok(tokens.length >= 3 && s.logs.length >= 5);
    for (const { message } of s.logs) {
      assert.ok(!tokens.some((token) => message.includes(token)) && !message.includes("SECRET"), message);
    }
    for (const line of ["Connected (connection 1)", "Closed (4401 token expired); reconnecting now",
      "Connection refused (1006); reconnecting in 0.8s", "Closed by the server (1008 policy); not reconnecting"]) {
      assert.ok(s.logs.some((entry) => entry.message === line), line);
    }
  });

  it("defaults to the global WebSocket, location, timers and console (mock.timers)", async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: T0 });
    t.mock.method(Math, "random", () => 0.5);
    const warn = t.mock.method(console, "warn", () => {});
    t.mock.method(console, "info", () => {});
    const { WebSocket, sockets } = fakeWebSockets();
    const g = /** @type {any} */ (globalThis);
    g.WebSocket = WebSocket;
    g.location = { href: "http://localhost:8000/app/" };
    try {
      const world = makeWorld();
      const tab = world.openTab();
      await tab.manager.start();
      const ws = new RefreshingWebSocket(tab.manager, "live");
      await settle();
      assert.equal(sockets[0].url, "ws://localhost:8000/app/live");
      sockets[0].drop(1006);
      assert.deepEqual(warn.mock.calls.at(-1).arguments, ["[socket] Connection refused (1006); reconnecting in 0.8s"]);
      t.mock.timers.tick(749);
      await settle();
      assert.equal(sockets.length, 1);
      t.mock.timers.tick(1);
      await settle();
      assert.equal(sockets.length, 2);
      ws.close();
      delete g.WebSocket;
      assert.throws(() => new RefreshingWebSocket(tab.manager, "live"), TypeError);
    } finally {
      delete g.WebSocket;
      delete g.location;
    }
  });
});
