"""A Django app (ASGI) protected by starlette-refresh (docs/guide.md, "Django").

Run it: ``uvicorn examples.django_app:application``. One file for the example; in a project, the
settings go to settings.py, the views to views.py and the last lines to asgi.py.
"""

from __future__ import annotations

import json
import os
from http.cookies import SimpleCookie

from django.conf import settings

settings.configure(
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(","),
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "unused: this example has no Django sessions"),
)

from django.core.asgi import get_asgi_application  # noqa: E402 - after settings.configure
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.http import require_POST  # noqa: E402

from starlette_refresh import LoginAnswer, TokenAuth, TokenUser  # noqa: E402

auth = TokenAuth(
    secret_key=os.environ["JWT_SECRET"],
    redis_url=os.environ["REDIS_URL"],
    exclude=["/login"],
    cookie_secure=os.environ.get("COOKIE_SECURE", "1") != "0",  # 0 only for plain-http development
)

PASSWORDS = {"ana@example.com": "correct horse"}  # stands in for your user store


def token_user(request: HttpRequest) -> TokenUser:
    """Who the access token proves. The middleware puts it in the ASGI scope; Django's own
    ``request.user`` belongs to django.contrib.auth, which is not in play here."""
    user: TokenUser = request.scope["user"]
    return user


def django_response(answer: LoginAnswer) -> HttpResponse:
    """The login's answer as a Django response. Django sends cookies only from ``response.cookies``,
    one per name, and a login may carry several ``refresh_token`` cookies (deletions of those a
    sibling host planted, then its own), so each goes in under a key of its own."""
    response = JsonResponse(answer.body, status=answer.status)
    for number, (name, value) in enumerate(answer.headers):
        if name == "set-cookie":
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(value)
            for morsel in cookie.values():
                response.cookies[f"{morsel.key}.{number}"] = morsel
        else:
            response[name] = value
    return response


# The page posting here is same-origin: the library refuses a cookie login from another site's page
# (Origin, Sec-Fetch-Site), which is what Django's CSRF check would add for this view.
@require_POST
async def login(request: HttpRequest) -> HttpResponse:
    form = json.loads(request.body or b"{}")
    if PASSWORDS.get(form.get("email")) != form.get("password"):
        return JsonResponse({"error": "wrong email or password"}, status=401)
    answer = await auth.issue_session(request.scope, subject=form["email"], claims={"name": "Ana"})
    return django_response(answer)


async def notes(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"owner": token_user(request).identity, "notes": ["buy milk"]})


urlpatterns = [path("login", login), path("api/notes", notes)]

# Django's ASGI handler refuses the lifespan, so the library starts on the first request: until
# Redis answers, every request is a 503 and the log says why.
application = auth.wrap(get_asgi_application())
