"""Page mode: requests authenticated by the page cookies, refreshed inline, and turned away kindly.

A navigation carries no ``Authorization`` header, only cookies. When the access cookie holds a
valid token, the request costs what a bearer request costs (a cached verification, no Redis). When
it has run out (or the browser dropped it) while the session lives, the refresh cookie's token is
rotated right here, one Redis round trip, the app sees ``request.user`` as usual, and the response
carries the new cookies.

Parallel requests never lose. A page, its htmx fragments and other tabs arrive together with the
same expired cookies. In one process, those that arrive while a rotation is under way share it (the
first starts it, the others wait for its answer and carry byte-identical cookies); later ones, and
those on other processes, get the store's derived grace answer: the same refresh token, an access
token of their own. The store rotates once either way. A
refusal never clears a cookie, because it may answer a request sent before a newer login set new
ones; logout clears them.

Unsafe methods need proof that the request comes from this site: ``Origin`` equal to this app's
origin (or a trusted one), else ``Sec-Fetch-Site: same-origin``; a request with neither is refused
too. ``SameSite=Lax`` alone would let a sibling subdomain's form through. htmx's ``HX-Request`` header
is no proof (it only selects the ``HX-Redirect`` answer), but the browser adds ``Origin`` to htmx's
unsafe requests as to any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import AuthError, CrossSiteRequest, InvalidGrant, StoreUnavailable
from .observe import log_fields
from .page_cookies import page_cookie_headers, request_cookies
from .planted_cookies import delete_planted_page_cookies
from .sessions import IssuedSession, SessionService
from .settings import Settings, is_local_path, normalize_origin
from .user import Principal
from .web import (
    error_answer,
    is_own_origin,
    own_origin,
    root_path,
    unauthorized_answer,
    unavailable_answer,
)

logger = logging.getLogger("starlette_refresh.pages")

#: Verifies an access token (the key is what carried it, for the verification cache).
Verify = Callable[[bytes, str], Principal]
#: The principal of a token this process has just minted, from the claims it signed (and cached).
Adopt = Callable[[bytes, Mapping[str, Any]], Principal]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Responses that set credentials are kept by no cache, shared or private.
_CREDENTIALS_CACHE_CONTROL = b"private, no-store"


class PageGate:
    """Authenticates requests by the page cookies and answers those it cannot let in (see the
    module's docstring). Built by the middleware when ``page_mode`` is on."""

    def __init__(self, settings: Settings, service: SessionService, verify: Verify, adopt: Adopt) -> None:
        self.settings = settings
        self._service = service
        self._verify = verify
        self._adopt = adopt
        self._names = (settings.page_cookie_name, settings.page_access_cookie_name)
        self._rotations: dict[str, asyncio.Task[IssuedSession]] = {}

    async def __call__(
        self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, *, excluded: bool
    ) -> bool:
        """Answers an HTTP request that has no bearer token: through ``app`` when its page cookies
        prove a session (rotating them first when their access token has run out), else with a
        refusal. Returns False, having sent nothing, for a request to an ``excluded`` path that
        proves no session without a rotation: the caller lets it in anonymously."""
        cookies = request_cookies(scope, self._names)
        refresh_values, access_values = cookies[self._names[0]], cookies[self._names[1]]
        if len(refresh_values) > 1 or len(access_values) > 1:
            if excluded:
                return False
            await self._refuse(scope, receive, send, planted=True)
            return True
        principal = self._verified(access_values[0]) if access_values else None
        if principal is None and excluded:
            return False  # a public page sees a logged-in user for free, but never pays for a refresh
        refresh = refresh_values[0] if refresh_values and refresh_values[0] else None
        if principal is None and refresh is None:
            await self._refuse(scope, receive, send)
            return True
        if (
            scope["method"] not in SAFE_METHODS
            and (refusal := foreign_request(scope, self.settings)) is not None
        ):
            # Checked before any rotation: new cookies must never be minted into a refused answer.
            await error_answer(refusal)(scope, receive, send)
            return True
        set_cookies: list[tuple[bytes, bytes]] = []
        if principal is None:
            assert refresh is not None  # a request with neither was refused above
            try:
                issued = await self.rotate(refresh)
            except InvalidGrant:
                await self._refuse(scope, receive, send)
                return True
            except StoreUnavailable as exc:
                path = scope["path"]
                logger.warning(
                    "%s %s answered 503 (inline refresh): %s",
                    scope["method"],
                    path,
                    exc,
                    extra=log_fields("unavailable", outcome="unavailable", path=path),
                )
                await _outage_answer(scope, self.settings)(scope, receive, send)
                return True
            principal = self._adopt(issued.access_token.encode(), issued.access_claims)
            set_cookies = page_cookie_headers(self.settings, issued, root_path(scope))
        scope["user"], scope["auth"] = principal.user, principal.credentials()
        await _serve(app, scope, receive, send, set_cookies)
        return True

    async def rotate(self, refresh_token: str) -> IssuedSession:
        """Rotates ``refresh_token`` once for every request of this process that presents it
        while a rotation of it is under way; each gets the same answer (or the same error)."""
        loop = asyncio.get_running_loop()
        task = self._rotations.get(refresh_token)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(self._service.refresh(refresh_token))
            self._rotations[refresh_token] = task
            task.add_done_callback(lambda done: self._forget(refresh_token, done))
        # Shielded: a client that hangs up must not cancel the rotation the others are waiting for.
        return await asyncio.shield(task)

    def _forget(self, refresh_token: str, done: asyncio.Task[IssuedSession]) -> None:
        if self._rotations.get(refresh_token) is done:
            del self._rotations[refresh_token]
        if not done.cancelled():
            done.exception()  # retrieved: an error every waiter gave up on is not "never retrieved"

    def _verified(self, access_token: str) -> Principal | None:
        if not access_token:
            return None
        try:
            return self._verify(access_token.encode(), access_token)
        except AuthError:
            return None  # expired, revoked or garbage: the refresh cookie decides

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, *, planted: bool = False) -> None:
        response = refusal_answer(scope, self.settings, planted=planted)
        if planted:
            # The browser sent them with this request, so their paths lead here: all deletable now,
            # and the next request carries only the app's own (or none, and logs in afresh).
            host = Headers(scope=scope).get("host", "")
            delete_planted_page_cookies(response, self.settings, host, scope["path"])
        await response(scope, receive, send)


def refusal_answer(scope: Scope, settings: Settings, *, planted: bool = False) -> Response:
    """The answer to a request to a protected path with no session: a ``303`` to ``login_url``
    with a ``next`` back here for a page navigation, ``HX-Redirect`` there for an htmx request, the
    usual ``401`` for anything else (an API call)."""
    headers = Headers(scope=scope)
    login = login_location(scope, settings, headers)
    if headers.get("hx-request") == "true":
        response = unauthorized_answer(settings)
        response.headers["HX-Redirect"] = login
    elif scope["method"] in ("GET", "HEAD") and is_navigation(headers):
        response = Response(status_code=303, headers={"Location": login, "Cache-Control": "no-store"})
    else:
        response = unauthorized_answer(settings)
    if planted:
        logger.warning(
            "page request refused: more than one page cookie (set by another host?)",
            extra=log_fields("page_refused", outcome="planted_cookies"),
        )
    return response


def login_location(scope: Scope, settings: Settings, headers: Headers) -> str:
    """``login_url`` (behind the request's ``root_path``) with ``next`` naming the page to return
    to: the request's own path, or for an htmx request the page it was sent from
    (``HX-Current-URL``) when that page is this site's."""
    assert settings.login_url is not None  # page mode requires it
    prefix = root_path(scope)
    path: str = scope["path"]  # ASGI paths include the root_path; some servers leave it out
    here = path if path.startswith(prefix) else prefix + path
    query = scope.get("query_string", b"").decode("latin-1")
    target = here + ("?" + query if query else "")
    current = headers.get("hx-current-url")
    if current is not None:
        origin, current_path = _split_origin(current)
        if origin == own_origin(scope, headers) and is_local_path(current_path):
            target = current_path
    separator = "&" if "?" in settings.login_url else "?"
    location = prefix + settings.login_url
    if not is_local_path(target):
        return location
    return f"{location}{separator}next={quote(target, safe='/')}"


def safe_next(value: str | None, default: str = "/") -> str:
    """``value`` when it is a path of this site (what a login page may redirect to after the login),
    else ``default``. Never another host: ``//evil.example``, ``/\\evil.example`` and
    ``https://evil.example`` all give ``default``."""
    return value if value is not None and is_local_path(value) else default


def _split_origin(url: str) -> tuple[str, str]:
    """An absolute URL's normalized origin and the path (with query) after it; ``("", "")`` when
    it is not absolute."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", ""
    host, slash, path = rest.partition("/")
    return normalize_origin(f"{scheme}://{host}"), slash + path


def is_navigation(headers: Headers) -> bool:
    """A browser loading a document: ``Sec-Fetch-Mode: navigate`` where browsers send it (secure
    contexts), else an ``Accept`` that asks for HTML first among what it lists."""
    mode = headers.get("sec-fetch-mode")
    if mode is not None:
        return mode == "navigate"
    return "text/html" in headers.get("accept", "")


def foreign_request(scope: Scope, settings: Settings) -> CrossSiteRequest | None:
    """Why an unsafe, cookie-authenticated request may not pass; None when it comes from this site."""
    headers = Headers(scope=scope)
    origins = headers.getlist("origin")
    if len(origins) == 1:
        if is_own_origin(origins[0], scope, headers, settings):
            return None
        return CrossSiteRequest(f"a page of origin {origins[0][:100]!r} may not send this with your cookies")
    if len(origins) > 1:
        return CrossSiteRequest("more than one Origin header")
    if headers.get("sec-fetch-site") == "same-origin":
        return None
    return CrossSiteRequest(
        "a request that changes something must come from a page of this site (no Origin header)"
    )


def _outage_answer(scope: Scope, settings: Settings) -> Response:
    """503 that keeps the cookies: an HTML page that tries again by itself for a navigation, JSON
    otherwise."""
    headers = Headers(scope=scope)
    if not (scope["method"] in ("GET", "HEAD") and is_navigation(headers)):
        return unavailable_answer(settings)
    retry = settings.retry_after
    body = (
        "<!doctype html><html><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{retry}"><title>Back in a moment</title></head>'
        "<body><p>The service is briefly unavailable. You are still logged in; this page tries again "
        f"in {retry} seconds.</p></body></html>"
    )
    return HTMLResponse(
        body, status_code=503, headers={"Retry-After": str(retry), "Cache-Control": "no-store"}
    )


async def _serve(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, set_cookies: list[tuple[bytes, bytes]]
) -> None:
    """Runs ``app``, adding to its response the new cookies (if any) and the cache headers of a
    cookie-authenticated answer. If the app fails before it answers, the new cookies still go out
    on a 500: the rotation has happened, and a response without them would lose the session."""
    started = False

    async def send_with_cookies(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
            message = {**message, "headers": _page_headers(message.get("headers", []), set_cookies)}
        await send(message)

    try:
        await app(scope, receive, send_with_cookies)
    except Exception:
        if not started and set_cookies:
            await send_with_cookies({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b"Internal Server Error"})
        raise


def _page_headers(
    headers: list[tuple[bytes, bytes]], set_cookies: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """A cookie-authenticated response varies by cookie and is no shared cache's to keep
    (``Cache-Control: private`` unless the app said otherwise); one that sets credentials is kept
    by no cache at all."""
    out = list(headers)
    names = {name.lower() for name, _ in out}
    if not any(name.lower() == b"vary" and b"cookie" in value.lower() for name, value in out):
        out.append((b"vary", b"Cookie"))
    if set_cookies:
        out = [(name, value) for name, value in out if name.lower() != b"cache-control"]
        out.append((b"cache-control", _CREDENTIALS_CACHE_CONTROL))
        out.extend(set_cookies)
    elif b"cache-control" not in names:
        out.append((b"cache-control", b"private"))
    return out
