"""A Litestar app protected by starlette-refresh (docs/guide.md, "Litestar").

Run it: ``uvicorn examples.litestar_app:application``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from litestar import Litestar, Request, get, post
from litestar.response.base import ASGIResponse

from starlette_refresh import TokenAuth, TokenUser

auth = TokenAuth(
    secret_key=os.environ["JWT_SECRET"],
    redis_url=os.environ["REDIS_URL"],
    exclude=["/login"],
    cookie_secure=os.environ.get("COOKIE_SECURE", "1") != "0",  # 0 only for plain-http development
)

PASSWORDS = {"ana@example.com": "correct horse"}  # stands in for your user store


@post("/login")
async def login(request: Request[Any, Any, Any]) -> ASGIResponse:
    form = await request.json()
    if PASSWORDS.get(form.get("email")) != form.get("password"):
        body, status, headers = {"error": "wrong email or password"}, 401, []
    else:
        answer = await auth.issue_session(request.scope, subject=form["email"], claims={"name": "Ana"})
        body, status, headers = answer.body, answer.status, answer.headers
    # An ASGIResponse keeps every header pair: a login may set several refresh_token cookies (the
    # deletions of those a sibling host planted, then its own), which a Response's dict would merge.
    return ASGIResponse(
        body=json.dumps(body).encode(), status_code=status, headers=headers, media_type="application/json"
    )


@get("/api/notes")
async def notes(request: Request[Any, Any, Any]) -> dict[str, Any]:
    user: TokenUser = request.scope["user"]
    return {"owner": user.identity, "notes": ["buy milk"]}


# Wrapped from outside, not in Litestar(middleware=[...]): Litestar runs its middleware only for a
# request that matched one of its routes, so /auth/refresh and the other endpoints, which are no
# route of the app, would answer Litestar's 404 before the middleware saw them.
application = auth.wrap(Litestar(route_handlers=[login, notes]))
