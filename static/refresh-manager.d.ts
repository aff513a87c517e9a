/**
 * The default proactive-refresh margin: the larger of 60 s and a tenth of the lifetime, capped at
 * half the lifetime (a 900 s token refreshes 90 s early, a 20 s token 10 s early).
 * @param {number} lifetimeMs
 * @returns {number}
 */
export function computeMarginMs(lifetimeMs: number): number;
/**
 * Capped exponential backoff with EQUAL jitter: the ceiling is `min(maxMs, baseMs * 2 ** attempt)`
 * and the delay is uniform in [ceiling / 2, ceiling], so retries never bunch up near zero and never
 * exceed `maxMs`.
 * @param {number} attempt  0 for the first retry, 1 for the second, ...
 * @param {BackoffOptions} [options]
 * @param {() => number} [random]  a number in [0, 1]
 * @returns {number} whole milliseconds
 */
export function backoffDelayMs(attempt: number, { baseMs, maxMs }?: BackoffOptions, random?: () => number): number;
/**
 * The origins of `urls` (absolute URLs or origins), plus those of `more` that are absolute.
 * @param {unknown} urls @param {string} name  the option, for the error @param {unknown[]} [more]
 * @returns {string[]}
 */
export function originsOf(urls: unknown, name: string, more?: unknown[]): string[];
/** A failed refresh: `retryable` is false for a final error (a 4xx but 408 and 429, a malformed answer). */
export class RefreshError extends Error {
    /**
     * @param {string} message
     * @param {{status?: number | null, code?: string | null, retryable?: boolean, cause?: unknown}} [details]
     */
    constructor(message: string, { status, code, retryable, cause }?: {
        status?: number | null;
        code?: string | null;
        retryable?: boolean;
        cause?: unknown;
    });
    /** HTTP status, or null for a network error. @type {number | null} */
    status: number | null;
    /** The OAuth `error` code of the answer, when it had one. @type {string | null} */
    code: string | null;
    /** @type {boolean} */
    retryable: boolean;
}
/**
 * Keeps the access token fresh. An EventTarget: listen for `refreshed`, `expiring`, `logged-out`,
 * `error` and `state` (see the *Detail typedefs).
 */
export class RefreshManager extends EventTarget {
    /** @param {RefreshManagerOptions} [options] */
    constructor(options?: RefreshManagerOptions);
    /** @returns {ManagerState} */
    get state(): ManagerState;
    /** The access token (memory only), or null. @returns {string | null} */
    get accessToken(): string | null;
    /**
     * When the token runs out (ms), or null: local receipt time + expires_in on the wall clock as it
     * reads now, so a wall clock set back since moves it back too. @returns {number | null}
     */
    get expiresAt(): number | null;
    /** Successful refreshes this tab performed or received from other tabs. @returns {number} */
    get refreshCount(): number;
    /** @returns {number | null} */
    get lastRefreshAt(): number | null;
    /**
     * Installs the wake-up listeners and the channel, then restores the session with one refresh
     * through the cookie (none if setSession() already gave a fresh token). Resolves at the first
     * definite outcome: true when logged in, false on 400/401, on a final error or when stop() or a
     * logout interrupts; outages are retried in the background meanwhile.
     * @returns {Promise<boolean>}
     */
    start(): Promise<boolean>;
    /**
     * Adopts a login response: logged in, refresh scheduled, token handed to the other tabs.
     * @param {{access_token: string, expires_in: number}} answer
     */
    setSession(answer: {
        access_token: string;
        expires_in: number;
    }): void;
    /**
     * Gets a new access token. Single flight: concurrent callers share one promise; across tabs one
     * Web Lock (with timeout) serializes the network calls, and a tab that receives the new token over
     * the channel meanwhile skips its own. Resolves true when logged in, false when the session is over
     * (or stop()/logout interrupted); retryable failures are retried inside. A login meanwhile
     * (setSession() here or in another tab) supersedes it: its answer, whatever it is, is dropped.
     * @returns {Promise<boolean>}
     */
    refresh(): Promise<boolean>;
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
    fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
    /**
     * Logs out: forgets the token, tells the other tabs, emits `logged-out` {reason: "logout"}, then
     * POSTs logoutUrl (a failed request is logged; the local logout stands). The request gets
     * refreshTimeoutMs, as a refresh does, so the returned promise always settles.
     * @returns {Promise<void>}
     */
    logout(): Promise<void>;
    /** Clears every timer and listener and closes the channel. start() may be called again later. */
    stop(): void;
    #private;
}
export type ManagerState = "logged-out" | "logged-in" | "refreshing" | "reconnecting" | "failed";
export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogoutReason = "invalid_grant" | "no_session" | "logout" | "other-tab";
/**
 * First retry ceiling (default 1000) and cap (default 30000).
 */
export type BackoffOptions = {
    baseMs?: number;
    maxMs?: number;
};
/**
 * The parts of `navigator.locks`, `BroadcastChannel` and `localStorage` the manager uses.
 */
export type LockManagerLike = {
    request(name: string, options: {
        ifAvailable?: boolean;
        signal?: AbortSignal;
    }, callback: (lock: unknown) => Promise<any>): Promise<any>;
};
/**
 * The parts of `navigator.locks`, `BroadcastChannel` and `localStorage` the manager uses.
 */
export type ChannelLike = {
    postMessage(data: any): void;
    close(): void;
    addEventListener(type: string, listener: (event: any) => void): void;
    removeEventListener(type: string, listener: (event: any) => void): void;
};
/**
 * The parts of `navigator.locks`, `BroadcastChannel` and `localStorage` the manager uses.
 */
export type StorageLike = {
    getItem(key: string): string | null;
    setItem(key: string, value: string): void;
    removeItem(key: string): void;
};
/**
 * The parts of `navigator.locks`, `BroadcastChannel` and `localStorage` the manager uses.
 */
export type DocumentLike = EventTarget & {
    visibilityState?: string;
};
/**
 * Constructor options. Injectables default to the browser globals when present (looked up when the
 * manager is built, or at each call for the clock, timers and fetch), else to safe fallbacks.
 */
export type RefreshManagerOptions = {
    /**
     * default "/auth/refresh"
     */
    refreshUrl?: string;
    /**
     * default "/auth/logout"
     */
    logoutUrl?: string;
    /**
     * refresh this long before expiry; default computeMarginMs(lifetime).
     * Never more than half the lifetime, so a short-lived token cannot cause a refresh loop.
     */
    marginMs?: number;
    /**
     * Web Lock name, BroadcastChannel name and storage key prefix
     * (default "starlette-refresh")
     */
    lockName?: string;
    /**
     * wait at most this long for the cross-tab lock, then refresh
     * anyway: the server's grace window absorbs the overlap (default 10000)
     */
    lockTimeoutMs?: number;
    /**
     * abandon a refresh request (and its body) that has not
     * answered after this long, and retry it with backoff (default 10000)
     */
    refreshTimeoutMs?: number;
    /**
     * (added) once the lock is held, if storage says another tab
     * refreshed meanwhile, wait this long for its token on the channel before asking the server (default 1000)
     */
    handoffWaitMs?: number;
    /**
     * default {baseMs: 1000, maxMs: 30000}
     */
    backoff?: BackoffOptions;
    /**
     * more origins (or absolute URLs) that may receive the access
     * token; the page's origin and refreshUrl's (when absolute) always may, no other (default [])
     */
    tokenOrigins?: string[];
    /**
     * the page's origin (default location.origin)
     */
    origin?: string | null;
    /**
     * the floor between two refreshes of this tab that a proactive
     * timer, a wake event or a rejected request (401 invalid_token) starts; not refresh() or start()
     * (default 1000; 1000 to 60000)
     */
    minIntervalMs?: number;
    /**
     * while the tab is visible, check this often whether the token
     * is due, even without a wake event (a sleep may bring none) (default 5000; 1000 to 60000)
     */
    checkIntervalMs?: number;
    /**
     * wall clock in ms (default Date.now)
     */
    now?: () => number;
    /**
     * monotonic clock in ms (default performance.now): deadlines
     * count the time since a token came by this clock or the wall clock, whichever says more
     */
    monotonic?: () => number;
    setTimeout?: (fn: () => void, ms: number) => any;
    clearTimeout?: (id: any) => void;
    /**
     * default globalThis.fetch
     */
    fetch?: (input: any, init?: any) => Promise<Response>;
    /**
     * default localStorage; holds only {refreshedAt, id} and the
     * session generation (a number bumped by every login and logout)
     */
    storage?: StorageLike | null;
    /**
     * default navigator.locks; null: in-tab single flight only
     */
    locks?: LockManagerLike | null;
    /**
     * default `name => new BroadcastChannel(name)`
     */
    channel?: ((name: string) => ChannelLike) | null;
    /**
     * receives "focus", "online", "pageshow" (default window)
     */
    events?: EventTarget | null;
    /**
     * visibilityState and "visibilitychange" (default document)
     */
    document?: DocumentLike | null;
    /**
     * jitter source in [0, 1) (default Math.random)
     */
    random?: () => number;
    /**
     * default `(level, message) => console[level](\`[refresh] ${message}\`)`
     */
    log?: (level: LogLevel, message: string) => void;
};
/**
 * `refreshed`; expiresIn in s, expiresAt in ms.
 *   source "login": setSession() in this tab or another one (maybe another user); "other-tab": a refresh there
 */
export type RefreshedDetail = {
    accessToken: string;
    expiresIn: number;
    expiresAt: number;
    source: "network" | "other-tab" | "login";
};
/**
 * `expiring`: the proactive timer fired
 */
export type ExpiringDetail = {
    expiresInMs: number;
};
/**
 * `logged-out`
 */
export type LoggedOutDetail = {
    reason: LogoutReason;
};
/**
 * `error`: a failed refresh, retried
 *   in retryInMs, or null for a final error (state "failed": the token is dropped and nothing is retried)
 */
export type ErrorDetail = {
    error: RefreshError;
    retryInMs: number | null;
};
/**
 * `state`: every state change
 */
export type StateDetail = {
    state: ManagerState;
};
export type Outcome = {
    kind: "token";
    accessToken: string;
    expiresIn: number;
} | {
    kind: "retry";
    error: RefreshError;
    label: string;
    retryAfterMs: number;
} | {
    kind: "failed";
    error: RefreshError;
    label: string;
} | {
    kind: "ended";
    reason: LogoutReason;
    code: string;
} | {
    kind: "skip";
} | {
    kind: "stale";
};
