"""The apps the HTTP benchmark serves with uvicorn, one process each, configured by environment.

``ours()``: a trivial endpoint behind starlette-refresh (``/protected``) and the same endpoint on an
excluded path (``/open``), in one app, so their ratio isolates what authentication costs. It also
serves the auth endpoints (``/auth/refresh``) and ``/redis-get``, one Redis ``GET``, the baseline for
a refresh.

``peer()``: what most tutorials write, Starlette's ``AuthenticationMiddleware`` with a backend that
decodes the JWT with pyjwt on every request, with the same two endpoints. ``authx()``: the same two
endpoints with AuthX on FastAPI, where the ``bench`` extra is installed.

Both read ``BENCH_SECRET`` and ``BENCH_REDIS_URL``.
"""

from __future__ import annotations

import os
from typing import Any

import jwt
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
    requires,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from starlette_refresh import TokenAuth


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def ours() -> Starlette:
    """starlette-refresh in front of ``/protected``; ``/open`` and ``/redis-get`` are excluded."""
    auth = TokenAuth(
        secret_key=os.environ["BENCH_SECRET"],
        redis_url=os.environ["BENCH_REDIS_URL"],
        exclude=["/open", "/redis-get"],
        cookie_secure=False,
        refresh_grace=0,
    )
    client = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])

    async def redis_get(request: Request) -> Response:
        value = await client.get("bench:key")
        return PlainTextResponse(value or b"")

    return Starlette(
        routes=[Route("/open", hello), Route("/protected", hello), Route("/redis-get", redis_get)],
        middleware=[auth.middleware()],
    )


class PyJWTBackend(AuthenticationBackend):
    """The tutorial backend: decode and verify the bearer JWT with pyjwt on every request."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        header = conn.headers.get("authorization")
        if not header or not header.lower().startswith("bearer "):
            return None
        try:
            claims = jwt.decode(header[7:], self.secret, algorithms=["HS256"])
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError("invalid token") from exc
        return AuthCredentials(["authenticated"]), SimpleUser(claims["sub"])


def peer() -> Starlette:
    """Starlette's AuthenticationMiddleware + a pyjwt backend; ``/protected`` requires a user."""
    protected = requires("authenticated")(hello)
    return Starlette(
        routes=[Route("/open", hello), Route("/protected", protected)],
        middleware=[Middleware(AuthenticationMiddleware, backend=PyJWTBackend(os.environ["BENCH_SECRET"]))],
    )


def bare() -> Starlette:
    """The same trivial endpoint with no authentication at all: the ceiling."""
    return Starlette(routes=[Route("/open", hello)])


def authx() -> Any:
    """AuthX (FastAPI) as its docs show it: ``access_token_required`` on the protected route.

    Needs the ``bench`` extra (``authx``, which brings FastAPI); ``bench.http`` skips it otherwise.
    """
    from authx import AuthX
    from fastapi import Depends, FastAPI

    security = AuthX(config=authx_config(os.environ["BENCH_SECRET"]))
    app = FastAPI()

    @app.get("/open")
    async def open_route() -> Response:
        return PlainTextResponse("hello")

    @app.get("/protected", dependencies=[Depends(security.access_token_required)])
    async def protected_route() -> Response:
        return PlainTextResponse("hello")

    return app


def authx_config(secret: str) -> Any:
    """AuthX reading the access token from the Authorization header, HS256 with ``secret``."""
    from authx import AuthXConfig

    return AuthXConfig(JWT_SECRET_KEY=secret, JWT_TOKEN_LOCATION=["headers"])


def authx_token(secret: str) -> str:
    """An AuthX access token for the benchmark's user, signed with ``secret``."""
    from authx import AuthX

    token: str = AuthX(config=authx_config(secret)).create_access_token(uid="bench-user")
    return token
