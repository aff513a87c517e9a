"""A Quart app protected by starlette-refresh (docs/guide.md, "Quart and plain ASGI apps").

Run it: ``uvicorn examples.quart_app:application``.
"""

from __future__ import annotations

import os

from quart import Quart, Response, jsonify, request

from starlette_refresh import TokenAuth, TokenUser

auth = TokenAuth(
    secret_key=os.environ["JWT_SECRET"],
    redis_url=os.environ["REDIS_URL"],
    exclude=["/login"],
    cookie_secure=os.environ.get("COOKIE_SECURE", "1") != "0",  # 0 only for plain-http development
)

PASSWORDS = {"ana@example.com": "correct horse"}  # stands in for your user store

app = Quart(__name__)


@app.post("/login")
async def login() -> Response:
    form = await request.get_json(force=True, silent=True) or {}
    if PASSWORDS.get(form.get("email")) != form.get("password"):
        refused: Response = jsonify({"error": "wrong email or password"})
        refused.status_code = 401
        return refused
    answer = await auth.issue_session(request.scope, subject=form["email"], claims={"name": "Ana"})
    response: Response = jsonify(answer.body)
    response.status_code = answer.status
    for name, value in answer.headers:
        response.headers.add(name, value)  # add, not set: a login may set several cookies
    return response


@app.get("/api/notes")
async def notes() -> Response:
    user: TokenUser = request.scope["user"]
    return jsonify({"owner": user.identity, "notes": ["buy milk"]})


# Quart sends the lifespan through the middleware, so the library starts with the app, as in Starlette.
application = auth.wrap(app)
