"""Server-rendered pages that stay logged in, with no JavaScript of ours (docs/guide.md, page mode)."""

from __future__ import annotations

import html
import os
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from starlette_refresh import TokenAuth, safe_next

auth = TokenAuth(
    secret_key=os.environ["JWT_SECRET"],
    redis_url=os.environ["REDIS_URL"],
    page_mode=True,  # logins also set the page cookies; navigations are refreshed inline
    login_url="/login",  # where a visitor without a session is sent, with ?next= to come back
    exclude=["/login"],
    cookie_secure=os.environ.get("COOKIE_SECURE", "1") != "0",
)

PASSWORDS = {"ana@example.com": "correct horse"}  # stands in for your user store

LOGIN_FORM = """<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<input name="email"> <input name="password" type="password"> <button>Log in</button>
</form>"""


async def login_page(request: Request) -> Response:
    next_page = html.escape(safe_next(request.query_params.get("next")))
    return HTMLResponse(LOGIN_FORM.format(next=next_page))


async def login(request: Request) -> Response:
    form = dict(parse_qsl((await request.body()).decode()))  # or request.form(), with python-multipart
    email, password = form.get("email", ""), form.get("password", "")
    if PASSWORDS.get(email) != password:
        return HTMLResponse("Wrong email or password. <a href=/login>Try again</a>", status_code=401)
    session = await auth.issue_session(request.scope, subject=email, claims={"name": "Ana"})
    if not session.ok:  # 503 while Redis is down, 403 for a form posted from another site
        return HTMLResponse("Please try again in a moment.", status_code=session.status)
    # Back where the visitor was going (never to another site), with the page cookies.
    response = RedirectResponse(safe_next(form.get("next")), status_code=303)
    for name, value in session.headers:
        if name == "set-cookie":
            response.headers.append(name, value)
    return response


async def account(request: Request) -> Response:
    # request.user as with bearer tokens; a refresh, when one was due, happened before this ran.
    return HTMLResponse(
        f"<p>Logged in as {html.escape(request.user.display_name)}</p>"
        '<form method="post" action="/auth/logout"><button>Log out</button></form>'
    )


app = Starlette(
    routes=[
        Route("/login", login_page),
        Route("/login", login, methods=["POST"]),
        Route("/account", account),
    ],
    middleware=[auth.middleware()],
)
