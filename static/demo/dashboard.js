// starlette-refresh demo: the dashboard.
//
// Everything session-related goes through the RefreshManager (../refresh-manager.js): it restores the
// session from the HttpOnly cookie, keeps the access token in memory, refreshes it before it expires,
// and attaches it to API calls. This file only shows what the manager does.

import { RefreshManager } from "../refresh-manager.js";
import { RefreshingWebSocket } from "../refresh-socket.js";

const MAX_LOG_LINES = 500;

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);
const $role = (role) => document.querySelector(`[data-role="${role}"]`);

const ui = {
  status: $("status"),
  connection: $("connection"),
  userEmail: $("user-email"),
  expiresIn: $("expires-in"),
  refreshCount: $("refresh-count"),
  lastRefresh: $("last-refresh"),
  logout: $("logout"),
  logoutAll: $("logout-all"),
  sessions: $("sessions"),
  reloadSessions: $("reload-sessions"),
  log: $("log"),
  notice: $("notice"),
  signedOut: $("signed-out"),
  starting: $("starting"),
  meter: $role("expires-meter"),
  meEmail: $role("me-email"),
  meSid: $role("me-sid"),
  sessionsEmpty: $role("sessions-empty"),
  clearLog: $role("clear-log"),
  liveState: $("live-state"),
  liveConnections: $("live-connections"),
  liveRenewals: $("live-renewals"),
  liveTicks: $("live-ticks"),
  liveTokenExp: $("live-token-exp"),
  liveLastClose: $("live-last-close"),
};

let loggedIn = false;
let started = false;
let tokenLifetimeSec = null; // expires_in of the latest token, for the meter

// ---------------------------------------------------------------------------------------------------
// Log panel: one line per manager log message, newest last.

function appendToLogPanel(level, message) {
  const stickToBottom = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 24;
  const line = document.createElement("li");
  line.dataset.level = level;
  const time = document.createElement("span");
  time.className = "log-time";
  time.textContent = new Date().toLocaleTimeString([], { hour12: false });
  const badge = document.createElement("span");
  badge.className = "log-level";
  badge.textContent = level;
  const text = document.createElement("span");
  text.className = "log-message";
  text.textContent = message;
  line.append(time, " ", badge, " ", text); // spaces: the entry reads "12:00:01 info message"
  ui.log.append(line);
  while (ui.log.childElementCount > MAX_LOG_LINES) ui.log.firstElementChild.remove();
  if (stickToBottom) ui.log.scrollTop = ui.log.scrollHeight;
  // Mirrored to the console for devtools; never as console.error, which is for the page's own bugs.
  const mirror = { debug: console.debug, info: console.info }[level] ?? console.warn;
  mirror.call(console, `[refresh] ${message}`);
}

// ---------------------------------------------------------------------------------------------------
// The manager.

const manager = new RefreshManager({ log: (level, message) => appendToLogPanel(level, message) });
/** @type {RefreshingWebSocket | null} */
let live = null;
let liveTicks = 0;
window.demo = { manager, reloadSessions: () => loadSessions(), live: () => live };

// ---------------------------------------------------------------------------------------------------
// Page state.

function showNotice(message, kind = "warn") {
  ui.notice.textContent = message;
  ui.notice.dataset.kind = kind;
  ui.notice.hidden = false;
}

function hideNotice() {
  ui.notice.hidden = true;
  ui.notice.textContent = "";
}

function showStatusText(text) {
  if (ui.status.textContent === text) return;
  ui.status.textContent = text;
  ui.status.dataset.state = text;
}

function setStatus(isLoggedIn, text = isLoggedIn ? "logged-in" : "logged-out") {
  loggedIn = isLoggedIn;
  showStatusText(text);
  ui.starting.hidden = true;
  ui.signedOut.hidden = isLoggedIn;
  for (const button of [ui.logout, ui.logoutAll, ui.reloadSessions]) button.disabled = !isLoggedIn;
}

function setLoggedOut() {
  setStatus(false);
  ui.userEmail.textContent = "";
  ui.meEmail.textContent = "—";
  ui.meSid.textContent = "—";
  renderSessions([]);
  tick();
}

/** A final refresh error: the manager dropped its token and retries nothing, so say so and why. */
function setFailed(error) {
  setLoggedOut();
  setStatus(false, "error");
  const status = typeof error?.status === "number" ? `HTTP ${error.status}` : "an unusable answer";
  showNotice(`Your session could not be refreshed (${status}: ${error?.message ?? error}). Sign in again.`, "error");
}

function setConnection(state) {
  const text = state === "reconnecting" ? "reconnecting" : state === "failed" ? "stopped" : "online";
  ui.connection.textContent = text;
  ui.connection.dataset.state = text;
  if (text === "online" && ui.notice.dataset.kind === "connection") hideNotice();
}

function showRefreshStats() {
  ui.refreshCount.textContent = String(manager.refreshCount ?? 0);
  const at = manager.lastRefreshAt;
  if (at) {
    const date = new Date(at);
    ui.lastRefresh.dateTime = date.toISOString();
    ui.lastRefresh.textContent = date.toLocaleTimeString([], { hour12: false });
  } else {
    ui.lastRefresh.removeAttribute("datetime");
    ui.lastRefresh.textContent = "never";
  }
}

function tick() {
  const expiresAt = manager.expiresAt;
  const remaining = expiresAt == null ? 0 : Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
  // The status says logged-in only while the page holds a live token: a refresh that hangs or waits
  // out an outage past the token's end shows as "expired" until a new token arrives (before the
  // countdown shows 0, so the two never disagree).
  if (loggedIn) showStatusText(remaining > 0 && expiresAt > Date.now() ? "logged-in" : "expired");
  ui.expiresIn.textContent = String(remaining);
  const fraction = tokenLifetimeSec ? Math.min(1, remaining / tokenLifetimeSec) : 0;
  ui.meter.style.width = `${(fraction * 100).toFixed(1)}%`;
  ui.meter.dataset.low = String(fraction > 0 && fraction < 0.15);
}

// ---------------------------------------------------------------------------------------------------
// API calls (all through manager.fetch, which attaches the bearer token and refreshes when needed).

async function loadMe() {
  try {
    const response = await manager.fetch("/api/me");
    if (!response.ok) {
      if (response.status !== 401) showNotice(`GET /api/me answered HTTP ${response.status}`, "error");
      return;
    }
    const me = await response.json();
    ui.userEmail.textContent = me.email ?? "";
    ui.meEmail.textContent = me.email ?? me.sub ?? "—";
    ui.meSid.textContent = me.sid ?? "—";
  } catch (error) {
    showNotice(`Could not load your profile: ${error?.message ?? error}`, "error");
  }
}

async function loadSessions() {
  if (!loggedIn) return;
  try {
    const response = await manager.fetch("/auth/sessions");
    if (!response.ok) {
      if (response.status !== 401) showNotice(`GET /auth/sessions answered HTTP ${response.status}`, "error");
      return;
    }
    const body = await response.json();
    if (loggedIn) renderSessions(Array.isArray(body.sessions) ? body.sessions : []);
  } catch (error) {
    showNotice(`Could not load your sessions: ${error?.message ?? error}`, "error");
  }
}

async function revokeSession(session, button) {
  button.disabled = true;
  try {
    const response = await manager.fetch(`/auth/sessions/${encodeURIComponent(session.id)}`, { method: "DELETE" });
    if (response.status === 204 || response.status === 404) {
      if (session.current) {
        await manager.logout(); // this tab's own session is gone: end it here too
        setLoggedOut();
        return;
      }
      await loadSessions();
      return;
    }
    showNotice(`Could not revoke the session (HTTP ${response.status}). Try again.`, "error");
  } catch (error) {
    showNotice(`Could not revoke the session: ${error?.message ?? error}`, "error");
  }
  button.disabled = false;
}

async function logout() {
  ui.logout.disabled = true;
  try {
    await manager.logout();
  } finally {
    setLoggedOut();
  }
}

async function logoutEverywhere() {
  ui.logoutAll.disabled = true;
  try {
    const response = await manager.fetch("/auth/logout-all", { method: "POST" });
    if (!response.ok && response.status !== 401) {
      showNotice(`Could not log out everywhere (HTTP ${response.status}). Try again.`, "error");
      ui.logoutAll.disabled = !loggedIn;
      return;
    }
    await manager.logout();
    setLoggedOut();
  } catch (error) {
    showNotice(`Could not log out everywhere: ${error?.message ?? error}`, "error");
    ui.logoutAll.disabled = !loggedIn;
  }
}

// ---------------------------------------------------------------------------------------------------
// Live updates: one socket per logged-in tab, kept authenticated by RefreshingWebSocket.

// The socket closes itself for good when the manager logs out; its final `close` clears `live`, so a
// later login (in this tab or another) opens a new one.
function openLiveSocket() {
  if (live) return;
  live = new RefreshingWebSocket(manager, "/api/live", {
    log: (level, message) => appendToLogPanel(level, `socket: ${message}`),
    // ?renew=0 shows the other path: the server closes the socket (4401) as each token expires
    renew: new URLSearchParams(location.search).get("renew") !== "0",
  });
  const socket = live;
  const show = () => {
    ui.liveState.textContent = socket.state;
    ui.liveState.dataset.state = socket.state;
    ui.liveConnections.textContent = String(socket.connections);
    ui.liveRenewals.textContent = String(socket.renewals);
  };
  const showTokenExp = (/** @type {number} */ ms) => {
    const date = new Date(ms);
    ui.liveTokenExp.dateTime = date.toISOString();
    ui.liveTokenExp.textContent = date.toLocaleTimeString([], { hour12: false });
  };
  socket.addEventListener("state", show);
  socket.addEventListener("open", show);
  socket.addEventListener("message", (event) => {
    let message;
    try {
      message = JSON.parse(event.detail.data);
    } catch {
      return;
    }
    if (message.type === "tick") ui.liveTicks.textContent = String(++liveTicks);
    if (message.type === "hello" && typeof message.exp === "number") showTokenExp(message.exp * 1000);
  });
  socket.addEventListener("renewed", (event) => {
    showTokenExp(event.detail.expiresAt);
    show();
  });
  socket.addEventListener("close", (event) => {
    const { code, reason } = event.detail;
    ui.liveLastClose.textContent = `${code}${reason ? ` ${reason}` : ""}`;
    ui.liveLastClose.dataset.code = String(code);
    if (event.detail.reconnectInMs === null && live === socket) live = null; // closed for good
    show();
  });
  show();
}

// ---------------------------------------------------------------------------------------------------
// Sessions list. Built with textContent only: user agents come from other clients.

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

function ago(iso) {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return "unknown";
  const seconds = Math.round((then - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 60) return relative.format(seconds, "second");
  if (abs < 3600) return relative.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return relative.format(Math.round(seconds / 3600), "hour");
  return relative.format(Math.round(seconds / 86400), "day");
}

function renderSessions(sessions) {
  const items = sessions.map((session) => {
    const item = document.createElement("li");
    item.className = "session";
    item.dataset.testid = "session";
    item.dataset.sessionId = session.id;
    item.dataset.current = String(Boolean(session.current));

    const main = document.createElement("div");
    main.className = "session-main";
    const title = document.createElement("div");
    title.className = "session-title";
    // The server lists a short device label ("Chrome 131 on Windows"), derived at login.
    title.textContent = session.user_agent || "Unknown client";
    if (session.current) {
      const pill = document.createElement("span");
      pill.className = "pill";
      pill.dataset.testid = "current-session";
      pill.textContent = "This device";
      title.append(" ", pill);
    }
    const meta = document.createElement("div");
    meta.className = "session-meta";
    const sid = document.createElement("code");
    sid.textContent = String(session.id).slice(0, 12);
    sid.title = session.id;
    meta.append(`Signed in ${ago(session.created_at)} · active ${ago(session.last_used_at)} · `, sid);
    main.append(title, meta);

    const revoke = document.createElement("button");
    revoke.type = "button";
    revoke.className = "button button-danger-ghost button-small";
    revoke.dataset.testid = "revoke";
    revoke.textContent = "Revoke";
    if (session.current) revoke.title = "Revoking this device's session logs this tab out";
    revoke.addEventListener("click", () => revokeSession(session, revoke));

    item.append(main, revoke);
    return item;
  });
  ui.sessions.replaceChildren(...items);
  ui.sessionsEmpty.hidden = items.length > 0;
}

// ---------------------------------------------------------------------------------------------------
// Wiring.

manager.addEventListener("refreshed", (event) => {
  const expiresIn = event.detail?.expiresIn;
  if (typeof expiresIn === "number" && expiresIn > 0) tokenLifetimeSec = expiresIn;
  showRefreshStats();
  tick();
  if (!started) return; // start() loads the page's data itself
  if (!loggedIn) setStatus(true); // another tab handed us a session
  openLiveSocket();
  loadMe(); // proves the API still answers with the new token
  loadSessions();
});

manager.addEventListener("logged-out", () => {
  setLoggedOut();
});

manager.addEventListener("state", (event) => {
  setConnection(event.detail?.state ?? manager.state);
});

manager.addEventListener("error", (event) => {
  const retryInMs = event.detail?.retryInMs;
  if (retryInMs === null) {
    setFailed(event.detail?.error);
    return;
  }
  const when = typeof retryInMs === "number" ? ` Retrying in ${(retryInMs / 1000).toFixed(1)}s.` : "";
  showNotice(`The server cannot refresh your session right now; you are still signed in.${when}`, "warn");
  ui.notice.dataset.kind = "connection";
});

ui.logout.addEventListener("click", () => logout());
ui.logoutAll.addEventListener("click", () => logoutEverywhere());
ui.reloadSessions.addEventListener("click", () => loadSessions());
ui.clearLog.addEventListener("click", () => ui.log.replaceChildren());

setInterval(tick, 1000);
tick();

try {
  const isLoggedIn = await manager.start();
  started = true;
  setConnection(manager.state);
  showRefreshStats();
  if (isLoggedIn) {
    setStatus(true);
    openLiveSocket();
    await Promise.all([loadMe(), loadSessions()]);
  } else if (manager.state !== "failed") { // a final error has said why already (setFailed)
    setLoggedOut();
  }
} catch (error) {
  started = true;
  setLoggedOut();
  showNotice(`The refresh manager failed to start: ${error?.message ?? error}`, "error");
}
