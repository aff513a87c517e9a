"""A FastAPI app on starlette-refresh: typed users, scopes (on HTTP and WebSocket routes), OpenAPI,
and Starlette's ``requires``.

Run it against a Redis you have (the demo's ``scripts/demo`` starts one for you)::

    JWT_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(48))') \\
    REDIS_URL=redis://127.0.0.1:6379/0 COOKIE_SECURE=0 uvicorn examples.fastapi_app:app_from_env --factory

then open http://127.0.0.1:8000/docs. ``tests/fastapi/`` runs every route of this file.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response, WebSocket
from pydantic import BaseModel
from starlette.authentication import requires
from starlette.responses import JSONResponse

from starlette_refresh import TokenAuth, TokenUser
from starlette_refresh.fastapi import (
    CurrentClaims,
    CurrentUser,
    OptionalUser,
    document_auth_endpoints,
    require_scopes,
)

# A stand-in for your user store: email -> (password, scopes).
USERS = {
    "ana@example.com": ("correct horse", "notes:read notes:write"),
    "bob@example.com": ("battery", "notes:read"),
}


#: The paths anyone may call: the middleware lets them in without a token.
PUBLIC_PATHS = ["/login", "/welcome", "/docs", "/openapi.json"]


class Credentials(BaseModel):
    email: str
    password: str


class LoginRefused(BaseModel):
    detail: str


def create_app(auth: TokenAuth) -> FastAPI:
    """The app, around a TokenAuth built by the caller (tests pass one on fakeredis)."""
    app = FastAPI(title="Notes", middleware=[auth.middleware()])

    @app.post(
        "/login",
        responses={
            400: {"model": LoginRefused, "description": "the body is not JSON (FastAPI's own answer)"},
            401: {"model": LoginRefused, "description": "wrong email or password"},
        },
    )
    async def login(request: Request, credentials: Credentials) -> Response:
        known = USERS.get(credentials.email)
        if known is None or known[0] != credentials.password:
            raise HTTPException(status_code=401, detail="wrong email or password")
        return await auth.login(request, subject=credentials.email, claims={"scope": known[1]})

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return {"sub": user.identity, "session": user.session_id}

    @app.get("/claims")
    async def claims(claims: CurrentClaims) -> dict[str, Any]:
        return {"scope": claims.get("scope", "")}

    @app.get("/notes", dependencies=[Depends(require_scopes("notes:read"))])
    async def list_notes() -> list[str]:
        return ["buy milk"]

    @app.post("/notes", status_code=201)
    async def add_note(user: Annotated[TokenUser, Depends(require_scopes("notes:write"))]) -> dict[str, str]:
        return {"added_by": user.identity}

    @app.websocket("/ws/drafts")
    async def drafts(
        websocket: WebSocket, user: Annotated[TokenUser, Depends(require_scopes("notes:write"))]
    ) -> None:
        # The same dependencies as on HTTP routes. The middleware has verified the token (a browser's
        # refresh-socket.js offers it as a subprotocol) and closes the socket (4401) when it ends.
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_json({"draft": text, "by": user.identity})

    @app.get("/welcome")
    async def welcome(user: OptionalUser) -> dict[str, str]:
        return {"hello": user.identity if user else "stranger"}

    @requires("authenticated")
    async def plain_starlette(request: Request) -> JSONResponse:
        # Starlette's own decorator works on the same request.user / request.auth.
        return JSONResponse({"sub": request.user.identity, "scopes": request.auth.scopes})

    app.add_route("/plain", plain_starlette)
    document_auth_endpoints(app, auth)
    return app


def app_from_env() -> FastAPI:
    """The app as uvicorn runs it: ``JWT_SECRET`` and ``REDIS_URL`` from the environment."""
    auth = TokenAuth(
        secret_key=os.environ["JWT_SECRET"],
        redis_url=os.environ["REDIS_URL"],
        exclude=PUBLIC_PATHS,
        cookie_secure=os.environ.get("COOKIE_SECURE", "1") != "0",
    )
    return create_app(auth)
