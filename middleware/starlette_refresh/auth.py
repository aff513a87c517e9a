"""``TokenAuth``: the one object that owns settings, keys and the session store of an app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Unpack

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Scope

from .access_tokens import AccessTokenCodec
from .assets import ManagerFiles
from .clock import Clock, system_clock
from .endpoints import AuthEndpoints, Transport
from .errors import ConfigurationError, StoreUnavailable
from .format_watch import FormatWatch
from .keys import KeyRing, SigningKey, as_key_ring
from .logins import LoginAnswer, login_response
from .middleware import TokenAuthMiddleware
from .observe import NullObserver, Observer
from .redis_urls import redact_url
from .refresh_tokens import RefreshTokenCodec
from .revocations import RevocationFeed, RevocationList
from .sessions import SessionInfo, SessionService
from .settings import SettingOptions, Settings
from .shared_clock import SharedClock, is_shared
from .startup import Startup
from .store import RedisStore, SessionStore
from .store_checks import check_store_server

logger = logging.getLogger("starlette_refresh")

#: Startup waits this many ``store_timeout`` for the revoked sessions before it gives up, so a slow
#: Redis delays the start a little and a dead one fails it, instead of serving revoked tokens.
STARTUP_REVOCATIONS_TIMEOUTS = 5

_NO_STORE_MESSAGE = (
    "TokenAuth needs a shared session store: pass redis_url='redis://127.0.0.1:6379/0', "
    "redis=<a redis.asyncio client> or store=<a SessionStore>. There is deliberately no in-memory "
    "store: sessions kept in one process vanish on restart and are invisible to other workers, "
    "which logs users out."
)


class TokenAuth:
    """JWT access tokens plus rotating refresh tokens in Redis, for one Starlette/FastAPI app.

    Build it once, at import time, with a secret shared by every worker and a shared Redis::

        auth = TokenAuth(secret_key=os.environ["JWT_SECRET"], redis_url=os.environ["REDIS_URL"])
        app = Starlette(routes=..., middleware=[auth.middleware()])

    The settings (lifetimes, paths, cookie, store limits; see :class:`Settings`) come whole as
    ``settings=Settings(...)``, or as keywords of the same names (``access_ttl=300``), or both, the
    keywords replacing fields of ``settings``; an unknown name is a :class:`ConfigurationError`.

    ``secret_key`` signs access tokens with HS256 exactly as given and keys the refresh-token MACs.
    With ``keys`` (a :class:`KeyRing` or a list of :class:`SigningKey`), access tokens are signed
    with the ring instead and ``secret_key`` is still needed for refresh tokens. Times are seconds.

    ``redis_url`` takes ``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://`` and
    ``redis+sentinel://`` URLs (see :mod:`starlette_refresh.redis_urls`). With ``replica_acks=N``,
    a login, logout or revocation answers only once N replicas hold it (Redis ``WAIT``, up to
    ``replica_ack_timeout``), otherwise 503, so a failover that promotes one of them keeps it
    (docs/deployment.md has the runbook for planned failovers).

    ``observer`` receives every session decision and store timing (see
    :mod:`starlette_refresh.observe`), e.g. ``starlette_refresh.prometheus.PrometheusMetrics()``.
    """

    def __init__(
        self,
        *,
        secret_key: str | bytes | None = None,
        keys: KeyRing | Sequence[SigningKey] | None = None,
        redis_url: str | None = None,
        redis: Any = None,
        store: SessionStore | None = None,
        settings: Settings | None = None,
        clock: Clock = system_clock,
        observer: Observer | None = None,
        **options: Unpack[SettingOptions],
    ) -> None:
        self.settings = Settings.build(settings, **options)
        # Every decision reads this one clock, set to Redis's so that all processes share one time.
        self._shared_clock = None if is_shared(clock) else SharedClock(clock)
        self.clock: Clock = clock if self._shared_clock is None else self._shared_clock
        self._clock_checks: asyncio.Task[None] | None = None
        self._format_checks: asyncio.Task[None] | None = None
        self.observer: Observer = observer if observer is not None else NullObserver()
        key_ring, refresh_secret = _keys(secret_key, keys)
        self.store = _store(redis_url, redis, store, self.settings, self.observer)
        self._store_label = redact_url(redis_url) if redis_url else type(self.store).__name__
        self.revocations = RevocationList(self.clock)
        self.revocation_feed = RevocationFeed(self.store, self.revocations, self.clock)
        self.access = AccessTokenCodec(key_ring, self.settings, self.clock, self.revocations.is_revoked)
        self.sessions = SessionService(
            self.settings,
            self.store,
            self.access,
            RefreshTokenCodec(refresh_secret),
            self.clock,
            self.revocations,
            observer=self.observer,
        )
        self.endpoints = AuthEndpoints(self.settings, self.sessions, self.access)
        self._startup = Startup(self._start, self._stop)

    def middleware(self) -> Middleware:
        """The middleware entry for ``Starlette(middleware=[...])`` or ``app.add_middleware``."""
        return Middleware(
            TokenAuthMiddleware,
            settings=self.settings,
            access=self.access,
            endpoints=self.endpoints,
            clock=self.clock,
            revocations=self.revocations,
            observer=self.observer,
            startup=self._startup,
        )

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """``app`` (any ASGI app: Django, Litestar, Quart, your own) protected by the middleware::

            application = auth.wrap(get_asgi_application())

        The same middleware as :meth:`middleware`, for frameworks without Starlette's middleware
        list. It answers the endpoints under the prefix before ``app`` sees them. Where no ASGI
        ``lifespan`` startup comes (Django's ASGI handler refuses it), it starts on the first
        request instead, with the same checks, and answers 503 until it has started.
        """
        entry = self.middleware()
        return entry.cls(app, *entry.args, **entry.kwargs)

    def static_files(self) -> ManagerFiles:
        """An ASGI app serving the browser refresh manager (``refresh-manager.js``), its WebSocket
        module (``refresh-socket.js``) and their TypeScript declarations (``.d.ts``), and nothing else::

            Mount("/static/sr", auth.static_files())   # list "/static/sr" in exclude
        """
        return ManagerFiles()

    async def login(
        self,
        request: Request,
        subject: str,
        claims: Mapping[str, Any] | None = None,
        *,
        transport: Transport = "cookie",
    ) -> Response:
        """Starts a session for ``subject`` (the app has checked the password) and answers it.

        ``200 {"access_token", "token_type", "expires_in"}`` plus the refresh cookie; with
        ``transport="body"`` (mobile, CLI) the refresh token comes as ``"refresh_token"`` instead.
        A store outage answers 503; a cookie login from another site's page answers 403.
        """
        return await login_response(self.settings, self.sessions, request.scope, subject, claims, transport)

    async def issue_session(
        self,
        scope: Scope,
        subject: str,
        claims: Mapping[str, Any] | None = None,
        *,
        transport: Transport = "cookie",
    ) -> LoginAnswer:
        """:meth:`login` for a view of any framework: starts a session for ``subject`` on the
        request whose ASGI ``scope`` is given (``request.scope`` in Django, Litestar and Quart), and
        returns the answer as data to copy onto the view's own response::

            answer = await auth.issue_session(request.scope, subject="42")
            # answer.status, answer.body (the JSON object), answer.headers: (name, value) pairs,
            # Set-Cookie among them, to add one by one (a name may repeat)

        The same checks and answers as :meth:`login`: a cookie login from another site's page is a
        403, a store outage a 503 (see :class:`LoginAnswer`).
        """
        response = await login_response(self.settings, self.sessions, scope, subject, claims, transport)
        return LoginAnswer.of(response)

    async def list_sessions(self, subject: str, *, current: str | None = None) -> list[SessionInfo]:
        """The live sessions of ``subject``, oldest first: what ``GET {prefix}/sessions`` shows them.

        For server code (an admin page, a security check) with no request from that user. ``current``
        is a session id to mark ``current=True`` (e.g. ``request.user.session_id``); without it no
        session is marked. Raises :class:`StoreUnavailable` during a store outage.
        """
        return await self.sessions.list_sessions(subject, current or "")

    async def end_session(self, subject: str, session_id: str) -> bool:
        """Ends one session of ``subject``, as ``DELETE {prefix}/sessions/{id}`` does, without a
        request from that user.

        Its refresh token is refused from now on, and its access tokens on every process within a
        second, as after a logout. Returns False, ending nothing, when ``session_id`` is not a live
        session of ``subject``. Raises :class:`StoreUnavailable` during a store outage; retry it.
        """
        return await self.sessions.revoke(subject, session_id)

    async def end_sessions(self, subject: str, *, keep: str | None = None) -> int:
        """Ends every session of ``subject`` (an account ban, a suspected compromise), or every one
        but the session ``keep`` (after a password change, ``keep=request.user.session_id`` keeps the
        caller logged in); returns how many ended.

        They end as after ``POST {prefix}/logout-all``: refresh tokens refused from now on, access
        tokens on every process within a second. Without ``keep`` this is one atomic step in the
        store; with ``keep`` the sessions are ended one by one, and one created meanwhile (a login
        racing the call) survives. Raises :class:`StoreUnavailable` during a store outage; retry it.
        """
        return await self.sessions.logout_all(subject, keep=keep)

    def verify_access_token(self, token: str) -> dict[str, Any]:
        """The claims of a valid access token; raises :class:`~starlette_refresh.errors.InvalidToken`."""
        return dict(self.access.verify(token))

    async def startup(self) -> None:
        """Connects to the store, checks it and loads the revoked sessions; raises
        :class:`StoreUnavailable` when it cannot. Called by the middleware on the ASGI ``lifespan``
        startup, so the server accepts no request before the process knows every revocation; where
        no lifespan startup comes, on the first request.
        """
        await self._startup.start()

    async def shutdown(self) -> None:
        """Stops the revocation feed and closes the store's connections (ASGI ``lifespan`` shutdown).

        Without a lifespan there is no shutdown: the feed and the clock checks end with the event
        loop, and the store's connections with the process.
        """
        await self._startup.stop()

    async def _start(self) -> None:
        try:
            await self.store.start()
        except StoreUnavailable as exc:
            raise StoreUnavailable(
                f"starlette-refresh cannot reach its session store ({self._store_label}): "
                f"{str(exc).rstrip('.')}. "
                "Start Redis or fix redis_url; the app will not start without its session store."
            ) from exc
        logger.info("session store ready (%s)", self._store_label)
        await check_store_server(self.store, self.settings.replica_acks, self._store_label)
        await self._set_clock()
        await self._watch_formats()
        await self.revocation_feed.start()
        # No request before the revocations are in: a process started after a logout must refuse
        # that session's access tokens from its first request on.
        try:
            await self.revocation_feed.ready(
                within=STARTUP_REVOCATIONS_TIMEOUTS * self.settings.store_timeout
            )
        except StoreUnavailable as exc:
            await self.revocation_feed.stop()
            raise StoreUnavailable(
                f"starlette-refresh {exc} ({self._store_label}); the app will not serve tokens that "
                "may have been revoked. Check that Redis answers, or raise store_timeout."
            ) from exc

    async def _watch_formats(self) -> None:
        """Decides which stored format to write before the first request: format 1 while processes
        of 0.1 share the store (a rolling upgrade), counting again until they are gone; else 2."""
        if not hasattr(self.store, "older_processes") or self._format_checks is not None:
            return
        watch = FormatWatch(self.store)  # type: ignore[arg-type]
        await watch.check(first=True)
        if watch.writes_format1:
            self._format_checks = asyncio.create_task(
                watch.keep_watching(), name="starlette-refresh format checks"
            )

    async def _set_clock(self) -> None:
        """Sets this process's clock to Redis's before any decision is made with it, and keeps it set."""
        if self._shared_clock is None:
            return
        await self._shared_clock.calibrate(self.store)
        logger.info(
            "clock set to Redis's: offset %+.3f ms, within %.3f ms",
            self._shared_clock.offset * 1000,
            (self._shared_clock.error or 0.0) * 1000,
        )
        if self._clock_checks is None:
            self._clock_checks = asyncio.create_task(
                self._shared_clock.keep_calibrated(self.store), name="starlette-refresh clock checks"
            )

    async def _stop(self) -> None:
        for checks in (self._clock_checks, self._format_checks):
            if checks is not None:
                checks.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await checks
        self._clock_checks = self._format_checks = None
        await self.revocation_feed.stop()
        await self.store.close()

    async def health(self) -> dict[str, Any]:
        """For health endpoints: ``{"store": "ok" | "unavailable", "revocations": "live" | "stale",
        "revoked_sessions": n}``. ``stale`` means this process is not receiving revocations now;
        it keeps enforcing the ones it knows and catches up when the feed reconnects."""
        try:
            await self.store.ping()
            store = "ok"
        except StoreUnavailable:
            store = "unavailable"
        feed = self.revocation_feed.status()
        return {
            "store": store,
            "revocations": "live" if feed["live"] else "stale",
            "revoked_sessions": feed["entries"],
        }


def _keys(
    secret_key: str | bytes | None, keys: KeyRing | Sequence[SigningKey] | None
) -> tuple[KeyRing, bytes]:
    if secret_key is None or (isinstance(secret_key, str | bytes) and not secret_key):
        raise ConfigurationError(
            "TokenAuth needs secret_key: a secret of at least 32 bytes, the same for every worker and "
            "every restart (a random per-process key would reject every other worker's tokens). "
            "Generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
        )
    default = SigningKey.hmac(secret_key)
    ring = as_key_ring(keys) if keys is not None else KeyRing([default])
    return ring, default.private


def _store(
    redis_url: str | None, redis: Any, store: SessionStore | None, settings: Settings, observer: Observer
) -> SessionStore:
    given = [
        name
        for name, value in (("redis_url", redis_url), ("redis", redis), ("store", store))
        if value is not None
    ]
    if not given:
        raise ConfigurationError(_NO_STORE_MESSAGE)
    if len(given) > 1:
        raise ConfigurationError(f"pass only one of redis_url, redis and store (got {', '.join(given)})")
    if store is not None:
        return store  # built by the application, with whatever observer it chose
    return RedisStore(redis, url=redis_url, settings=settings, observer=observer)
