// @ts-check
/**
 * refresh-socket.js: a WebSocket that stays authenticated with a RefreshManager's access token.
 *
 * Browsers cannot set headers on a WebSocket, so the token travels in the subprotocol list, next to
 * the `starlette-refresh` marker that the server selects. The server refuses a bad token at the
 * handshake (in a browser: a close with 1006 and no open), and closes an open socket with 4401 when
 * its token expires or its session is revoked. When the server selected the marker, this module
 * renews the open socket in band after each refresh (a `starlette-refresh.renew <token>` frame), so
 * the socket outlives its first token; otherwise it reconnects with a fresh token after the 4401.
 * It retries other failures with backoff, and stops for good when the manager logs out.
 *
 * Dependency-free ES module, no build step. Every browser API is injectable; nothing touches
 * WebSocket, location or window at import time.
 * @module refresh-socket
 */

import { backoffDelayMs, originsOf } from "./refresh-manager.js";

/** @typedef {import("./refresh-manager.js").RefreshManager} RefreshManager */
/** @typedef {import("./refresh-manager.js").BackoffOptions} BackoffOptions */
/** @typedef {import("./refresh-manager.js").LogLevel} LogLevel */
/** @typedef {"connecting" | "open" | "waiting" | "closed"} SocketState */
/**
 * The part of a RefreshManager the socket uses: its public API only.
 * @typedef {Pick<RefreshManager, "accessToken" | "expiresAt" | "state" | "refresh"
 *   | "addEventListener" | "removeEventListener">} ManagerLike
 */
/**
 * The parts of a browser WebSocket the module uses, and its constructor.
 * @typedef {EventTarget & {readonly readyState: number, readonly protocol: string,
 *   send(data: any): void, close(code?: number, reason?: string): void}} WebSocketLike
 */
/** @typedef {new (url: string, protocols: string[]) => WebSocketLike} WebSocketConstructor */

/**
 * Constructor options, all optional. Injectables default to the browser globals (looked up when the
 * socket is built, or at each call for the clock and timers).
 * @typedef {object} RefreshingWebSocketOptions
 * @property {string[]} [protocols]       the app's own subprotocols, offered first (default [])
 * @property {WebSocketConstructor} [WebSocket]  default globalThis.WebSocket
 * @property {string | URL | null} [baseUrl]  relative urls are resolved against it (default location.href)
 * @property {() => number} [now]         clock in ms (default Date.now)
 * @property {(fn: () => void, ms: number) => any} [setTimeout]
 * @property {(id: any) => void} [clearTimeout]
 * @property {() => number} [random]      jitter source in [0, 1) (default Math.random)
 * @property {BackoffOptions} [backoff]   default {baseMs: 1000, maxMs: 30000}
 * @property {number} [minTokenMs]        a token with less than this left is refreshed before
 *   connecting (default 1000: the manager refreshes well before expiry, and a lifetime may be
 *   only seconds long)
 * @property {EventTarget | null} [events] receives "online": a waiting socket reconnects at once (default window)
 * @property {(level: LogLevel, message: string) => void} [log]
 *   default `(level, message) => console[level](\`[socket] ${message}\`)`
 * @property {(code: number) => boolean} [shouldReconnect]  whether a close code is worth a reconnect;
 *   default false for 1000, 1003, 1007, 1008, 1009, 1010, 4400 and 4403. A 4401 always reconnects.
 * @property {string[]} [tokenOrigins]   more origins (or absolute URLs) the socket may offer the token
 *   to; the page's (baseUrl's) always may, no other: a socket url elsewhere throws a TypeError (default [])
 * @property {boolean} [renew]            renew the open socket in band after each refresh, when the
 *   server selected the `starlette-refresh` subprotocol (default true); false: the server closes the
 *   socket with 4401 at each token's expiry and it reconnects
 */

/**
 * Event details (every event is a CustomEvent, like the manager's):
 * @typedef {{protocol: string, connections: number}} OpenDetail  `open`
 * @typedef {{data: any, event: MessageEvent}} MessageDetail  `message`: event is the raw MessageEvent
 * @typedef {{code: number, reason: string, wasOpen: boolean, reconnectInMs: number | null}} CloseDetail
 *   `close`: wasOpen false for a failed handshake; reconnectInMs null when the socket is closed for good
 * @typedef {{state: SocketState}} SocketStateDetail  `state`: every state change
 * @typedef {{expiresAt: number, renewals: number}} RenewedDetail  `renewed`: the server accepted an
 *   in-band renewal; expiresAt is the new token's expiry in ms (the server's clock), renewals the total
 */

/** The subprotocol the server selects; the token entry is `${SOCKET_PROTOCOL}.bearer.<token>`. */
export const SOCKET_PROTOCOL = "starlette-refresh";
/** A client's text frame `${RENEW_PREFIX}<access token>` renews the open socket in band. */
export const RENEW_PREFIX = `${SOCKET_PROTOCOL}.renew `;
/**
 * The server's answer to a renewal, `${RENEWED_PREFIX}<exp in Unix seconds>`. Reserved on a socket
 * that selected SOCKET_PROTOCOL: such frames never reach the app's `message` listeners.
 */
export const RENEWED_PREFIX = `${SOCKET_PROTOCOL}.renewed `;

const TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/; // RFC 7230 tchar: what a subprotocol may hold
const EXPIRED = 4401; // the server's close code: an expired token, a revoked session, a refused renewal
const RENEWAL_REFUSED = "renewal refused"; // the reason of a 4401 that refuses a renewal
const RENEWED_EXP = /^\d{1,12}$/; // integer Unix seconds: at most 12 digits stay exact, and a valid Date, in ms
/** Reconnecting after these would be refused the same way (or the server asked to stop). */
const FINAL_CODES = new Set([1000, 1003, 1007, 1008, 1009, 1010, 4400, 4403]);
/** A socket that stayed open this long was healthy: the backoff starts over. */
const STABLE_MS = 10_000;
const OPEN = 1; // WebSocket.OPEN, spelled out: stand-ins need not define the constant

/**
 * The subprotocol list that carries `accessToken`, for code that opens its own sockets.
 * @param {string} accessToken
 * @param {string[]} [protocols]  the app's own subprotocols, offered first
 * @returns {string[]}
 */
export function bearerProtocols(accessToken, protocols = []) {
  if (typeof accessToken !== "string" || !TOKEN_CHARS.test(accessToken)) {
    // never quote the token: error messages end up in logs
    throw new TypeError("the access token must be a non-empty string of RFC 7230 token characters");
  }
  return [...protocols, SOCKET_PROTOCOL, `${SOCKET_PROTOCOL}.bearer.${accessToken}`];
}

/**
 * A WebSocket that offers the manager's access token, renews it in band and reconnects with a fresh
 * one. An EventTarget: listen for `open`, `message`, `close`, `state` and `renewed` (see the *Detail
 * typedefs). Connects at once; the first state is "connecting" (no `state` event for it).
 */
export class RefreshingWebSocket extends EventTarget {
  #o;
  #manager;
  #url;
  /** @type {SocketState} */ #state = "connecting";
  /** @type {WebSocketLike | null} */ #socket = null;
  /** The token the server holds for the current socket: offered, then renewed. @type {string | null} */ #socketToken = null;
  /** Renewals sent on the current socket, unanswered, oldest first (answered in order). @type {string[]} */ #renewing = [];
  #renewals = 0;
  /** The token of the last socket closed with 4401: not offered again. @type {string | null} */ #rejected = null;
  #protocol = "";
  #connections = 0;
  #openedAt = 0;
  /** Consecutive failed or short-lived connections: the backoff exponent. */ #failures = 0;
  /** The last 4401 has not been followed by a message or a healthy socket yet. */ #after4401 = false;
  /** Bumped by every connect and by close(): an older connect awaiting a token gives up. */ #attempt = 0;
  /** @type {(() => void) | null} */ #cancelTimer = null;
  /** @type {(() => void)[]} */ #unlisten = [];

  /**
   * @param {ManagerLike} manager  the page's RefreshManager
   * @param {string | URL} url  relative urls resolve against baseUrl; http(s) becomes ws(s)
   * @param {RefreshingWebSocketOptions} [options]
   */
  constructor(manager, url, options = {}) {
    super();
    this.#o = resolveOptions(options);
    if (typeof this.#o.WebSocket !== "function") throw new TypeError("no WebSocket here: pass options.WebSocket");
    this.#manager = manager;
    this.#url = socketUrl(url, this.#o.baseUrl);
    const origin = new URL(this.#url.replace(/^ws/, "http")).origin;
    if (!originsOf(this.#o.tokenOrigins, "tokenOrigins", [this.#o.baseUrl]).includes(origin)) {
      throw new TypeError(`the access token goes only to the page's origin or tokenOrigins, not to ${origin}`);
    }
    this.#listen();
    void this.#connect();
  }

  /** @returns {SocketState} */
  get state() { return this.#state; }
  /** The current WebSocket (connecting or open), or null. @returns {WebSocketLike | null} */
  get socket() { return this.#socket; }
  /** The subprotocol the server selected for the open socket; "" otherwise. @returns {string} */
  get protocol() { return this.#protocol; }
  /** How many times a socket opened. @returns {number} */
  get connections() { return this.#connections; }
  /** How many in-band renewals the server accepted, over every socket. @returns {number} */
  get renewals() { return this.#renewals; }
  /** The resolved ws:// or wss:// url. @returns {string} */
  get url() { return this.#url; }

  /**
   * Sends on the open socket. Returns false, without throwing, when there is none: data sent
   * between two sockets is not queued (the app's protocol should resync on `open`).
   * @param {string | ArrayBufferLike | Blob | ArrayBufferView} data
   * @returns {boolean}
   */
  send(data) {
    const socket = this.#socket;
    if (this.#state !== "open" || !socket || socket.readyState !== OPEN) return false;
    try { socket.send(data); return true; } catch { return false; } // a socket closing meanwhile
  }

  /**
   * Closes for good: clears the timer and every listener, closes the socket and emits `close`
   * with reconnectInMs null. Does nothing when already closed.
   * @param {number} [code] @param {string} [reason]
   */
  close(code = 1000, reason = "") {
    if (this.#state === "closed") return;
    this.#log("info", `Closed (${describe(code, reason)})`);
    this.#finish(code, reason, this.#state === "open");
  }

  // --- connecting ---------------------------------------------------------------------------------

  async #connect() {
    this.#clearTimer();
    const attempt = ++this.#attempt;
    this.#setState("connecting");
    const token = await this.#token();
    if (attempt !== this.#attempt) return; // closed, or a newer connect took over meanwhile
    if (token === null) {
      this.#log("info", "Logged out; not connecting");
      return this.#finish(1000, "logged out", false);
    }
    /** @type {WebSocketLike} */
    let socket;
    try {
      const WebSocketClass = this.#o.WebSocket;
      socket = new WebSocketClass(this.#url, bearerProtocols(token, this.#o.protocols));
    } catch (error) {
      // a malformed url or protocol list fails the same way every time: retrying cannot help
      this.#log("error", `Cannot open a socket (${error instanceof Error ? error.name : "error"})`);
      return this.#finish(1006, "cannot open a socket", false);
    }
    this.#socket = socket;
    this.#socketToken = token;
    this.#renewing = [];
    // each listener checks that its socket is still the current one: a replaced socket is stale
    socket.addEventListener("open", () => socket === this.#socket && this.#onOpen(socket));
    socket.addEventListener("message", (event) => socket === this.#socket && this.#onMessage(event));
    socket.addEventListener("close", (event) => socket === this.#socket && this.#onClose(event));
  }

  /**
   * The manager's token, refreshed first when it is missing, being refreshed, about to expire or
   * was refused by the server. Null when the session is over.
   * @returns {Promise<string | null>}
   */
  async #token() {
    const manager = this.#manager;
    const token = manager.accessToken;
    const left = Number(manager.expiresAt) - this.#o.now();
    if (token === null || token === this.#rejected || manager.state === "refreshing" || left < this.#o.minTokenMs) {
      if (!(await manager.refresh())) return null;
    }
    return manager.accessToken;
  }

  /** @param {WebSocketLike} socket */
  #onOpen(socket) {
    this.#connections++;
    this.#openedAt = this.#o.now();
    this.#protocol = String(socket.protocol ?? "");
    this.#setState("open");
    this.#log("info", `Connected (connection ${this.#connections})`);
    this.#renew(); // a refresh during the handshake: its "refreshed" found no open socket
    this.#emit("open", { protocol: this.#protocol, connections: this.#connections });
  }

  /** @param {Event} event */
  #onMessage(event) {
    this.#after4401 = false; // the server is talking to this token: a later 4401 is a real expiry
    const data = /** @type {MessageEvent} */ (event).data;
    if (this.#protocol === SOCKET_PROTOCOL && typeof data === "string" && data.startsWith(RENEWED_PREFIX)) {
      return this.#onRenewed(data.slice(RENEWED_PREFIX.length));
    }
    this.#emit("message", { data, event });
  }

  // --- in-band renewal ----------------------------------------------------------------------------

  /**
   * Hands the manager's token to the open socket, so the server moves the socket's end to that
   * token's expiry instead of closing it with 4401. Only the marker's protocol has this frame: an app
   * that selected its own protocol would receive it as data.
   */
  #renew() {
    const socket = this.#socket;
    const token = this.#manager.accessToken;
    if (!this.#o.renew || this.#state !== "open" || !socket || socket.readyState !== OPEN) return;
    if (this.#protocol !== SOCKET_PROTOCOL || token === null) return;
    if (token === this.#socketToken || this.#renewing.includes(token)) return;
    try { socket.send(RENEW_PREFIX + token); } catch { return; } // closing meanwhile: its close event follows
    this.#renewing.push(token);
  }

  /** @param {string} exp  what follows RENEWED_PREFIX */
  #onRenewed(exp) {
    if (!RENEWED_EXP.test(exp)) {
      this.#log("warn", "Ignored a malformed renewal answer");
      return;
    }
    this.#socketToken = this.#renewing.shift() ?? this.#socketToken;
    this.#renewals++;
    this.#log("info", `Renewed in band (renewal ${this.#renewals})`);
    this.#emit("renewed", { expiresAt: Number(exp) * 1000, renewals: this.#renewals });
  }

  /** @param {Event} event */
  #onClose(event) {
    const { code = 1006, reason = "" } = /** @type {Partial<CloseEvent>} */ (event);
    const wasOpen = this.#state === "open";
    this.#socket = null;
    this.#protocol = "";
    if (wasOpen && this.#o.now() - this.#openedAt >= STABLE_MS) {
      this.#failures = 0;
      this.#after4401 = false;
    }
    /** @type {number} */
    let delay;
    if (code === EXPIRED) {
      // the next connect refreshes if the manager still holds it. A refused renewal names the oldest
      // unanswered one; any other 4401 the token the server held (a renewal may have crossed it).
      this.#rejected = (reason === RENEWAL_REFUSED && this.#renewing[0]) || this.#socketToken;
      // a second 4401 with nothing received in between: the clocks disagree, so no tight loop
      delay = this.#after4401 ? this.#nextBackoff() : 0;
      this.#after4401 = true;
    } else if (this.#o.shouldReconnect(code)) {
      // a failed handshake too: the token was fresh, so no forced refresh. A revoked session ends
      // at the manager's next refresh, and its `logged-out` stops this socket.
      delay = this.#nextBackoff();
    } else {
      this.#log(code === 1000 ? "info" : "warn", `Closed by the server (${describe(code, reason)}); not reconnecting`);
      return this.#finish(code, reason, wasOpen);
    }
    const what = wasOpen ? `Closed (${describe(code, reason)})` : `Connection refused (${describe(code, reason)})`;
    this.#log(wasOpen ? "info" : "warn", `${what}; reconnecting ${delay ? `in ${(delay / 1000).toFixed(1)}s` : "now"}`);
    if (delay > 0) this.#wait(delay);
    else void this.#connect();
    this.#emit("close", { code, reason, wasOpen, reconnectInMs: delay });
  }

  #nextBackoff() {
    return backoffDelayMs(this.#failures++, this.#o.backoff, this.#o.random);
  }

  /** Replaces the socket now, e.g. for a new login: the old token may belong to another user. @param {string} reason */
  #restart(reason) {
    if (this.#state === "closed") return;
    const wasOpen = this.#state === "open";
    const socket = this.#drop(1000, reason);
    this.#log("info", `Reconnecting (${reason})`);
    void this.#connect();
    if (socket) this.#emit("close", { code: 1000, reason, wasOpen, reconnectInMs: 0 });
  }

  /** Ends everything; emits the final `close`. @param {number} code @param {string} reason @param {boolean} wasOpen */
  #finish(code, reason, wasOpen) {
    this.#attempt++;
    this.#clearTimer();
    for (const off of this.#unlisten.splice(0)) off();
    this.#drop(code, reason);
    this.#setState("closed");
    this.#emit("close", { code, reason, wasOpen, reconnectInMs: null });
  }

  /** Forgets the current socket (its late events are stale) and closes it. @param {number} code @param {string} reason */
  #drop(code, reason) {
    const socket = this.#socket;
    this.#socket = null;
    this.#protocol = "";
    try { socket?.close(code, reason); } catch { // browsers send only 1000 and 3000-4999, reasons up to 123 bytes
      try { socket?.close(); } catch { /* already closed */ }
    }
    return socket;
  }

  // --- timers, listeners, plumbing ------------------------------------------------------------------

  /** @param {number} ms */
  #wait(ms) {
    this.#clearTimer();
    this.#setState("waiting");
    const { setTimeout, clearTimeout } = this.#o; // called detached: browsers refuse a foreign `this`
    const id = setTimeout(() => { this.#cancelTimer = null; void this.#connect(); }, ms);
    this.#cancelTimer = () => clearTimeout(id);
  }

  #clearTimer() {
    this.#cancelTimer?.();
    this.#cancelTimer = null;
  }

  #listen() {
    /** @param {Pick<EventTarget, "addEventListener" | "removeEventListener">} target @param {string} type @param {(event: any) => void} handler */
    const on = (target, type, handler) => {
      target.addEventListener(type, handler);
      this.#unlisten.push(() => target.removeEventListener(type, handler));
    };
    on(this.#manager, "logged-out", () => this.close(1000, "logged out"));
    // A login may be another user's, and a renewal never switches a socket's session: reconnect.
    // Other refreshes renew the socket in band; without renewal, the server closes it with 4401 when
    // its token ends, and by then the manager holds the next one.
    on(this.#manager, "refreshed", (event) => {
      if (event?.detail?.source === "login") this.#restart("new login");
      else this.#renew();
    });
    const events = this.#o.events;
    if (events) {
      on(events, "online", () => {
        if (this.#state !== "waiting") return;
        this.#log("info", "Back online; reconnecting now");
        void this.#connect();
      });
    }
  }

  /** @param {SocketState} state */
  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    this.#emit("state", { state });
  }

  /** @param {string} type @param {object} detail */
  #emit(type, detail) {
    this.dispatchEvent(typeof CustomEvent === "function"
      ? new CustomEvent(type, { detail })
      : Object.assign(new Event(type), { detail }));
  }

  /** @param {LogLevel} level @param {string} message */
  #log(level, message) {
    try { this.#o.log(level, message); } catch { /* a broken logger must not break the socket */ }
  }
}

/** @param {RefreshingWebSocketOptions} o */
function resolveOptions(o) {
  const g = /** @type {any} */ (globalThis);
  /** @template T @param {T | undefined} value @param {() => T} fallback @returns {T} */
  const pick = (value, fallback) => (value === undefined ? fallback() : value);
  return {
    protocols: [...(o.protocols ?? [])],
    /** @type {WebSocketConstructor} */
    WebSocket: o.WebSocket ?? g.WebSocket,
    baseUrl: pick(o.baseUrl, () => g.location?.href ?? null),
    now: o.now ?? (() => Date.now()),
    setTimeout: o.setTimeout ?? ((/** @type {() => void} */ fn, /** @type {number} */ ms) => g.setTimeout(fn, ms)),
    clearTimeout: o.clearTimeout ?? ((/** @type {any} */ id) => g.clearTimeout(id)),
    random: o.random ?? Math.random,
    backoff: { baseMs: 1_000, maxMs: 30_000, ...o.backoff },
    minTokenMs: o.minTokenMs ?? 1_000,
    events: pick(o.events, () => (typeof g.addEventListener === "function" ? g : null)),
    log: o.log ?? ((/** @type {LogLevel} */ level, /** @type {string} */ line) => console[level](`[socket] ${line}`)),
    shouldReconnect: o.shouldReconnect ?? ((/** @type {number} */ code) => !FINAL_CODES.has(code)),
    renew: o.renew ?? true,
    tokenOrigins: o.tokenOrigins ?? [],
  };
}

/**
 * An absolute ws:// or wss:// url: relative urls resolve against `base`, http(s) becomes ws(s).
 * @param {string | URL} url @param {string | URL | null} base
 */
function socketUrl(url, base) {
  const resolved = new URL(url, base ?? undefined);
  if (resolved.protocol === "http:") resolved.protocol = "ws:";
  else if (resolved.protocol === "https:") resolved.protocol = "wss:";
  return resolved.href;
}

/** @param {number} code @param {string} reason */
function describe(code, reason) {
  return reason ? `${code} ${reason}` : String(code);
}
