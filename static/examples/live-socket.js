// A live feed over a WebSocket that stays logged in. The feed speaks its own subprotocol, feed.v1, so
// the socket is not renewed in band: when the access token ends, the server closes it with 4401 and
// RefreshingWebSocket reconnects with the token the manager already refreshed. Updates sent while no
// socket was open are lost, so every connection starts by asking for what came after the last update
// this page saw.
import { RefreshingWebSocket } from "../refresh-socket.js";

/**
 * @param {import("../refresh-manager.js").RefreshManager} manager
 * @param {(update: {id: number}) => void} onUpdate
 * @param {import("../refresh-socket.js").RefreshingWebSocketOptions} [options]  (tests pass fakes here)
 */
export function openLiveFeed(manager, onUpdate, options = {}) {
  /** @type {number | null} */
  let lastId = null;
  const feed = new RefreshingWebSocket(manager, "/ws/feed", { protocols: ["feed.v1"], ...options });
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
