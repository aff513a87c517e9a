// @ts-check
/**
 * refresh-manager.js: the browser side of starlette-refresh.
 *
 * Keeps a short-lived access token in memory and renews it through the HttpOnly refresh cookie:
 * proactively before expiry, at once after a sleep or a throttled timer, at most once at a time per
 * tab and across tabs (Web Locks + BroadcastChannel), retrying outages with backoff and logging out
 * only when the server says the session is over (400 invalid_grant or invalid_request; 401 from older servers).
 *
 * Dependency-free ES module, no build step. Every browser API is injectable, so it runs in Node too;
 * nothing touches window, document, navigator or localStorage at import time.
 * @module refresh-manager
 */

/** @typedef {"logged-out" | "logged-in" | "refreshing" | "reconnecting" | "failed"} ManagerState */
/** @typedef {"debug" | "info" | "warn" | "error"} LogLevel */
/** @typedef {"invalid_grant" | "no_session" | "logout" | "other-tab"} LogoutReason */
/** First retry ceiling (default 1000) and cap (default 30000). @typedef {{baseMs?: number, maxMs?: number}} BackoffOptions */
/**
 * The parts of `navigator.locks`, `BroadcastChannel` and `localStorage` the manager uses.
 * @typedef {{request(name: string, options: {ifAvailable?: boolean, signal?: AbortSignal},
 *   callback: (lock: unknown) => Promise<any>): Promise<any>}} LockManagerLike
 * @typedef {{postMessage(data: any): void, close(): void,
 *   addEventListener(type: string, listener: (event: any) => void): void,
 *   removeEventListener(type: string, listener: (event: any) => void): void}} ChannelLike
 * @typedef {{getItem(key: string): string | null, setItem(key: string, value: string): void,
 *   removeItem(key: string): void}} StorageLike
 * @typedef {EventTarget & {visibilityState?: string}} DocumentLike
 */

/**
 * Constructor options. Injectables default to the browser globals when present (looked up when the
 * manager is built, or at each call for the clock, timers and fetch), else to safe fallbacks.
 * @typedef {object} RefreshManagerOptions
 * @property {string} [refreshUrl]      default "/auth/refresh"
 * @property {string} [logoutUrl]       default "/auth/logout"
 * @property {number} [marginMs]        refresh this long before expiry; default computeMarginMs(lifetime).
 *   Never more than half the lifetime, so a short-lived token cannot cause a refresh loop.
 * @property {string} [lockName]        Web Lock name, BroadcastChannel name and storage key prefix
 *   (default "starlette-refresh")
 * @property {number} [lockTimeoutMs]   wait at most this long for the cross-tab lock, then refresh
 *   anyway: the server's grace window absorbs the overlap (default 10000)
 * @property {number} [refreshTimeoutMs]  abandon a refresh request (and its body) that has not
 *   answered after this long, and retry it with backoff (default 10000)
 * @property {number} [handoffWaitMs]   (added) once the lock is held, if storage says another tab
 *   refreshed meanwhile, wait this long for its token on the channel before asking the server (default 1000)
 * @property {BackoffOptions} [backoff] default {baseMs: 1000, maxMs: 30000}
 * @property {string[]} [tokenOrigins]  more origins (or absolute URLs) that may receive the access
 *   token; the page's origin and refreshUrl's (when absolute) always may, no other (default [])
 * @property {string | null} [origin]   the page's origin (default location.origin)
 * @property {number} [minIntervalMs]  the floor between two refreshes of this tab that a proactive
 *   timer, a wake event or a rejected request (401 invalid_token) starts; not refresh() or start()
 *   (default 1000; 1000 to 60000)
 * @property {number} [checkIntervalMs]  while the tab is visible, check this often whether the token
 *   is due, even without a wake event (a sleep may bring none) (default 5000; 1000 to 60000)
 * @property {() => number} [now]       wall clock in ms (default Date.now)
 * @property {() => number} [monotonic] monotonic clock in ms (default performance.now): deadlines
 *   count the time since a token came by this clock or the wall clock, whichever says more
 * @property {(fn: () => void, ms: number) => any} [setTimeout]
 * @property {(id: any) => void} [clearTimeout]
 * @property {(input: any, init?: any) => Promise<Response>} [fetch]  default globalThis.fetch
 * @property {StorageLike | null} [storage]  default localStorage; holds only {refreshedAt, id} and the
 *   session generation (a number bumped by every login and logout)
 * @property {LockManagerLike | null} [locks] default navigator.locks; null: in-tab single flight only
 * @property {((name: string) => ChannelLike) | null} [channel] default `name => new BroadcastChannel(name)`
 * @property {EventTarget | null} [events]   receives "focus", "online", "pageshow" (default window)
 * @property {DocumentLike | null} [document] visibilityState and "visibilitychange" (default document)
 * @property {() => number} [random]    jitter source in [0, 1) (default Math.random)
 * @property {(level: LogLevel, message: string) => void} [log]
 *   default `(level, message) => console[level](\`[refresh] ${message}\`)`
 */

/**
 * Event details (every event is a CustomEvent):
 * @typedef {{accessToken: string, expiresIn: number, expiresAt: number,
 *   source: "network" | "other-tab" | "login"}} RefreshedDetail  `refreshed`; expiresIn in s, expiresAt in ms.
 *   source "login": setSession() in this tab or another one (maybe another user); "other-tab": a refresh there
 * @typedef {{expiresInMs: number}} ExpiringDetail  `expiring`: the proactive timer fired
 * @typedef {{reason: LogoutReason}} LoggedOutDetail  `logged-out`
 * @typedef {{error: RefreshError, retryInMs: number | null}} ErrorDetail  `error`: a failed refresh, retried
 *   in retryInMs, or null for a final error (state "failed": the token is dropped and nothing is retried)
 * @typedef {{state: ManagerState}} StateDetail  `state`: every state change
 */

/**
 * @typedef {{kind: "token", accessToken: string, expiresIn: number}
 *   | {kind: "retry", error: RefreshError, label: string, retryAfterMs: number}
 *   | {kind: "failed", error: RefreshError, label: string}
 *   | {kind: "ended", reason: LogoutReason, code: string} | {kind: "skip"} | {kind: "stale"}} Outcome
 */

const WAKE_EVENTS = ["focus", "online", "pageshow"];
const MAX_TIMER_MS = 2_147_483_647; // longer setTimeout delays overflow and fire at once
let idCounter = 0;
const newId = () => `${++idCounter}-${Math.random().toString(36).slice(2, 10)}`;

/**
 * The default proactive-refresh margin: the larger of 60 s and a tenth of the lifetime, capped at
 * half the lifetime (a 900 s token refreshes 90 s early, a 20 s token 10 s early).
 * @param {number} lifetimeMs
 * @returns {number}
 */
export function computeMarginMs(lifetimeMs) {
  const lifetime = Math.max(0, Number(lifetimeMs) || 0);
  return Math.min(Math.max(60_000, lifetime / 10), lifetime / 2);
}

/**
 * Capped exponential backoff with EQUAL jitter: the ceiling is `min(maxMs, baseMs * 2 ** attempt)`
 * and the delay is uniform in [ceiling / 2, ceiling], so retries never bunch up near zero and never
 * exceed `maxMs`.
 * @param {number} attempt  0 for the first retry, 1 for the second, ...
 * @param {BackoffOptions} [options]
 * @param {() => number} [random]  a number in [0, 1]
 * @returns {number} whole milliseconds
 */
export function backoffDelayMs(attempt, { baseMs = 1_000, maxMs = 30_000 } = {}, random = Math.random) {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.floor(Number(attempt) || 0)));
  const r = Math.min(1, Math.max(0, Number(random()) || 0));
  return Math.round(ceiling / 2 + (r * ceiling) / 2);
}

/** A failed refresh: `retryable` is false for a final error (a 4xx but 408 and 429, a malformed answer). */
export class RefreshError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number | null, code?: string | null, retryable?: boolean, cause?: unknown}} [details]
   */
  constructor(message, { status = null, code = null, retryable = true, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "RefreshError";
    /** HTTP status, or null for a network error. @type {number | null} */
    this.status = status;
    /** The OAuth `error` code of the answer, when it had one. @type {string | null} */
    this.code = code;
    /** @type {boolean} */
    this.retryable = retryable;
  }
}

/**
 * Keeps the access token fresh. An EventTarget: listen for `refreshed`, `expiring`, `logged-out`,
 * `error` and `state` (see the *Detail typedefs).
 */
export class RefreshManager extends EventTarget {
  #o;
  /** @type {ManagerState} */ #state = "logged-out";
  /** @type {string | null} */ #token = null;
  /** A random nonce naming the refresh that produced #token (shared in storage). */ #tokenId = "";
  /** Wall and monotonic clock readings when the token came, and its lifetime left then (ms). */
  #at = [0, 0];
  #rem = 0;
  #lifetimeMs = 0;
  /** When (monotonic) a rejected request last asked for a refresh. */ #rejectedAt = -Infinity;
  #refreshCount = 0;
  /** @type {number | null} */ #lastRefreshAt = null;
  /** The one refresh running in this tab, shared by every caller. @type {Promise<boolean> | null} */
  #inflight = null;
  /** Bumped by stop() and every logout: a refresh started in an older epoch gives up quietly. */
  #epoch = 0;
  /** The browser's session generation, bumped by every login and logout and carried in storage and in
   * every message: a message from before a login or logout this tab knows of is stale. */
  #gen = 0;
  #started = false;
  #stopped = false;
  /** @type {(() => void) | null} */ #cancelTimer = null;
  /** Cancellers of every pending timer; stop() runs them all. @type {Set<() => void>} */
  #pending = new Set();
  /** @type {(() => void)[]} */ #unlisten = [];
  /** @type {ChannelLike | null} */ #channel = null;
  /** Ends the backoff sleep of a failing refresh early. @type {(() => void) | null} */
  #wakeRetry = null;
  /** Aborts the refresh request out now, if any. @type {(() => void) | null} */
  #abortPost = null;
  /** @type {Set<() => void>} */ #handoffWaiters = new Set();
  #holdingLock = false;
  /** Events and log lines raised while this tab holds the lock, run once it is released. @type {(() => void)[]} */
  #deferred = [];

  /** @param {RefreshManagerOptions} [options] */
  constructor(options = {}) {
    super();
    this.#o = resolveOptions(options);
  }

  /** @returns {ManagerState} */
  get state() { return this.#state; }
  /** The access token (memory only), or null. @returns {string | null} */
  get accessToken() { return this.#token; }
  /**
   * When the token runs out (ms), or null: local receipt time + expires_in on the wall clock as it
   * reads now, so a wall clock set back since moves it back too. @returns {number | null}
   */
  get expiresAt() {
    if (this.#token === null) return null;
    const [wall, mono] = this.#at;
    // how far the wall clock was set back since the token came; the clocks' sub-second drift is not
    const setBack = this.#o.monotonic() - mono - (this.#o.now() - wall);
    return wall + this.#rem - (setBack > 1000 ? setBack : 0);
  }
  /** Successful refreshes this tab performed or received from other tabs. @returns {number} */
  get refreshCount() { return this.#refreshCount; }
  /** @returns {number | null} */
  get lastRefreshAt() { return this.#lastRefreshAt; }

  /**
   * Installs the wake-up listeners and the channel, then restores the session with one refresh
   * through the cookie (none if setSession() already gave a fresh token). Resolves at the first
   * definite outcome: true when logged in, false on 400/401, on a final error or when stop() or a
   * logout interrupts; outages are retried in the background meanwhile.
   * @returns {Promise<boolean>}
   */
  async start() {
    this.#stopped = false;
    if (!this.#started) {
      this.#started = true;
      this.#listen();
      this.#openChannel();
    }
    const gen = this.#gen;
    this.#syncGen();
    // a login or logout elsewhere while stop() kept this tab deaf: its token is stale, restore instead
    if (this.#gen > gen) this.#token = null;
    if (this.#token !== null && !this.#withinMargin()) {
      this.#schedule();
      return true;
    }
    return this.refresh();
  }

  /**
   * Adopts a login response: logged in, refresh scheduled, token handed to the other tabs.
   * @param {{access_token: string, expires_in: number}} answer
   */
  setSession(answer) {
    const token = answer?.access_token;
    const expiresIn = Number(answer?.expires_in);
    if (typeof token !== "string" || !token || !(expiresIn > 0 && expiresIn < Infinity)) {
      throw new TypeError("setSession needs {access_token, expires_in} from a login response");
    }
    this.#supersede(); // a refresh still out answers for the old session: its answer is dropped
    this.#apply(token, expiresIn, expiresIn * 1000, newId());
    this.#openChannel();
    this.#syncGen(1);
    this.#shareToken(true);
    this.#setState("logged-in");
    this.#schedule();
    this.#log("info", `Session started (expires in ${expiresIn}s)`);
    this.#emit("refreshed", { accessToken: token, expiresIn, expiresAt: this.expiresAt, source: "login" });
  }

  /**
   * Gets a new access token. Single flight: concurrent callers share one promise; across tabs one
   * Web Lock (with timeout) serializes the network calls, and a tab that receives the new token over
   * the channel meanwhile skips its own. Resolves true when logged in, false when the session is over
   * (or stop()/logout interrupted); retryable failures are retried inside. A login meanwhile
   * (setSession() here or in another tab) supersedes it: its answer, whatever it is, is dropped.
   * @returns {Promise<boolean>}
   */
  refresh() {
    if (this.#inflight) return this.#inflight;
    if (this.#stopped) return Promise.resolve(false);
    this.#syncGen();
    const gen = this.#gen; // a login meanwhile supersedes this refresh: then it answers whether logged in
    const flight = this.#refreshFlow(this.#token, this.#epoch).then((ok) => ok || (this.#gen > gen && this.#token !== null));
    this.#inflight = flight;
    if (this.#state !== "reconnecting") this.#setState("refreshing");
    return flight;
  }

  /**
   * `fetch` with the bearer token. Waits for a running refresh (unless the token still works while
   * an outage is retried), refreshes first when the token has expired, and on a 401 with
   * `error="invalid_token"` refreshes once and replays the request. `init.signal` also aborts the
   * waiting. Bodies must be replayable (string, FormData, Blob, URLSearchParams, a Request), not streams.
   * One call waits for refreshes at most lockTimeoutMs + handoffWaitMs + refreshTimeoutMs + backoff.maxMs
   * in all (51 s by default), then sends the request with what it has.
   * @param {RequestInfo | URL} input
   * @param {RequestInit} [init]
   * @returns {Promise<Response>}
   */
  async fetch(input, init) {
    init ??= {};
    if (!this.#mayCarryToken(input)) return this.#send(input, init, null); // another origin: no token, no refresh
    const signal = init.signal ?? (isRequest(input) ? input.signal : undefined);
    const o = this.#o;
    const deadline = o.monotonic() + o.lockTimeoutMs + o.handoffWaitMs + o.refreshTimeoutMs + o.backoff.maxMs;
    /** @param {Promise<boolean>} flight */
    const wait = (flight) => this.#until(flight, deadline, signal);
    if (this.#inflight && (this.#state === "refreshing" || !this.#usable())) {
      await wait(this.#inflight);
    } else if (this.#token !== null && !this.#usable()) {
      await wait(this.refresh());
    }
    const token = this.#token;
    const response = await this.#send(input, init, token);
    if (token === null || !isInvalidTokenAnswer(response)) return response;
    // a refresh for a rejected request comes at most once per minIntervalMs (a refresh out is shared)
    const floor = this.#rejectedAt + o.minIntervalMs - o.monotonic();
    if (floor > 0 && !this.#inflight && this.#token === token) await wait(this.#pause(floor, () => {}).then(() => true));
    let renewed = this.#token !== token && this.#usable();
    if (!renewed) {
      // logged out (or a final error) since it was sent: nothing to renew, and no refresh would wake it
      if (this.#token === null && !this.#inflight) return response;
      if (!this.#inflight) this.#rejectedAt = o.monotonic();
      renewed = await wait(this.refresh());
    }
    if (!renewed || this.#token === null || this.#token === token) return response;
    await response.body?.cancel().catch(() => {});
    this.#log("info", "Access token was rejected; refreshed it and retrying the request");
    return this.#send(input, init, this.#token);
  }

  /**
   * Logs out: forgets the token, tells the other tabs, emits `logged-out` {reason: "logout"}, then
   * POSTs logoutUrl (a failed request is logged; the local logout stands). The request gets
   * refreshTimeoutMs, as a refresh does, so the returned promise always settles.
   * @returns {Promise<void>}
   */
  async logout() {
    const token = this.#token;
    this.#openChannel();
    this.#syncGen(1);
    this.#share({ type: "logout" });
    this.#endSession("logout", "Logged out");
    const fetchFn = this.#o.fetch;
    const controller = new AbortController();
    const ms = this.#o.refreshTimeoutMs;
    let failure = "network error";
    let clear = () => {};
    // the request and its body get refreshTimeoutMs, as a refresh's do, so that logout() always ends
    /** @type {Promise<never>} */
    const timeout = new Promise((_, reject) => {
      const expire = () => { failure = `timed out after ${ms / 1000}s`; reject(); controller.abort(); };
      clear = this.#later(ms, expire, expire);
    });
    try {
      const headers = token && this.#mayCarryToken(this.#o.logoutUrl) ? { Authorization: `Bearer ${token}` } : undefined;
      const response = await Promise.race([timeout, fetchFn(this.#o.logoutUrl, {
        method: "POST", credentials: "same-origin", headers, signal: controller.signal,
      })]);
      if (response.ok) return;
      failure = label(response.status, await Promise.race([timeout, errorCode(response)]));
    } catch { /* network error, or timed out */ } finally {
      clear();
    }
    this.#log("warn", `Logout request failed (${failure}); the server keeps the session until it expires`);
  }

  /** Clears every timer and listener and closes the channel. start() may be called again later. */
  stop() {
    this.#stopped = true;
    this.#started = false;
    this.#epoch++;
    this.#inflight = null;
    this.#cancelTimer = null;
    for (const cancel of [...this.#pending]) cancel();
    for (const off of this.#unlisten.splice(0)) off();
    this.#channel?.removeEventListener("message", this.#onMessage);
    try { this.#channel?.close(); } catch { /* already closed */ }
    this.#channel = null;
  }

  // --- the refresh itself ---------------------------------------------------------------------

  /**
   * Attempts until a definite outcome, sleeping with backoff between retryable failures.
   * @param {string | null} staleToken  the token this refresh is meant to replace
   * @param {number} epoch
   * @returns {Promise<boolean>}
   */
  async #refreshFlow(staleToken, epoch) {
    // Which shared refresh was the latest when we began: a different one found later means another
    // tab refreshed meanwhile. Compared by id, not by time: tabs' clocks need not agree.
    const seenId = this.#readShared()?.id ?? null;
    let outcome = await this.#attempt(staleToken, seenId, epoch);
    for (let attempt = 0; outcome.kind === "retry"; attempt++) {
      if (epoch !== this.#epoch) return false;
      const { backoff, random } = this.#o; // Retry-After is honoured up to the backoff cap
      const delay = Math.min(backoff.maxMs, Math.max(backoffDelayMs(attempt, backoff, random), outcome.retryAfterMs));
      this.#setState("reconnecting");
      this.#log("warn", `Refresh failed (${outcome.label}); retrying in ${(delay / 1000).toFixed(1)}s`);
      this.#emit("error", { error: outcome.error, retryInMs: delay });
      if (epoch !== this.#epoch) return false;
      await this.#pause(delay, (done) => { this.#wakeRetry = done; });
      this.#wakeRetry = null;
      if (epoch !== this.#epoch) return false;
      outcome = await this.#attempt(staleToken, seenId, epoch);
    }
    if (epoch !== this.#epoch) return false;
    this.#inflight = null; // before any event, so that a listener calling refresh() starts a new one
    if (outcome.kind === "token") {
      const { accessToken, expiresIn } = outcome;
      this.#setState("logged-in");
      this.#schedule();
      this.#log("info", `Token refreshed successfully (expires in ${expiresIn}s)`);
      this.#emit("refreshed", { accessToken, expiresIn, expiresAt: this.expiresAt, source: "network" });
      return true;
    }
    if (outcome.kind === "skip") { // the token came from another tab or a login, already announced
      this.#setState("logged-in");
      return true;
    }
    if (outcome.kind === "failed") {
      this.#forget("failed");
      this.#log("error", `Refresh failed for good (${outcome.label}); not retrying`);
      this.#emit("error", { error: outcome.error, retryInMs: null });
    }
    if (outcome.kind === "ended") {
      const wasLoggedIn = this.#token !== null;
      if (wasLoggedIn) {
        this.#syncGen(1);
        this.#share({ type: "logout" });
      }
      const { reason, code } = outcome;
      this.#endSession(reason, wasLoggedIn ? `Session ended (${code}); logged out` : `No session to restore (${code})`);
    }
    return false;
  }

  /**
   * One attempt, holding the cross-tab lock when there is one (waiting at most lockTimeoutMs).
   * @param {string | null} staleToken @param {string | null} seenId @param {number} epoch
   * @returns {Promise<Outcome>}
   */
  async #attempt(staleToken, seenId, epoch) {
    if (this.#hasNewToken(staleToken)) return { kind: "skip" };
    const locks = this.#o.locks;
    if (!locks) return this.#exchange(staleToken, seenId, epoch);
    const controller = new AbortController();
    let granted = false;
    let timedOut = false;
    let cancelTimeout = () => {};
    try {
      const quick = await this.#withLock(locks, { ifAvailable: true }, () => {
        granted = true;
        return this.#exchange(staleToken, seenId, epoch);
      });
      if (quick) return quick.result;
      this.#log("info", "Waiting for another tab's refresh...");
      cancelTimeout = this.#later(this.#o.lockTimeoutMs, () => {
        timedOut = true;
        controller.abort();
      }, () => controller.abort());
      const waited = await this.#withLock(locks, { signal: controller.signal }, () => {
        granted = true;
        cancelTimeout();
        return this.#exchange(staleToken, seenId, epoch);
      });
      return waited ? waited.result : { kind: "stale" };
    } catch (error) {
      if (granted) throw error;
      if (epoch !== this.#epoch) return { kind: "stale" };
      this.#log("warn", timedOut
        ? `Gave up waiting for another tab after ${Math.round(this.#o.lockTimeoutMs / 1000)}s; refreshing anyway`
        : `Cross-tab lock unavailable (${error instanceof Error ? error.name : error}); refreshing without it`);
      return this.#exchange(staleToken, seenId, epoch);
    } finally {
      cancelTimeout();
    }
  }

  /**
   * Runs `work` holding the lock (null when `ifAvailable` found it taken). Events and log lines
   * raised meanwhile run only after the lock has been released.
   * @template T
   * @param {LockManagerLike} locks @param {{ifAvailable?: boolean, signal?: AbortSignal}} options
   * @param {() => Promise<T>} work
   * @returns {Promise<{result: T} | null>}
   */
  async #withLock(locks, options, work) {
    try {
      return await locks.request(this.#o.lockName, options, async (lock) => {
        if (!lock) return null;
        this.#holdingLock = true;
        return { result: await work() };
      });
    } finally {
      this.#holdingLock = false;
      for (const run of this.#deferred.splice(0)) run();
    }
  }

  /**
   * Re-reads the shared state, then asks the server unless another tab's token made that needless.
   * Applies and shares a new token but raises no events. Never throws.
   * @param {string | null} staleToken @param {string | null} seenId  the shared refresh id at the start
   * @param {number} epoch
   * @returns {Promise<Outcome>}
   */
  async #exchange(staleToken, seenId, epoch) {
    if (epoch !== this.#epoch) return { kind: "stale" };
    if (this.#hasNewToken(staleToken)) return { kind: "skip" };
    const shared = this.#readShared();
    if (shared && shared.id !== seenId && shared.id !== this.#tokenId && this.#channel) {
      // another tab refreshed while we waited: its token is on its way over the channel
      await this.#pause(this.#o.handoffWaitMs, (done) => this.#handoffWaiters.add(done));
      if (this.#hasNewToken(staleToken)) return { kind: "skip" };
      if (epoch !== this.#epoch) return { kind: "stale" };
    }
    this.#syncGen();
    const gen = this.#gen;
    const outcome = await this.#post();
    // a login or logout in another tab meanwhile supersedes this refresh even before its message
    // comes (storage already says so): the answer is for the session before it, and changes nothing
    this.#syncGen();
    if (epoch !== this.#epoch || this.#gen > gen) return { kind: "stale" };
    if (outcome.kind !== "token") return this.#hasNewToken(staleToken) ? { kind: "skip" } : outcome;
    this.#apply(outcome.accessToken, outcome.expiresIn, outcome.expiresIn * 1000, newId());
    this.#refreshCount++;
    this.#lastRefreshAt = this.#o.now();
    this.#shareToken(false);
    return outcome;
  }

  /**
   * POSTs refreshUrl with the cookie and classifies the answer. The request and its body get
   * refreshTimeoutMs together: then the request is aborted and abandoned (a network error), even
   * when the fetch ignores its signal, so a hung request never holds the flight or the lock.
   * @returns {Promise<Outcome>}
   */
  async #post() {
    const fetchFn = this.#o.fetch;
    const controller = new AbortController();
    const ms = this.#o.refreshTimeoutMs;
    let clear = () => {};
    /** @type {Promise<never>} */
    const timeout = new Promise((_, reject) => {
      // reject first: the abort rejects the fetch too, and the first rejection names the cause
      const expire = () => { reject(new RefreshError(`timed out after ${ms / 1000}s`)); controller.abort(); };
      clear = this.#later(ms, expire, expire);
      // a logout or login supersedes this refresh: drop the request now, so that the lock (and the
      // events held back while it is held) is not kept for up to refreshTimeoutMs, and a late answer
      // for the old session cannot set its cookie over the new one's
      this.#abortPost = () => { reject(new RefreshError("superseded")); controller.abort(); };
    });
    let response;
    /** @type {any} */
    let body;
    try {
      response = await Promise.race([timeout, fetchFn(this.#o.refreshUrl, {
        method: "POST", credentials: "same-origin", headers: { Accept: "application/json" }, signal: controller.signal,
      })]);
      body = await Promise.race([timeout, response.json().catch(() => null)]);
    } catch (cause) {
      const text = cause instanceof RefreshError ? cause.message : "network error";
      const error = new RefreshError(text, { cause });
      return { kind: "retry", error, label: text, retryAfterMs: 0 };
    } finally {
      clear();
      this.#abortPost = null;
    }
    const status = response.status;
    const code = typeof body?.error === "string" ? body.error : null;
    if (response.ok) {
      const accessToken = body?.access_token;
      const expiresIn = Number(body?.expires_in);
      if (typeof accessToken === "string" && accessToken && Number.isFinite(expiresIn) && expiresIn > 0) {
        return { kind: "token", accessToken, expiresIn };
      }
      const error = new RefreshError("the refresh answer had no usable access_token/expires_in", { status, retryable: false });
      return { kind: "failed", error, label: `${status} malformed answer` };
    }
    if (status === 400 || status === 401) {
      // invalid_grant is 400 (RFC 6749 section 5.2); servers before it answered 401
      const reason = code === "invalid_grant" || status === 401 ? "invalid_grant" : "no_session";
      return { kind: "ended", reason, code: code ?? (status === 401 ? "invalid_grant" : "invalid_request") };
    }
    const text = label(status, code);
    const retryable = status > 499 || status < 400 || status === 408 || status === 429;
    const error = new RefreshError(`refresh answered ${text}`, { status, code, retryable });
    if (!retryable) return { kind: "failed", error, label: text };
    return { kind: "retry", error, label: text, retryAfterMs: retryAfterMs(response.headers.get("Retry-After"), this.#o.now()) };
  }

  // --- session state ----------------------------------------------------------------------------

  /** @param {string} token @param {number} expiresIn @param {number} remainingMs @param {string} id */
  #apply(token, expiresIn, remainingMs, id) {
    this.#token = token;
    this.#tokenId = id;
    this.#at = [this.#o.now(), this.#o.monotonic()];
    this.#rem = remainingMs;
    this.#lifetimeMs = expiresIn * 1000;
  }

  /** @param {LogoutReason} reason @param {string} message */
  #endSession(reason, message) {
    this.#forget("logged-out");
    this.#log(reason === "logout" || reason === "other-tab" ? "info" : "warn", message);
    this.#emit("logged-out", { reason });
  }

  /** Drops the token and ends any refresh and timer. @param {ManagerState} state */
  #forget(state) {
    this.#supersede();
    this.#clearTimer();
    this.#token = null;
    this.#tokenId = "";
    this.#lifetimeMs = 0;
    this.#setState(state);
  }

  /** Ends any refresh in flight here: whatever it gets is dropped. */
  #supersede() {
    this.#epoch++;
    this.#inflight = null;
    this.#wakeRetry?.();
    this.#abortPost?.();
  }

  /** A token other than `staleToken` that needs no refresh yet. @param {string | null} staleToken */
  #hasNewToken(staleToken) {
    return this.#token !== null && this.#token !== staleToken && !this.#withinMargin();
  }

  #usable() {
    return this.#token !== null && this.#left() > 0;
  }

  /**
   * The token's lifetime left (ms): as received, less the time since, by whichever clock says more
   * time has passed. The monotonic one ignores a wall clock set back; the wall one counts a sleep
   * that a monotonic clock skips (some systems). A wall clock set forward only refreshes early.
   */
  #left() {
    const [wall, mono] = this.#at;
    return this.#rem - Math.max(this.#o.now() - wall, this.#o.monotonic() - mono);
  }

  #withinMargin() {
    return this.#token === null || this.#left() <= this.#margin();
  }

  #margin() {
    const given = this.#o.marginMs;
    return given == null ? computeMarginMs(this.#lifetimeMs) : Math.min(given, this.#lifetimeMs / 2);
  }

  /** @param {ManagerState} state */
  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    this.#emit("state", { state });
  }

  // --- timers and wake-ups ----------------------------------------------------------------------

  /** @param {number} [floor]  how long after the token to wait at least: minIntervalMs, or 0 for a periodic check's next */
  #schedule(floor = this.#o.minIntervalMs) {
    this.#clearTimer();
    if (this.#stopped || this.#token === null) return;
    const left = this.#left();
    const delay = left - this.#margin();
    floor -= this.#rem - left; // the token's age
    // while the tab is visible, look again every checkIntervalMs: a sleep may bring no wake event
    const check = this.#o.document?.visibilityState === "hidden" ? delay : this.#o.checkIntervalMs;
    this.#cancelTimer = this.#later(Math.max(floor, Math.min(delay, check) || 0), () => {
      this.#cancelTimer = null;
      const left = this.#left();
      if (left - this.#margin() > 0.5) return this.#schedule(0); // a periodic check: not due yet
      this.#log("info", left > 0
        ? `Token expiring in ${Math.round(left / 1000)}s, refreshing proactively...`
        : "Token expired, refreshing now");
      this.#emit("expiring", { expiresInMs: left });
      void this.refresh();
    });
  }

  #clearTimer() {
    this.#cancelTimer?.();
    this.#cancelTimer = null;
  }

  /**
   * A timer that stop() cancels (then running `onStop`). Returns a function that clears it.
   * @param {number} ms @param {() => void} fn @param {() => void} [onStop]
   */
  #later(ms, fn, onStop) {
    const { setTimeout, clearTimeout } = this.#o; // called detached: browsers refuse a foreign `this`
    const stop = () => { clear(); onStop?.(); };
    const clear = () => { clearTimeout(id); this.#pending.delete(stop); };
    const id = setTimeout(() => { this.#pending.delete(stop); fn(); }, Math.min(MAX_TIMER_MS, Math.max(0, ms)));
    this.#pending.add(stop);
    return clear;
  }

  /**
   * Awaits a refresh until `deadline` (then false, with a warning); `signal` aborts the wait.
   * @param {Promise<boolean>} flight @param {number} deadline @param {AbortSignal | null | undefined} signal
   * @returns {Promise<boolean>}
   */
  #until(flight, deadline, signal) {
    let clear = () => {};
    /** @type {Promise<boolean>} */
    const late = new Promise((resolve) => {
      const give = () => { this.#log("warn", "Gave up waiting for a refresh; sending the request as it is"); resolve(false); };
      const ms = deadline - this.#o.monotonic();
      if (ms > 0) clear = this.#later(ms, give, () => resolve(false));
      else resolve(false);
    });
    return abortable(Promise.race([flight, late]), signal).finally(clear);
  }

  /**
   * Waits `ms`; `register` receives a function that ends the wait early. stop() ends it too.
   * @param {number} ms @param {(done: () => void) => void} register
   * @returns {Promise<void>}
   */
  #pause(ms, register) {
    return new Promise((resolve) => {
      const done = () => { clear(); this.#handoffWaiters.delete(done); resolve(); };
      const clear = this.#later(ms, done, done);
      register(done);
    });
  }

  #listen() {
    const { events, document } = this.#o;
    /** @param {EventTarget} target @param {string} type @param {() => void} handler */
    const on = (target, type, handler) => {
      target.addEventListener(type, handler);
      this.#unlisten.push(() => target.removeEventListener(type, handler));
    };
    for (const type of events ? WAKE_EVENTS : []) on(/** @type {EventTarget} */ (events), type, () => this.#wake(type));
    if (document) {
      on(document, "visibilitychange", () => document.visibilityState !== "hidden" && this.#wake("visibilitychange"));
    }
  }

  /** Timers may have slept with the machine or been throttled: re-check against the clock. @param {string} kind */
  #wake(kind) {
    if (this.#stopped) return;
    if (kind === "online") this.#wakeRetry?.(); // retry a failing refresh now, not after its backoff
    if (this.#token === null || this.#inflight) return;
    const left = this.#left();
    const inSeconds = `token expires in ${Math.round(left / 1000)}s`;
    if (left > this.#margin() || this.#rem - left < this.#o.minIntervalMs) { // not due, or the token is too new
      this.#log("debug", `Woke up (${kind}): ${inSeconds}`);
      this.#schedule(); // re-arm: the old timer may have slept
      return;
    }
    this.#log("info", `Woke up (${kind}): ${left > 0 ? inSeconds : "token expired"}, refreshing now`);
    void this.refresh();
  }

  // --- other tabs -------------------------------------------------------------------------------

  #openChannel() {
    if (this.#channel || !this.#o.channel || this.#stopped) return;
    try {
      const channel = this.#o.channel(this.#o.lockName);
      channel.addEventListener("message", this.#onMessage);
      this.#channel = channel;
    } catch { /* no cross-tab messages, as without BroadcastChannel */ }
  }

  /** Hands the current token to the other tabs. @param {boolean} login */
  #shareToken(login) {
    const [accessToken, expiresIn, id] = [this.#token, this.#lifetimeMs / 1000, this.#tokenId];
    // The remaining lifetime, not a timestamp: the receiving tab anchors it to its own clock.
    const remainingMs = this.#left();
    this.#share({ type: "token", accessToken, expiresIn, remainingMs, id, login });
  }

  /**
   * Storage gets only {refreshedAt, id} (id: a random nonce naming the refresh, not
   * derived from the token); the token itself travels over the channel only.
   * @param {any} message
   */
  #share(message) {
    const { storage, lockName } = this.#o;
    try {
      if (message.type !== "token") storage?.removeItem(`${lockName}:state`);
      else {
        const state = { refreshedAt: this.#o.now(), id: message.id };
        storage?.setItem(`${lockName}:state`, JSON.stringify(state));
      }
    } catch { /* storage full or denied: the channel still works */ }
    try { this.#channel?.postMessage({ ...message, gen: this.#gen }); } catch { /* channel closed */ }
  }

  /** Catches up with the shared generation, then moves it on by `bump` (a login or logout). @param {number} [bump] */
  #syncGen(bump = 0) {
    const { storage, lockName } = this.#o;
    try { this.#gen = Math.max(this.#gen, Number(storage?.getItem(`${lockName}:gen`)) || 0); } catch { /* no storage */ }
    this.#gen += bump;
    try { if (bump) storage?.setItem(`${lockName}:gen`, String(this.#gen)); } catch { /* the messages carry it too */ }
  }

  /** @returns {{refreshedAt: number, id: string} | null} */
  #readShared() {
    try {
      const value = JSON.parse(this.#o.storage?.getItem(`${this.#o.lockName}:state`) ?? "null");
      return typeof value?.refreshedAt === "number" ? value : null;
    } catch {
      return null;
    }
  }

  /** @param {MessageEvent} event */
  #onMessage = (event) => {
    const message = event?.data;
    const gen = Number(message?.gen) || 0;
    if (gen < this.#gen) return; // sent before a login or logout this tab has seen: stale
    this.#gen = gen;
    if (message?.type === "token") this.#receiveToken(message);
    else if (message?.type === "logout" && this.#state !== "logged-out") { // "failed" too: it stays out
      this.#endSession("other-tab", "Logged out in another tab");
    }
  };

  /** @param {{accessToken: unknown, expiresIn: unknown, remainingMs: unknown, id: unknown, login: unknown}} message */
  #receiveToken({ accessToken, expiresIn, remainingMs, id, login }) {
    if (typeof accessToken !== "string" || typeof expiresIn !== "number" || typeof remainingMs !== "number") return;
    if (!(expiresIn > 0 && expiresIn < Infinity && Number.isFinite(remainingMs))) return;
    if (accessToken === this.#token) return;
    if (!login && this.#state === "logged-out") return; // a logged-out tab wakes only on a login
    // a refresh older than ours is ignored; a login (maybe of another user) always wins
    if (!login && this.#token !== null && remainingMs < this.#left()) return;
    if (login) this.#supersede();
    this.#apply(accessToken, expiresIn, remainingMs, String(id));
    if (!login) {
      this.#refreshCount++;
      this.#lastRefreshAt = this.#o.now();
    }
    for (const done of [...this.#handoffWaiters]) done();
    this.#wakeRetry?.();
    this.#setState("logged-in");
    this.#schedule();
    this.#log("info", login ? "Another tab logged in" : "Another tab refreshed the token");
    this.#emit("refreshed", { accessToken, expiresIn, expiresAt: this.expiresAt, source: login ? "login" : "other-tab" });
  }

  // --- plumbing ---------------------------------------------------------------------------------

  /** Whether `input` goes to the page's origin, refreshUrl's or one in tokenOrigins. @param {RequestInfo | URL} input */
  #mayCarryToken(input) {
    const url = isRequest(input) ? input.url : String(input);
    try {
      return this.#o.tokenOrigins.includes(new URL(url, this.#o.origin ?? undefined).origin);
    } catch {
      return true; // a relative url and no page origin to resolve it against: the page's own
    }
  }

  /** @param {RequestInfo | URL} input @param {RequestInit} init @param {string | null} token */
  #send(input, init, token) {
    const request = isRequest(input) ? input.clone() : input; // the original stays replayable
    const headers = new Headers(init.headers ?? (isRequest(input) ? input.headers : undefined));
    if (token !== null) headers.set("Authorization", `Bearer ${token}`);
    const fetchFn = this.#o.fetch;
    return fetchFn(request, { ...init, headers });
  }

  /** @param {string} type @param {object} detail */
  #emit(type, detail) {
    if (this.#holdingLock) return void this.#deferred.push(() => this.#emit(type, detail));
    this.dispatchEvent(typeof CustomEvent === "function"
      ? new CustomEvent(type, { detail })
      : Object.assign(new Event(type), { detail }));
  }

  /** @param {LogLevel} level @param {string} message */
  #log(level, message) {
    if (this.#holdingLock) return void this.#deferred.push(() => this.#log(level, message));
    try { this.#o.log(level, message); } catch { /* a broken logger must not break refreshing */ }
  }
}

/** @param {RefreshManagerOptions} o */
function resolveOptions(o) {
  const g = /** @type {any} */ (globalThis);
  /** @template T @param {T | undefined} value @param {() => T} fallback @returns {T} */
  const pick = (value, fallback) => (value === undefined ? fallback() : value);
  const refreshUrl = o.refreshUrl ?? "/auth/refresh";
  const { baseMs = 1_000, maxMs = 30_000 } = o.backoff ?? {};
  const origin = pick(o.origin, () => g.location?.origin ?? null);
  return {
    refreshUrl,
    origin,
    tokenOrigins: originsOf(o.tokenOrigins ?? [], "tokenOrigins", [origin, refreshUrl]),
    logoutUrl: o.logoutUrl ?? "/auth/logout",
    marginMs: o.marginMs == null ? o.marginMs : bounded("marginMs", o.marginMs, 0, 86_400_000),
    lockName: o.lockName ?? "starlette-refresh",
    lockTimeoutMs: bounded("lockTimeoutMs", o.lockTimeoutMs ?? 10_000, 100, 120_000),
    refreshTimeoutMs: bounded("refreshTimeoutMs", o.refreshTimeoutMs ?? 10_000, 1_000, 120_000),
    handoffWaitMs: bounded("handoffWaitMs", o.handoffWaitMs ?? 1_000, 0, 10_000),
    minIntervalMs: bounded("minIntervalMs", o.minIntervalMs ?? 1_000, 1_000, 60_000),
    checkIntervalMs: bounded("checkIntervalMs", o.checkIntervalMs ?? 5_000, 1_000, 60_000),
    backoff: { baseMs: bounded("backoff.baseMs", baseMs, 100, 60_000), maxMs: bounded("backoff.maxMs", maxMs, baseMs, 300_000) },
    now: o.now ?? (() => Date.now()),
    monotonic: o.monotonic ?? (() => g.performance?.now() ?? Date.now()),
    setTimeout: o.setTimeout ?? ((/** @type {() => void} */ fn, /** @type {number} */ ms) => g.setTimeout(fn, ms)),
    clearTimeout: o.clearTimeout ?? ((/** @type {any} */ id) => g.clearTimeout(id)),
    fetch: o.fetch ?? ((/** @type {any} */ input, /** @type {any} */ init) => g.fetch(input, init)),
    storage: pick(o.storage, () => { try { return g.localStorage ?? null; } catch { return null; } }),
    locks: pick(o.locks, () => g.navigator?.locks ?? null),
    channel: pick(o.channel, () => (typeof g.BroadcastChannel === "function"
      ? (/** @type {string} */ name) => new g.BroadcastChannel(name) : null)),
    events: pick(o.events, () => (typeof g.addEventListener === "function" ? g : null)),
    document: pick(o.document, () => g.document ?? null),
    random: o.random ?? Math.random,
    log: o.log ?? ((/** @type {LogLevel} */ level, /** @type {string} */ line) => console[level](`[refresh] ${line}`)),
  };
}

/**
 * `value`, when it is a finite number in [min, max]; else a TypeError or RangeError naming the option.
 * @param {string} name @param {unknown} value @param {number} min @param {number} max @returns {number}
 */
function bounded(name, value, min, max) {
  if (typeof value !== "number" || !Number.isFinite(value)) throw new TypeError(`${name} must be a finite number of ms, not ${value}`);
  if (value < min || value > max) throw new RangeError(`${name} must be between ${min} and ${max} ms, not ${value}`);
  return value;
}

/**
 * The origins of `urls` (absolute URLs or origins), plus those of `more` that are absolute.
 * @param {unknown} urls @param {string} name  the option, for the error @param {unknown[]} [more]
 * @returns {string[]}
 */
export function originsOf(urls, name, more = []) {
  if (!Array.isArray(urls)) throw new TypeError(`${name} must be an array of origins`);
  const origins = urls.map((url) => {
    try { return new URL(String(url)).origin; } catch { throw new TypeError(`${name}: ${url} is not an absolute URL or origin`); }
  });
  for (const url of more) {
    try { origins.push(new URL(String(url)).origin); } catch { /* relative, or none */ }
  }
  return origins;
}

/** @param {unknown} input @returns {input is Request} */
function isRequest(input) {
  return typeof Request === "function" && input instanceof Request;
}

/** RFC 6750: a 401 whose challenge says the token is bad or expired. @param {Response} response */
function isInvalidTokenAnswer(response) {
  const challenge = response.headers.get("WWW-Authenticate") ?? "";
  return response.status === 401 && /\berror\s*=\s*"?invalid_token\b/i.test(challenge);
}

/** Retry-After (delta-seconds or an HTTP date) in ms; 0 when absent. @param {string | null} value @param {number} now */
function retryAfterMs(value, now) {
  if (!value) return 0;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? 0 : Math.max(0, at - now);
}

/** @param {Response} response @returns {Promise<string | null>} */
async function errorCode(response) {
  const body = await response.json().catch(() => null);
  return typeof body?.error === "string" ? body.error : null;
}

/** @param {number} status @param {string | null} code */
function label(status, code) {
  return code ? `${status} ${code}` : `${status}`;
}

/**
 * Awaits `promise`, rejecting early with the signal's reason if it aborts.
 * @template T @param {Promise<T>} promise @param {AbortSignal | null | undefined} signal @returns {Promise<T>}
 */
function abortable(promise, signal) {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
