"""The demo app: a login page, a dashboard and a small protected API on top of ``TokenAuth``.

``create_app()`` is the uvicorn factory (``uvicorn demo_app.app:create_app --factory``); it reads its
settings from the environment (see :mod:`demo_app.settings`) and needs ``REDIS_URL``, which
``python -m demo_app`` provides by starting an embedded redis-server when it is not set.

Which paths need an access token:

* ``/auth/*``: answered by the library (``/auth/login`` is the demo's own and is excluded);
* ``/api/*`` and every other path: protected, 401 without a valid bearer token; this includes the
  WebSocket ``/api/live``, whose browser client offers the token as a subprotocol and renews it in
  band after each refresh, and which the middleware closes (4401) when its session is revoked or
  its token runs out unrenewed;
* exactly ``/`` (the login page, ``"/$"``), ``/app``, ``/static/*``, ``/healthz``, ``/favicon.ico``:
  public (``exclude``).

Page mode is on as well (``page_mode=True``, ``login_url="/"``): the login also sets the HttpOnly page
cookies, so the server-rendered ``/pages/*`` (Jinja2 and htmx, no JavaScript of ours) are protected
like every other path but need no ``Authorization`` header: the middleware authenticates them by the
cookies, refreshes them inline when their access token has run out, and sends a visitor without a
session to the login page (``/?next=/pages/account``). The dashboard's refresh manager keeps working
beside them: both modes share one session and one refresh token.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.websockets import WebSocket, WebSocketDisconnect

from starlette_refresh import StoreUnavailable, TokenAuth, TokenUser

from .settings import DEMO_EMAIL, DEMO_PASSWORD, DEMO_SUBJECT, DemoSettings, SettingsError, load_settings

logger = logging.getLogger("demo_app")

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
#: The repository's static/ folder: the refresh manager and the demo's assets.
STATIC_DIR = PACKAGE_DIR.parent / "static"

#: Paths that need no access token: "/$" is the root page alone, the others are segment-wise prefixes.
PUBLIC_PATHS = ("/$", "/app", "/static", "/healthz", "/auth/login", "/favicon.ico")
HEALTH_TIMEOUT = 1.0
#: How often /api/live sends a tick when the page says nothing.
LIVE_TICK_SECONDS = 1.0

#: Pages load scripts and styles from this origin only; nothing inline, nothing from a CDN.
#: ``Referrer-Policy: same-origin`` tells other sites nothing and keeps this site's own form posts
#: (the page's logout, a greeting without htmx) carrying ``Origin``; under ``no-referrer`` browsers send
#: ``Origin: null``, which the middleware accepts only with ``Sec-Fetch-Site: same-origin``.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
NO_STORE = {"Cache-Control": "no-store"}
#: A page that shows the user's data: kept by no cache, and not restored from the back/forward cache
#: after a logout.
PRIVATE_PAGE_HEADERS = {**PAGE_HEADERS, "Cache-Control": "no-store"}

#: The login page: a visitor without a session is sent here with ``?next=`` (page mode).
LOGIN_URL = "/"
#: What /pages/greeting keeps per user, and how much of one it reads.
GREETINGS_KEPT = 5
GREETING_MAX_CHARS = 80
GREETING_MAX_BODY = 2_048


class Greetings:
    """The greetings each user left on the account page, newest first, in this process's memory (a
    demo of an unsafe htmx request; with several workers each keeps its own)."""

    def __init__(self) -> None:
        self._by_user: dict[str, deque[str]] = {}
        self._counts: dict[str, int] = {}

    def add(self, user: str, text: str) -> None:
        self._by_user.setdefault(user, deque(maxlen=GREETINGS_KEPT)).appendleft(text)
        self._counts[user] = self._counts.get(user, 0) + 1

    def of(self, user: str) -> list[str]:
        return list(self._by_user.get(user, ()))

    def count(self, user: str) -> int:
        return self._counts.get(user, 0)


def create_app(settings: DemoSettings | None = None) -> Starlette:
    """Builds the demo app from ``settings`` (default: read from the environment)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s [%(process)d] %(name)s: %(message)s")
    if settings is None:
        settings = load_settings()
    if settings.redis_url is None:
        raise SettingsError(
            "REDIS_URL is not set: run `python -m demo_app` (it starts its own redis-server) "
            "or set REDIS_URL=redis://127.0.0.1:6379/0"
        )
    auth = TokenAuth(
        secret_key=settings.jwt_secret,
        redis_url=settings.redis_url,
        settings=settings.auth,
        exclude=list(PUBLIC_PATHS),
        page_mode=True,
        login_url=LOGIN_URL,
    )
    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    greetings = Greetings()

    def page_context(request: Request) -> dict[str, Any]:
        """What the account page and its fragments show: the user, and their token's seconds left."""
        user: TokenUser = request.user
        now = auth.clock()  # the library's clock (set to Redis's), which decided that the token is live
        expires_in = max(0, int(user.claims.get("exp", 0) - now))
        return {
            "email": user.claims.get("email") or user.display_name,
            "session_id": user.session_id,
            "expires_in": expires_in,
            "now": time.strftime("%H:%M:%S", time.localtime(now)),
            "greetings": greetings.of(user.identity),
            "greeting_count": greetings.count(user.identity),
        }

    async def login_page(request: Request) -> Response:
        return templates.TemplateResponse(request, "login.html", headers=PAGE_HEADERS)

    async def dashboard_page(request: Request) -> Response:
        return templates.TemplateResponse(request, "dashboard.html", headers=PAGE_HEADERS)

    async def account_page(request: Request) -> Response:
        return templates.TemplateResponse(
            request, "account.html", page_context(request), headers=PRIVATE_PAGE_HEADERS
        )

    async def clock_fragment(request: Request) -> Response:
        return templates.TemplateResponse(request, "_clock.html", page_context(request), headers=NO_STORE)

    async def greeting(request: Request) -> Response:
        """Records a greeting of the user's (an unsafe request: the middleware has checked that it
        comes from this site). htmx gets the list as a fragment; a plain form post is sent back to
        the page."""
        user: TokenUser = request.user
        body = await _limited_body(request, GREETING_MAX_BODY)
        if body is None:
            return HTMLResponse("Too long", status_code=413, headers=NO_STORE)
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        text = " ".join(form.get("text", "").split())[:GREETING_MAX_CHARS] or "Hello"
        greetings.add(user.identity, text)
        logger.info("greeting %d recorded for %s", greetings.count(user.identity), user.identity)
        if request.headers.get("hx-request") != "true":
            return RedirectResponse("/pages/account", status_code=303, headers=NO_STORE)
        return templates.TemplateResponse(request, "_greetings.html", page_context(request), headers=NO_STORE)

    async def login(request: Request) -> Response:
        parsed, body = await _json_body(request, auth.settings.max_body_bytes)
        if not parsed:
            return JSONResponse({"error": "invalid_request"}, status_code=400, headers=NO_STORE)
        email = body.get("email") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(email, str) or not isinstance(password, str) or not _is_demo_user(email, password):
            logger.info("login refused: wrong email or password")
            return JSONResponse({"error": "invalid_credentials"}, status_code=401, headers=NO_STORE)
        return await auth.login(request, subject=DEMO_SUBJECT, claims={"email": DEMO_EMAIL})

    async def me(request: Request) -> Response:
        user: TokenUser = request.user
        return JSONResponse(
            {"sub": user.identity, "email": user.claims.get("email"), "sid": user.session_id},
            headers=NO_STORE,
        )

    async def live(websocket: WebSocket) -> None:
        await serve_live_updates(websocket)

    async def healthz(request: Request) -> Response:
        try:
            await asyncio.wait_for(auth.store.ping(), timeout=HEALTH_TIMEOUT)
        except (StoreUnavailable, TimeoutError) as exc:
            logger.warning("health check: session store unavailable (%s)", exc or "timeout")
            return JSONResponse(
                {"status": "degraded", "store": "unavailable"}, status_code=503, headers=NO_STORE
            )
        return JSONResponse({"status": "ok", "store": "ok"}, headers=NO_STORE)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)  # the pages link an SVG icon; this keeps the log quiet

    app = Starlette(
        routes=[
            Route("/", login_page, name="login_page"),
            Route("/app", dashboard_page, name="dashboard"),
            Route("/auth/login", login, methods=["POST"], name="login"),
            Route("/api/me", me, name="me"),
            Route("/pages/account", account_page, name="account"),
            Route("/pages/clock", clock_fragment, name="clock"),
            Route("/pages/greeting", greeting, methods=["POST"], name="greeting"),
            WebSocketRoute("/api/live", live, name="live"),
            Route("/healthz", healthz, name="healthz"),
            Route("/favicon.ico", favicon),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        middleware=[auth.middleware()],
    )
    app.state.auth = auth
    app.state.settings = settings
    return app


async def serve_live_updates(websocket: WebSocket) -> None:
    """``/api/live``: says who the socket belongs to and until when its token is valid, then sends
    a numbered tick every :data:`LIVE_TICK_SECONDS` and echoes what the page sends.

    The app does nothing about tokens: the middleware takes the page's in-band renewals out of the
    stream this reads, and closes the socket (4401) when its session is revoked or its token runs
    out unrenewed, after which the page's socket reconnects.
    """
    user: TokenUser = websocket.user
    await websocket.accept()
    claims = user.claims
    await websocket.send_json(
        {"type": "hello", "email": claims.get("email"), "sid": user.session_id, "exp": claims["exp"]}
    )

    async def tick_forever() -> None:
        ticks = 0
        while True:
            await asyncio.sleep(LIVE_TICK_SECONDS)
            ticks += 1
            await websocket.send_json({"type": "tick", "n": ticks})

    ticker = asyncio.create_task(tick_forever())
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_json({"type": "echo", "text": text[:200]})
    except WebSocketDisconnect as gone:
        logger.info("live socket of session %s ended (code %s)", user.session_id, gone.code)
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)


async def _json_body(request: Request, limit: int) -> tuple[bool, Any]:
    """``(True, value)`` for a JSON body; ``(False, None)`` when it is not JSON or over ``limit``
    bytes (the login reads no more than the library's own endpoints do)."""
    body = await _limited_body(request, limit)
    if body is None:
        return False, None
    try:
        return True, json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False, None


async def _limited_body(request: Request, limit: int) -> bytes | None:
    """The request's body; None when it is over ``limit`` bytes (read no further than that)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _is_demo_user(email: str, password: str) -> bool:
    """Constant-time check of both fields (no early exit that would tell which one was wrong)."""
    # JSON strings may hold lone surrogates; "surrogatepass" encodes them instead of raising.
    given_email = email.strip().lower().encode("utf-8", "surrogatepass")
    given_password = password.encode("utf-8", "surrogatepass")
    email_ok = hmac.compare_digest(given_email, DEMO_EMAIL.encode())
    password_ok = hmac.compare_digest(given_password, DEMO_PASSWORD.encode())
    return email_ok and password_ok
