"""An existing Starlette app with starlette-refresh mounted into it (docs/guide.md, step by step)."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from starlette_refresh import TokenAuth

# Step 2: one TokenAuth per app, built at import time. Every worker reads the same secret and Redis.
auth = TokenAuth(
    secret_key=os.environ["JWT_SECRET"],
    redis_url=os.environ["REDIS_URL"],
    # Step 3: what needs no access token. "/$" is the home page alone; "/static" covers everything below.
    exclude=["/$", "/login", "/static", "/healthz"],
    cookie_secure=os.environ.get("COOKIE_SECURE", "1") != "0",  # 0 only for plain-http development
)

PASSWORDS = {"ana@example.com": "correct horse"}  # stands in for your user store


async def home(request: Request) -> Response:
    return JSONResponse({"hello": "world"})


# Step 4: your login route checks the password; the library issues the session and the cookie.
async def login(request: Request) -> Response:
    form = await request.json()
    if PASSWORDS.get(form.get("email")) != form.get("password"):
        return JSONResponse({"error": "wrong email or password"}, status_code=401)
    return await auth.login(request, subject=form["email"], claims={"name": "Ana"})


# Step 5: every other route is protected; request.user is the token's user.
async def notes(request: Request) -> Response:
    return JSONResponse({"owner": request.user.identity, "notes": ["buy milk"]})


async def healthz(request: Request) -> Response:
    health = await auth.health()
    return JSONResponse(health, status_code=200 if health["store"] == "ok" else 503)


app = Starlette(
    routes=[
        Route("/", home),
        Route("/login", login, methods=["POST"]),
        Route("/api/notes", notes),
        Route("/healthz", healthz),
        # Step 6: the browser refresh manager, served from the package.
        Mount("/static/sr", auth.static_files()),
    ],
    middleware=[auth.middleware()],
)
