// A live feed over a WebSocket that stays logged in. The feed picks no subprotocol of its own, so the
// server selects starlette-refresh and RefreshingWebSocket renews the open socket in band after each
// refresh of the manager: one connection outlives its access tokens. It can still drop (the network,
// a server restart, a renewal that came too late: 4401), and updates sent while no socket was open
// are lost, so every connection starts by asking for what came after the last update this page saw.
import { RefreshingWebSocket } from "../refresh-socket.js";

/**
 * @param {import("../refresh-manager.js").RefreshManager} manager
 * @param {(update: {id: number}) => void} onUpdate
 * @param {import("../refresh-socket.js").RefreshingWebSocketOptions} [options]  (tests pass fakes here)
 */
export function openLiveFeed(manager, onUpdate, options = {}) {
  /** @type {number | null} */
  let lastId = null;
  const feed = new RefreshingWebSocket(manager, "/ws/feed", options);
  feed.addEventListener("open", () => {
    feed.send(JSON.stringify({ type: "resume", after: lastId }));
  });
  feed.addEventListener("message", (/** @type {any} */ event) => {
    const update = JSON.parse(event.detail.data);
    lastId = update.id;
    onUpdate(update);
  });
  feed.addEventListener("close", (/** @type {any} */ event) => {
    const { code, reason, reconnectInMs } = event.detail;
    if (reconnectInMs === null) console.info(`Live feed closed for good (${code} ${reason})`);
  });
  return feed;
}
