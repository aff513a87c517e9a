"""A small steady-load driver for the fault suites: simulated API clients against real app processes.

Each simulated client owns one session at a time (body transport, like a mobile or CLI client) and
loops: it calls the protected ``GET /me`` with its access token, refreshes when the access token is
within ``refresh_margin`` seconds of expiry or after ``refresh_every`` calls, and now and then logs in
again (a second device: the old session is kept, never revoked, and checked at the end). It behaves
like a well-written client: a ``503`` or a connection error is retried later with the SAME refresh
token, it never sends an access token it knows to be expired, and it only gives a session up on a
definite ``400 invalid_grant``, which the driver records as a *lost session*: no client here ever
logs out, so every such answer is a session the library lost.

Every request is recorded as an :class:`Event` (kind, client, app, start and end time, status or the
connection error), so a test can assert on exactly what was answered during a fault window marked with
:meth:`LoadDriver.mark`.

Usage::

    driver = LoadDriver([app1.url, app2.url], LoadConfig(clients=20))
    driver.start()                       # logs every client in, then loads in a background thread
    driver.mark("killed"); ...; driver.mark("restarted")
    assert driver.wait_all_refreshed(after=driver.marks["restarted"], timeout=10)
    report = driver.stop()               # stops the loops, then refreshes every session once more
    assert report.lost == [] and report.final_failures() == {}

The driver runs its own event loop (``asyncio.run``) in a daemon thread, so the test's main thread is
free to kill and restart processes, which blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2

__all__ = [
    "KINDS",
    "SHARED_TLS",
    "Event",
    "Kind",
    "LoadConfig",
    "LoadDriver",
    "LoadReport",
    "LostSession",
    "SessionRecord",
]

Kind = Literal["login", "refresh", "me"]
KINDS: tuple[Kind, ...] = ("login", "refresh", "me")

#: One TLS context for every client: building one per httpx client costs ~50 ms of CPU each (the
#: apps speak plain HTTP, so it is never used for a handshake).
SHARED_TLS = ssl.create_default_context()


@dataclass(frozen=True, slots=True)
class Event:
    """One request a simulated client made, and what came of it.

    Times are seconds since the driver started (``time.monotonic`` based). ``status`` is None when no
    HTTP answer arrived (connection refused or reset, timeout); ``error`` then names the exception
    class. For an HTTP error answer ``error`` is the body's ``"error"`` field (or the raw text).
    """

    kind: Kind
    client: int
    app: int
    started: float
    finished: float
    status: int | None
    error: str = ""

    @property
    def latency(self) -> float:
        """Seconds from sending the request to its answer (or failure)."""
        return self.finished - self.started

    @property
    def answered(self) -> bool:
        """True when an HTTP answer arrived (any status)."""
        return self.status is not None


@dataclass(frozen=True, slots=True)
class LostSession:
    """A refresh answered ``400 invalid_grant`` for a session the client never ended."""

    client: int
    session_id: str
    at: float
    body: str


@dataclass(slots=True)
class SessionRecord:
    """One session a client holds (or held, before it logged in again)."""

    session_id: str
    refresh_token: str
    access_token: str
    access_expires_at: float  # driver time: local receipt time + expires_in
    retry_pending: bool = False  # the last refresh got no definite answer; retry with the same token
    lost: bool = False


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """How the simulated clients behave."""

    clients: int = 20
    """Number of simulated clients, each with its own HTTP connection pool and session."""
    sticky: bool = True
    """True: client ``i`` always talks to app ``i % len(apps)``; False: requests rotate over the apps."""
    refresh_margin: float = 5.0
    """Refresh once the access token has less than this many seconds left (local clock)."""
    refresh_every: int = 5
    """... or after this many ``/me`` calls since the last successful refresh."""
    login_probability: float = 0.01
    """Chance per loop step that the client logs in again (the old session stays, unused)."""
    pause: float = 0.05
    """Think time between two requests of one client."""
    retry_pause: float = 0.2
    """Wait after a 503 or a connection error before the next request of that client."""
    request_timeout: float = 10.0
    """httpx timeout per request: a request that hangs shows up as a ``ReadTimeout`` event."""
    subject_prefix: str = "load"
    """Client ``i`` logs in as subject ``f"{subject_prefix}-{i}"``."""
    seed: int = 1234
    """Seeds each client's random choices (``seed + i``), so runs are comparable."""


@dataclass
class LoadReport:
    """Everything the driver saw; built by :meth:`LoadDriver.stop` (or :meth:`LoadDriver.snapshot`)."""

    events: list[Event]
    lost: list[LostSession]
    marks: dict[str, float]
    duration: float
    final: dict[tuple[int, str], int | None] = field(default_factory=dict)
    """Status of the last refresh of every session ever held, keyed by (client, session id)."""

    def of(
        self,
        kind: Kind | None = None,
        *,
        started_after: float | None = None,
        finished_before: float | None = None,
        overlapping: tuple[float, float] | None = None,
        apps: Iterable[int] | None = None,
    ) -> list[Event]:
        """Events filtered by kind, by a time window, and by the app they went to."""
        app_set = set(apps) if apps is not None else None
        chosen = []
        for event in self.events:
            if kind is not None and event.kind != kind:
                continue
            if started_after is not None and event.started < started_after:
                continue
            if finished_before is not None and event.finished > finished_before:
                continue
            if overlapping is not None and not (
                event.finished >= overlapping[0] and event.started <= overlapping[1]
            ):
                continue
            if app_set is not None and event.app not in app_set:
                continue
            chosen.append(event)
        return chosen

    @staticmethod
    def statuses(events: Iterable[Event]) -> Counter[int | str]:
        """Status codes counted; connection failures are counted under their exception name."""
        return Counter(e.status if e.status is not None else e.error for e in events)

    def final_failures(self) -> dict[tuple[int, str], int | None]:
        """Sessions whose final refresh did not answer 200."""
        return {key: status for key, status in self.final.items() if status != 200}

    def summary(self) -> str:
        """A few human-readable lines: counts per kind and status, latencies, losses, marks."""
        lines = [f"load: {len(self.events)} requests in {self.duration:.1f}s"]
        for kind in KINDS:
            events = self.of(kind)
            if not events:
                continue
            latencies = sorted(e.latency for e in events)
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses(events).items(), key=str))
            lines.append(
                f"  {kind:<7} {len(events):5d} [{counts}] p99 {p99 * 1000:.0f} ms, "
                f"max {latencies[-1] * 1000:.0f} ms"
            )
        lines.append(f"  lost sessions: {len(self.lost)}; final refreshes: {len(self.final)}")
        if self.marks:
            lines.append("  marks: " + ", ".join(f"{k}@{v:.2f}s" for k, v in self.marks.items()))
        return "\n".join(lines)


class _Client:
    """One simulated client: its HTTP pool, its sessions and its random choices."""

    def __init__(self, driver: LoadDriver, index: int) -> None:
        self.driver = driver
        self.index = index
        self.config = driver.config
        self.subject = f"{self.config.subject_prefix}-{index}"
        self.rng = random.Random(self.config.seed + index)  # not for security: reproducible choices
        self.sessions: list[SessionRecord] = []
        self.calls_since_refresh = 0
        self.request_count = 0
        self.http = httpx2.AsyncClient(timeout=self.config.request_timeout, verify=SHARED_TLS)

    @property
    def current(self) -> SessionRecord | None:
        return self.sessions[-1] if self.sessions else None

    def _app(self) -> int:
        count = len(self.driver.app_urls)
        if self.config.sticky:
            return self.index % count
        self.request_count += 1
        return (self.index + self.request_count) % count

    async def _send(
        self, kind: Kind, method: str, path: str, **kwargs: Any
    ) -> tuple[Event, httpx2.Response | None]:
        app = self._app()
        url = self.driver.app_urls[app] + path
        started = self.driver.now()
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx2.TransportError as exc:
            event = Event(kind, self.index, app, started, self.driver.now(), None, type(exc).__name__)
            self.driver.record(event)
            return event, None
        error = ""
        if response.status_code >= 400:
            try:
                error = str(response.json().get("error", ""))
            except ValueError:
                error = response.text[:200]
        event = Event(kind, self.index, app, started, self.driver.now(), response.status_code, error)
        self.driver.record(event)
        return event, response

    async def login(self) -> bool:
        """Starts a new session; True on 200."""
        _, response = await self._send(
            "login", "POST", "/login", json={"subject": self.subject, "transport": "body"}
        )
        if response is None or response.status_code != 200:
            return False
        body = response.json()
        self.sessions.append(
            SessionRecord(
                session_id=_session_id_of(body["refresh_token"]),
                refresh_token=body["refresh_token"],
                access_token=body["access_token"],
                access_expires_at=self.driver.now() + float(body["expires_in"]),
            )
        )
        self.calls_since_refresh = 0
        return True

    async def refresh(self, session: SessionRecord) -> int | None:
        """Refreshes ``session``; keeps the same token after a 503 or a connection error."""
        event, response = await self._send(
            "refresh", "POST", "/auth/refresh", json={"refresh_token": session.refresh_token}
        )
        if response is None or response.status_code >= 500:
            session.retry_pending = True
            return event.status
        if response.status_code == 200:
            body = response.json()
            session.refresh_token = body["refresh_token"]
            session.access_token = body["access_token"]
            session.access_expires_at = self.driver.now() + float(body["expires_in"])
            session.retry_pending = False
            if session is self.current:
                self.calls_since_refresh = 0
            self.driver.note_refreshed(self.index, event.started)
            return 200
        if response.status_code == 400 and event.error == "invalid_grant":
            session.lost = True
            self.driver.record_lost(
                LostSession(self.index, session.session_id, event.started, response.text[:300])
            )
        return event.status

    async def me(self, session: SessionRecord) -> int | None:
        event, _ = await self._send(
            "me", "GET", "/me", headers={"Authorization": f"Bearer {session.access_token}"}
        )
        self.calls_since_refresh += 1
        return event.status

    async def step(self) -> bool:
        """One loop step; True when it went well (no pause for a retry needed)."""
        session = self.current
        if session is None or session.lost:
            return await self.login()
        if not session.retry_pending and self.rng.random() < self.config.login_probability:
            return await self.login()
        left = session.access_expires_at - self.driver.now()
        if (
            session.retry_pending
            or left < self.config.refresh_margin
            or (self.calls_since_refresh >= self.config.refresh_every)
        ):
            return await self.refresh(session) == 200
        return await self.me(session) == 200

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            ok = await self.step()
            pause = self.config.pause if ok else self.config.retry_pause
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=pause * (0.5 + self.rng.random()))

    async def close(self) -> None:
        await self.http.aclose()


def _session_id_of(refresh_token: str) -> str:
    """The session id part of ``srt1.<tag>.<sid>.<gen>.<mac>`` (shape only; the server checks MACs)."""
    parts = refresh_token.split(".")
    return parts[2] if len(parts) == 5 else refresh_token


class LoadDriver:
    """Runs ``config.clients`` simulated clients against ``app_urls`` in a background thread."""

    def __init__(self, app_urls: Sequence[str], config: LoadConfig | None = None) -> None:
        if not app_urls:
            raise ValueError("LoadDriver needs at least one app URL")
        self.app_urls = [url.rstrip("/") for url in app_urls]
        self.config = config or LoadConfig()
        self.marks: dict[str, float] = {}
        self._origin = time.monotonic()
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._lost: list[LostSession] = []
        self._last_refresh_ok: dict[int, float] = {}
        self._final: dict[tuple[int, str], int | None] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._startup_error: BaseException | None = None
        self._failure: BaseException | None = None
        self._stopped_at: float | None = None

    # -- clock and bookkeeping (called from both threads) ---------------------------------------

    def now(self) -> float:
        """Seconds since the driver was created."""
        return time.monotonic() - self._origin

    def mark(self, label: str) -> float:
        """Records ``label`` at the current driver time and returns that time."""
        at = self.now()
        with self._lock:
            self.marks[label] = at
        return at

    def record(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    def record_lost(self, lost: LostSession) -> None:
        with self._lock:
            self._lost.append(lost)

    def note_refreshed(self, client: int, started: float) -> None:
        with self._lock:
            self._last_refresh_ok[client] = max(started, self._last_refresh_ok.get(client, -1.0))

    def snapshot(self) -> LoadReport:
        """A copy of what was recorded so far (the load keeps running)."""
        with self._lock:
            return LoadReport(
                events=list(self._events),
                lost=list(self._lost),
                marks=dict(self.marks),
                duration=(self._stopped_at or self.now()),
                final=dict(self._final),
            )

    def wait_all_refreshed(self, after: float, timeout: float) -> bool:
        """Waits until every client had a refresh answered 200 that it sent after ``after``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                done = all(self._last_refresh_ok.get(i, -1.0) >= after for i in range(self.config.clients))
            if done:
                return True
            if self._failure is not None:
                raise RuntimeError("the load driver crashed") from self._failure
            time.sleep(0.05)
        return False

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self, login_timeout: float = 30.0) -> None:
        """Logs every client in (each must get 200), then starts the loops; returns once they run."""
        if self._thread is not None:
            raise RuntimeError("the load driver was already started")
        self._thread = threading.Thread(target=self._thread_main, name="load-driver", daemon=True)
        self._thread.start()
        if not self._started.wait(login_timeout):
            raise RuntimeError(f"the load driver did not start within {login_timeout}s")
        if self._startup_error is not None:
            raise RuntimeError("the load driver could not log its clients in") from self._startup_error

    def stop(self, timeout: float = 30.0) -> LoadReport:
        """Stops the loops, refreshes every session each client ever held once more, and reports.

        A session whose final refresh is not 200 is in :meth:`LoadReport.final_failures`.
        """
        if self._thread is None or self._loop is None or self._stop is None:
            raise RuntimeError("the load driver is not running")
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"the load driver did not stop within {timeout}s")
        if self._failure is not None:
            raise RuntimeError("the load driver crashed") from self._failure
        return self.snapshot()

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._failure = exc
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        clients = [_Client(self, i) for i in range(self.config.clients)]
        try:
            logged_in = await asyncio.gather(*(c.login() for c in clients))
            if not all(logged_in):
                failed = [c.index for c, ok in zip(clients, logged_in, strict=True) if not ok]
                self._startup_error = RuntimeError(f"initial login failed for clients {failed}")
                self._started.set()
                return
            self._started.set()
            await asyncio.gather(*(c.run(self._stop) for c in clients))
            self._stopped_at = self.now()
            await self._final_refreshes(clients)
        finally:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    async def _final_refreshes(self, clients: Sequence[_Client]) -> None:
        """Refreshes every session once more; each client checks its own one after another.

        So the check offers the apps the concurrency the load did (one request per client), not a
        burst of every session at once: ~1,200 concurrent refreshes after a login storm overloaded
        the apps on a slow machine, and the store shed the excess with 503s (as it should), which
        the failover tests then read as 503s long after the group had settled.
        """

        async def check_each(client: _Client) -> None:
            for session in client.sessions:
                status = 400 if session.lost else await client.refresh(session)
                with self._lock:
                    self._final[(client.index, session.session_id)] = status

        await asyncio.gather(*(check_each(c) for c in clients))
