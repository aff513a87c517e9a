"""The app every test drives: a small Starlette API mounting starlette-refresh.

``build_app(auth)`` is used in-process (TestClient); ``app_from_env()`` is the uvicorn factory the
integration tests run as real processes, configured through ``SR_*`` environment variables.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from starlette_refresh import SigningKey, TokenAuth, format_watch
from starlette_refresh.clock import Clock, system_clock

SECRET = "test-secret-0123456789-0123456789-0123456789"


def build_app(auth: TokenAuth) -> Starlette:
    """Routes: POST /login, GET /me (protected), GET /public, GET /health, /auth/custom (app's own),
    WebSocket /ws (says who, then closes) and /ws/echo (says who, then echoes)."""

    async def login(request: Request) -> Response:
        body: dict[str, Any] = await request.json() if await request.body() else {}
        return await auth.login(
            request,
            subject=str(body.get("subject", "42")),
            claims=body.get("claims", {"email": "a@example.com"}),
            transport=body.get("transport", "cookie"),
        )

    async def me(request: Request) -> JSONResponse:
        return JSONResponse(
            {"sub": request.user.identity, "sid": request.user.session_id, "scopes": request.auth.scopes}
        )

    @requires("authenticated")
    async def guarded(request: Request) -> JSONResponse:
        return JSONResponse({"sub": request.user.identity})

    async def public(request: Request) -> JSONResponse:
        return JSONResponse({"authenticated": request.user.is_authenticated})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(await auth.health())

    async def custom(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"app route under the prefix ({request.method})")

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"sub": websocket.user.identity})
        await websocket.close()

    async def ws_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"sub": websocket.user.identity})
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.send_text(f"echo {await websocket.receive_text()}")

    return Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/me", me),
            Route("/guarded", guarded),
            Route("/public", public),
            Route("/health", health),
            Route("/auth/custom", custom, methods=["GET", "POST"]),
            WebSocketRoute("/ws", ws),
            WebSocketRoute("/ws/echo", ws_echo),
        ],
        middleware=[auth.middleware()],
    )


def auth_from_env() -> TokenAuth:
    """A TokenAuth configured by ``SR_REDIS_URL``, ``SR_SECRET``, the ``SR_*_TTL`` variables,
    ``SR_LEEWAY``, ``SR_STORE_TIMEOUT``, ``SR_REPLICA_ACKS``, ``SR_REPLICA_ACK_TIMEOUT``, and
    ``SR_CLOCK_SKEW`` (seconds this process's clock is off, to play an unsynchronised host), and
    ``SR_KEYS`` (asymmetric signing keys, see :func:`keys_from_env`), and
    ``SR_FORMAT_CHECK_INTERVAL`` (seconds between counts of 0.1 processes, see format_watch), and
    ``SR_PAGE_MODE=1`` (page mode, its login page ``/login``)."""
    env = os.environ
    if "SR_FORMAT_CHECK_INTERVAL" in env:  # how soon a rolling-upgrade test sees 0.1 processes go
        format_watch.CHECK_INTERVAL_SECONDS = float(env["SR_FORMAT_CHECK_INTERVAL"])
    return TokenAuth(
        clock=host_clock(float(env.get("SR_CLOCK_SKEW", "0"))),
        secret_key=env.get("SR_SECRET", SECRET),
        keys=keys_from_env(env.get("SR_KEYS", "")),
        redis_url=env["SR_REDIS_URL"],
        access_ttl=int(env.get("SR_ACCESS_TTL", "900")),
        refresh_ttl=int(env.get("SR_REFRESH_TTL", "3600")),
        refresh_grace=float(env.get("SR_GRACE", "10")),
        leeway=int(env.get("SR_LEEWAY", "10")),
        store_timeout=float(env.get("SR_STORE_TIMEOUT", "1")),
        replica_acks=int(env.get("SR_REPLICA_ACKS", "0")),
        replica_ack_timeout=float(env.get("SR_REPLICA_ACK_TIMEOUT", "0.5")),
        exclude=["/login", "/public", "/health"],
        cookie_secure=False,
        page_mode=env.get("SR_PAGE_MODE") == "1",
        login_url="/login",
    )


def keys_from_env(spec: str) -> list[SigningKey] | None:
    """The key ring of ``SR_KEYS``: comma-separated ``kid:algorithm:pem-path`` entries, a private PEM
    for a key that signs and a public one for a verify-only key; the first private key signs.
    Empty: None, and access tokens are signed with ``SR_SECRET`` (HS256)."""
    keys = []
    for entry in filter(None, spec.split(",")):
        kid, algorithm, path = entry.split(":", 2)
        pem = Path(path).read_bytes()
        if b"PRIVATE KEY" in pem:
            keys.append(SigningKey.from_pem(pem, kid=kid, algorithm=algorithm))
        else:
            keys.append(SigningKey.verify_only(pem, kid=kid, algorithm=algorithm))
    return keys or None


def host_clock(skew: float) -> Clock:
    """This host's clock, off by ``skew`` seconds."""
    if not skew:
        return system_clock
    return lambda: time.time() + skew


def app_from_env() -> Starlette:
    """uvicorn factory: ``uvicorn tests.apps:app_from_env --factory``; logs at INFO to stderr."""
    # With the time, so a fault test's failure can be lined up with its load driver's events.
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    return build_app(auth_from_env())
