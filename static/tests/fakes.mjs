// Test doubles for refresh-manager.js: a fake clock with a timer registry, a fake server behind a fake
// fetch (real Response objects), Map-backed storage, in-memory Web Locks, an in-memory BroadcastChannel
// bus and EventTargets that count their listeners. Not a test file itself (no .test. in the name).

import { RefreshManager } from "../refresh-manager.js";

export const T0 = Date.UTC(2025, 0, 6, 9, 0, 0);

/** Lets every pending promise chain, Response body read and setImmediate-delivered message run. */
export async function settle(rounds = 12) {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * Wall clock, monotonic clock (performance.now) and a timer registry on the monotonic one. `advance`
 * moves both clocks and fires due timers in order; `jump` is throttled timers (time passes, none
 * fires); `sleep` a suspended machine (only the wall clock moves: the monotonic clock and the timers
 * wait for it, as in Chrome on macOS and Linux); `setWall` a wall clock set by the user or NTP.
 */
export class FakeClock {
  time = T0;
  mono = 1_000;
  timers = new Map();
  nextId = 1;
  now = () => this.time;
  monotonic = () => this.mono;
  setTimeout = (fn, ms = 0) => {
    const id = this.nextId++;
    this.timers.set(id, { at: this.mono + Math.max(0, Number(ms) || 0), fn });
    return id;
  };
  clearTimeout = (id) => {
    this.timers.delete(id);
  };
  get pending() {
    return this.timers.size;
  }
  /** Time passes without firing any timer (timers throttled: they are due but late). */
  jump(ms) {
    this.time += ms;
    this.mono += ms;
  }
  /** Machine suspended: the wall clock moves; the monotonic clock and so the timers do not. */
  sleep(ms) {
    this.time += ms;
  }
  /** The wall clock is set by `ms` (negative: back); the monotonic clock and the timers are not. */
  setWall(ms) {
    this.time += ms;
  }
  async advance(ms) {
    const target = this.mono + ms;
    for (let fired = 0; ; fired++) {
      if (fired > 5_000) throw new Error("runaway timers: more than 5000 fired in one advance()");
      await settle();
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= target && (!next || timer.at < next.timer.at)) next = { id, timer };
      }
      if (!next) break;
      this.timers.delete(next.id);
      this.#to(next.timer.at);
      next.timer.fn();
    }
    this.#to(target);
    await settle();
  }
  #to(mono) {
    if (mono <= this.mono) return;
    this.time += mono - this.mono;
    this.mono = mono;
  }
}

export function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");

/** A JWT-shaped token whose iat/exp come from the server's (possibly skewed) clock. */
export function jwtLike(serial, serverNowMs, lifetime) {
  const iat = Math.floor(serverNowMs / 1000);
  const header = b64({ alg: "HS256", typ: "at+jwt" });
  return `${header}.${b64({ sub: "42", iat, exp: iat + lifetime, jti: `j${serial}` })}.SECRET-sig-${serial}`;
}

export const answers = {
  token: (accessToken, expiresIn = 900, headers = {}) =>
    new Response(JSON.stringify({ access_token: accessToken, token_type: "Bearer", expires_in: expiresIn }), {
      status: 200,
      headers: { "Content-Type": "application/json", "Cache-Control": "no-store", ...headers },
    }),
  error: (status, error, headers = {}) =>
    new Response(JSON.stringify({ error, error_description: `it is ${error}` }), {
      status,
      headers: { "Content-Type": "application/json", "Cache-Control": "no-store", ...headers },
    }),
  plain: (status, headers = {}) => new Response("nope", { status, headers }),
  invalidToken: () =>
    new Response(JSON.stringify({ error: "invalid_token", error_description: "token expired" }), {
      status: 401,
      headers: {
        "Content-Type": "application/json",
        "WWW-Authenticate": 'Bearer realm="app", error="invalid_token", error_description="token expired"',
      },
    }),
  bareChallenge: () =>
    new Response(JSON.stringify({ error_description: "an access token is required" }), {
      status: 401,
      headers: { "Content-Type": "application/json", "WWW-Authenticate": 'Bearer realm="app"' },
    }),
  json: (value, status = 200) =>
    new Response(JSON.stringify(value), { status, headers: { "Content-Type": "application/json" } }),
};

/**
 * The server. Refresh answers come from `refreshQueue` (functions returning a Response, or throwing
 * for a network error) and default to a fresh token. API answers come from `api(call)` and default
 * to 200 for the current token, 401 invalid_token otherwise.
 */
export class FakeServer {
  calls = [];
  refreshQueue = [];
  issued = [];
  current = null;
  serial = 0;

  constructor(clock, { lifetime = 900, skewMs = 0 } = {}) {
    this.clock = clock;
    this.lifetime = lifetime;
    this.skewMs = skewMs;
    this.api = (call) => (call.authorization === `Bearer ${this.current}` ? answers.json({ ok: true }) : answers.invalidToken());
  }

  get refreshCalls() {
    return this.calls.filter((call) => call.url.endsWith("/auth/refresh"));
  }
  get apiCalls() {
    return this.calls.filter((call) => call.url.includes("/api/"));
  }

  /** A successful refresh answer, with a token (and Date header) from the skewed server clock. */
  issue(lifetime = this.lifetime) {
    const serverNow = this.clock.now() + this.skewMs;
    this.current = jwtLike(++this.serial, serverNow, lifetime);
    this.issued.push(this.current);
    return answers.token(this.current, lifetime, { Date: new Date(serverNow).toUTCString() });
  }

  /** Returns a fetch bound to a tab label, so tests can tell which tab called. */
  fetchFor(tab) {
    return async (input, init = {}) => {
      const isRequest = input instanceof Request;
      const url = isRequest ? input.url : String(input);
      const headers = new Headers(init.headers ?? (isRequest ? input.headers : undefined));
      const body = init.body !== undefined ? init.body : isRequest ? await input.text() : undefined;
      const call = {
        tab, url, init, body,
        method: init.method ?? (isRequest ? input.method : "GET"),
        credentials: init.credentials,
        authorization: headers.get("Authorization"),
      };
      this.calls.push(call);
      await Promise.resolve();
      if (url.endsWith("/auth/refresh")) {
        const next = this.refreshQueue.shift();
        return next ? next(call) : this.issue();
      }
      if (url.endsWith("/auth/logout")) return new Response(null, { status: 204 });
      return this.api(call);
    };
  }
}

export const networkError = () => {
  throw new TypeError("fetch failed");
};

export class FakeStorage {
  map = new Map();
  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }
  setItem(key, value) {
    this.map.set(key, String(value));
  }
  removeItem(key) {
    this.map.delete(key);
  }
  dump() {
    return [...this.map].map(([k, v]) => `${k}=${v}`).join("\n");
  }
}

/** In-memory Web Locks (exclusive mode): ifAvailable, signal, release-then-resolve like browsers. */
export class FakeLocks {
  held = new Map();
  queues = new Map();
  isHeld(name) {
    return this.held.get(name) === true;
  }
  request(name, options, callback) {
    if (typeof options === "function") [callback, options] = [options, {}];
    return new Promise((resolve, reject) => {
      const run = () => {
        this.held.set(name, true);
        queueMicrotask(async () => {
          let result;
          let failure = null;
          try {
            result = await callback({ name, mode: "exclusive" });
          } catch (error) {
            failure = { error };
          }
          this.release(name);
          if (failure) reject(failure.error);
          else resolve(result);
        });
      };
      if (!this.isHeld(name)) return run();
      if (options.ifAvailable) {
        queueMicrotask(async () => {
          try {
            resolve(await callback(null));
          } catch (error) {
            reject(error);
          }
        });
        return;
      }
      const queue = this.queues.get(name) ?? [];
      this.queues.set(name, queue);
      const entry = { run };
      const signal = options.signal;
      if (signal?.aborted) return reject(signal.reason);
      queue.push(entry);
      signal?.addEventListener(
        "abort",
        () => {
          const index = queue.indexOf(entry);
          if (index >= 0) {
            queue.splice(index, 1);
            reject(signal.reason);
          }
        },
        { once: true },
      );
    });
  }
  release(name) {
    this.held.set(name, false);
    this.queues.get(name)?.shift()?.run();
  }
  /** The same locks seen by one tab, which can tell whether that tab is holding one right now. */
  forTab() {
    const base = this;
    let holding = 0;
    return {
      get holding() {
        return holding > 0;
      },
      request(name, options, callback) {
        return base.request(name, options, async (lock) => {
          if (lock) holding++;
          try {
            return await callback(lock);
          } finally {
            if (lock) holding--;
          }
        });
      },
    };
  }
  /** A stuck tab: takes the lock and never lets go. */
  holdForever(name) {
    this.request(name, {}, () => new Promise(() => {}));
  }
}

/** EventTarget that counts its listeners, to prove stop() removed them. */
export class CountingTarget extends EventTarget {
  listeners = 0;
  addEventListener(type, listener, options) {
    this.listeners++;
    super.addEventListener(type, listener, options);
  }
  removeEventListener(type, listener, options) {
    this.listeners--;
    super.removeEventListener(type, listener, options);
  }
}

export class FakeDocument extends CountingTarget {
  visibilityState = "visible";
}

/** BroadcastChannel stand-in: structured-cloned, delivered to the other channels later (setImmediate). */
export class FakeBus {
  channels = new Set();
  paused = false;
  held = [];
  open = (name) => {
    const channel = new FakeChannel(this, name);
    this.channels.add(channel);
    return channel;
  };
  deliver(from, data) {
    for (const channel of this.channels) {
      if (channel === from || channel.name !== from.name) continue;
      const send = () => setImmediate(() => channel.closed || channel.dispatchEvent(new MessageEvent("message", { data })));
      if (this.paused) this.held.push(send);
      else send();
    }
  }
  resume() {
    this.paused = false;
    for (const send of this.held.splice(0)) send();
  }
}

class FakeChannel extends CountingTarget {
  closed = false;
  posted = [];
  constructor(bus, name) {
    super();
    this.bus = bus;
    this.name = name;
  }
  postMessage(data) {
    if (this.closed) throw new DOMException("channel closed", "InvalidStateError");
    const copy = structuredClone(data);
    this.posted.push(copy);
    this.bus.deliver(this, copy);
  }
  close() {
    this.closed = true;
    this.bus.channels.delete(this);
  }
}

const EVENT_TYPES = ["refreshed", "expiring", "logged-out", "error", "state"];

/** One shared world (clock, server, storage, locks, bus) in which tabs are opened. */
export function makeWorld({ lifetime = 900, skewMs = 0, locks = true, bus = true } = {}) {
  const clock = new FakeClock();
  const world = {
    clock,
    server: new FakeServer(clock, { lifetime, skewMs }),
    storage: new FakeStorage(),
    locks: locks ? new FakeLocks() : null,
    bus: bus ? new FakeBus() : null,
    tabs: [],
    /** Every log line of every tab. */
    get logs() {
      return world.tabs.flatMap((tab) => tab.logs);
    },
    openTab(name = `tab${world.tabs.length + 1}`, options = {}) {
      const tab = { name, logs: [], seen: [], events: new CountingTarget(), document: new FakeDocument() };
      tab.manager = new RefreshManager({
        now: clock.now,
        monotonic: clock.monotonic,
        setTimeout: clock.setTimeout,
        clearTimeout: clock.clearTimeout,
        fetch: world.server.fetchFor(name),
        storage: world.storage,
        locks: world.locks,
        channel: world.bus ? world.bus.open : null,
        events: tab.events,
        document: tab.document,
        random: () => 0.5,
        log: (level, message) => tab.logs.push({ level, message }),
        origin: "http://app.test", // the page's origin: relative urls resolve against it
        ...options,
      });
      for (const type of EVENT_TYPES) {
        tab.manager.addEventListener(type, (event) => tab.seen.push({ type, detail: event.detail }));
      }
      tab.of = (type) => tab.seen.filter((event) => event.type === type).map((event) => event.detail);
      tab.messages = () => tab.logs.map((line) => line.message);
      tab.calls = () => world.server.calls.filter((call) => call.tab === name);
      world.tabs.push(tab);
      return tab;
    },
  };
  return world;
}

/**
 * WebSocket stand-in for refresh-socket.js: a class whose instances are recorded in `sockets`, in
 * order. The test plays the server with accept(), receive() and drop(). Like a browser's, send()
 * throws while connecting and discards data once closing; close() throws for a code browsers refuse.
 */
export function fakeWebSockets() {
  const sockets = [];
  class FakeWebSocket extends EventTarget {
    readyState = 0;
    protocol = "";
    sent = [];
    closedWith = null;
    constructor(url, protocols) {
      super();
      this.url = url;
      this.protocols = protocols;
      sockets.push(this);
    }
    /** The access token this socket offered. */
    get token() {
      const prefix = "starlette-refresh.bearer.";
      return this.protocols.find((entry) => entry.startsWith(prefix))?.slice(prefix.length) ?? null;
    }
    send(data) {
      if (this.readyState === 0) throw new DOMException("still connecting", "InvalidStateError");
      if (this.readyState === 1) this.sent.push(data);
    }
    close(code, reason) {
      if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) {
        throw new DOMException(`close code ${code} refused`, "InvalidAccessError");
      }
      this.closedWith = { code, reason };
      this.readyState = 2;
    }
    /** The server accepts the handshake, selecting `protocol`. */
    accept(protocol = "starlette-refresh") {
      this.readyState = 1;
      this.protocol = protocol;
      this.dispatchEvent(new Event("open"));
    }
    receive(data) {
      this.dispatchEvent(new MessageEvent("message", { data }));
    }
    /** The connection ends: a refused handshake (1006 before any open) or a close by the server. */
    drop(code = 1006, reason = "") {
      this.readyState = 3;
      this.dispatchEvent(Object.assign(new Event("close"), { code, reason, wasClean: code !== 1006 }));
    }
  }
  return { WebSocket: FakeWebSocket, sockets };
}
