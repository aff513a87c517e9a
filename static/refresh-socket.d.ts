/**
 * The subprotocol list that carries `accessToken`, for code that opens its own sockets.
 * @param {string} accessToken
 * @param {string[]} [protocols]  the app's own subprotocols, offered first
 * @returns {string[]}
 */
export function bearerProtocols(accessToken: string, protocols?: string[]): string[];
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
export const SOCKET_PROTOCOL: "starlette-refresh";
/** A client's text frame `${RENEW_PREFIX}<access token>` renews the open socket in band. */
export const RENEW_PREFIX: "starlette-refresh.renew ";
/**
 * The server's answer to a renewal, `${RENEWED_PREFIX}<exp in Unix seconds>`. Reserved on a socket
 * that selected SOCKET_PROTOCOL: such frames never reach the app's `message` listeners.
 */
export const RENEWED_PREFIX: "starlette-refresh.renewed ";
/**
 * A WebSocket that offers the manager's access token, renews it in band and reconnects with a fresh
 * one. An EventTarget: listen for `open`, `message`, `close`, `state` and `renewed` (see the *Detail
 * typedefs). Connects at once; the first state is "connecting" (no `state` event for it).
 */
export class RefreshingWebSocket extends EventTarget {
    /**
     * @param {ManagerLike} manager  the page's RefreshManager
     * @param {string | URL} url  relative urls resolve against baseUrl; http(s) becomes ws(s)
     * @param {RefreshingWebSocketOptions} [options]
     */
    constructor(manager: ManagerLike, url: string | URL, options?: RefreshingWebSocketOptions);
    /** @returns {SocketState} */
    get state(): SocketState;
    /** The current WebSocket (connecting or open), or null. @returns {WebSocketLike | null} */
    get socket(): WebSocketLike | null;
    /** The subprotocol the server selected for the open socket; "" otherwise. @returns {string} */
    get protocol(): string;
    /** How many times a socket opened. @returns {number} */
    get connections(): number;
    /** How many in-band renewals the server accepted, over every socket. @returns {number} */
    get renewals(): number;
    /** The resolved ws:// or wss:// url. @returns {string} */
    get url(): string;
    /**
     * Sends on the open socket. Returns false, without throwing, when there is none: data sent
     * between two sockets is not queued (the app's protocol should resync on `open`).
     * @param {string | ArrayBufferLike | Blob | ArrayBufferView} data
     * @returns {boolean}
     */
    send(data: string | ArrayBufferLike | Blob | ArrayBufferView): boolean;
    /**
     * Closes for good: clears the timer and every listener, closes the socket and emits `close`
     * with reconnectInMs null. Does nothing when already closed.
     * @param {number} [code] @param {string} [reason]
     */
    close(code?: number, reason?: string): void;
    #private;
}
export type RefreshManager = import("./refresh-manager.js").RefreshManager;
export type BackoffOptions = import("./refresh-manager.js").BackoffOptions;
export type LogLevel = import("./refresh-manager.js").LogLevel;
export type SocketState = "connecting" | "open" | "waiting" | "closed";
/**
 * The part of a RefreshManager the socket uses: its public API only.
 */
export type ManagerLike = Pick<RefreshManager, "accessToken" | "expiresAt" | "state" | "refresh" | "addEventListener" | "removeEventListener">;
/**
 * The parts of a browser WebSocket the module uses, and its constructor.
 */
export type WebSocketLike = EventTarget & {
    readonly readyState: number;
    readonly protocol: string;
    send(data: any): void;
    close(code?: number, reason?: string): void;
};
export type WebSocketConstructor = new (url: string, protocols: string[]) => WebSocketLike;
/**
 * Constructor options, all optional. Injectables default to the browser globals (looked up when the
 * socket is built, or at each call for the clock and timers).
 */
export type RefreshingWebSocketOptions = {
    /**
     * the app's own subprotocols, offered first (default [])
     */
    protocols?: string[];
    /**
     * default globalThis.WebSocket
     */
    WebSocket?: WebSocketConstructor;
    /**
     * relative urls are resolved against it (default location.href)
     */
    baseUrl?: string | URL | null;
    /**
     * clock in ms (default Date.now)
     */
    now?: () => number;
    setTimeout?: (fn: () => void, ms: number) => any;
    clearTimeout?: (id: any) => void;
    /**
     * jitter source in [0, 1) (default Math.random)
     */
    random?: () => number;
    /**
     * default {baseMs: 1000, maxMs: 30000}
     */
    backoff?: BackoffOptions;
    /**
     * a token with less than this left is refreshed before
     * connecting (default 1000: the manager refreshes well before expiry, and a lifetime may be
     * only seconds long)
     */
    minTokenMs?: number;
    /**
     * receives "online": a waiting socket reconnects at once (default window)
     */
    events?: EventTarget | null;
    /**
     * default `(level, message) => console[level](\`[socket] ${message}\`)`
     */
    log?: (level: LogLevel, message: string) => void;
    /**
     * whether a close code is worth a reconnect;
     * default false for 1000, 1003, 1007, 1008, 1009, 1010, 4400 and 4403. A 4401 always reconnects.
     */
    shouldReconnect?: (code: number) => boolean;
    /**
     * more origins (or absolute URLs) the socket may offer the token
     * to; the page's (baseUrl's) always may, no other: a socket url elsewhere throws a TypeError (default [])
     */
    tokenOrigins?: string[];
    /**
     * renew the open socket in band after each refresh, when the
     * server selected the `starlette-refresh` subprotocol (default true); false: the server closes the
     * socket with 4401 at each token's expiry and it reconnects
     */
    renew?: boolean;
};
/**
 * `open`
 */
export type OpenDetail = {
    protocol: string;
    connections: number;
};
/**
 * `message`: event is the raw MessageEvent
 */
export type MessageDetail = {
    data: any;
    event: MessageEvent;
};
/**
 * `close`: wasOpen false for a failed handshake; reconnectInMs null when the socket is closed for good
 */
export type CloseDetail = {
    code: number;
    reason: string;
    wasOpen: boolean;
    reconnectInMs: number | null;
};
/**
 * `state`: every state change
 */
export type SocketStateDetail = {
    state: SocketState;
};
/**
 * `renewed`: the server accepted an
 *   in-band renewal; expiresAt is the new token's expiry in ms (the server's clock), renewals the total
 */
export type RenewedDetail = {
    expiresAt: number;
    renewals: number;
};
