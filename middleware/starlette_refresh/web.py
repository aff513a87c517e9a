"""HTTP details shared by the middleware and the endpoints: answers, cookies, origins, bodies."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope

from .errors import AuthError, CrossSiteRequest, InvalidRequest, InvalidToken
from .settings import Settings, normalize_origin

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_NO_STORE_RAW = [
    (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in NO_STORE.items()
]
_QUERY_TOKEN_NAMES = (b"access_token", b"refresh_token")


def json_answer(
    status: int, body: Mapping[str, Any] | None, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON (or empty, for 204) answer that no cache may keep."""
    merged = {**NO_STORE, **(headers or {})}
    if body is None:
        return Response(status_code=status, headers=merged)
    return JSONResponse(dict(body), status_code=status, headers=merged)


class EncodedJSONAnswer(Response):
    """A 200 answer of JSON already encoded, with the headers :func:`json_answer` gives one, in the
    same order: every refresh answers with one, and skipping JSONResponse's encoder and its header
    merging saves a refresh about 4 µs. Cookies are set on it as on any Response."""

    media_type = "application/json"

    def __init__(self, body: bytes) -> None:
        # Not Response.__init__, which would render the body and merge the headers again.
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = [
            *_NO_STORE_RAW,
            (b"content-length", str(len(body)).encode("latin-1")),
            (b"content-type", b"application/json"),
        ]


def error_answer(error: AuthError, headers: Mapping[str, str] | None = None) -> Response:
    """The OAuth-style error body for ``error``."""
    body = {"error": error.error, "error_description": error.description}
    return json_answer(error.status_code, body, headers)


def unavailable_answer(settings: Settings) -> Response:
    """503 for a store outage: the client should retry, and keeps its cookie."""
    body = {
        "error": "temporarily_unavailable",
        "error_description": "the session store is unavailable; retry shortly",
    }
    return json_answer(503, body, {"Retry-After": str(settings.retry_after)})


def bearer_challenge(settings: Settings, error: InvalidToken | None = None) -> str:
    """The ``WWW-Authenticate`` value: bare when no token came (RFC 6750 section 3.1)."""
    if error is None:
        return f'Bearer realm="{settings.realm}"'
    description = error.description.replace("\\", "").replace('"', "'")
    return f'Bearer realm="{settings.realm}", error="invalid_token", error_description="{description}"'


def unauthorized_answer(settings: Settings, error: InvalidToken | None = None) -> Response:
    """401 for a protected resource: no token, or a bad one."""
    headers = {"WWW-Authenticate": bearer_challenge(settings, error)}
    if error is None:
        return json_answer(401, {"error_description": "an access token is required"}, headers)
    return error_answer(error, headers)


def root_path(scope: Scope) -> str:
    """The ASGI ``root_path``: where a proxy or a ``Mount`` put the app ("" at the root)."""
    root: str = scope.get("root_path", "")
    return root


def route_path(scope: Scope) -> str:
    """The path the app routes on: ``scope["path"]`` less the ``root_path`` a proxy or a ``Mount``
    put in front (ASGI paths include it), as Starlette's router does."""
    path: str = scope["path"]
    root = root_path(scope)
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path


def set_refresh_cookie(
    response: Response, settings: Settings, token: str, max_age: int, root_path: str
) -> None:
    """Attaches the refresh cookie: HttpOnly, scoped to the auth endpoints as the browser sees them
    (``root_path`` in front of the prefix, unless ``cookie_path`` gives the whole path)."""
    response.set_cookie(
        settings.cookie_name,
        token,
        max_age=max_age,
        path=settings.refresh_cookie_path(root_path),
        domain=settings.cookie_domain,
        secure=settings.cookie_secure,
        httponly=True,
        samesite=settings.cookie_samesite,
    )


def clear_refresh_cookie(response: Response, settings: Settings, root_path: str) -> None:
    """Tells the browser to drop the refresh cookie (same attributes, Max-Age=0)."""
    set_refresh_cookie(response, settings, "", 0, root_path)


def authorization_values(scope: Scope) -> list[bytes]:
    """The raw values of the request's Authorization headers, read straight from the ASGI scope
    (building a ``Headers`` would decode every header of the request)."""
    return [value for name, value in scope["headers"] if name == b"authorization"]


def bearer_token(values: Sequence[bytes]) -> str | None:
    """The token of an ``Authorization: Bearer`` header, given the :func:`authorization_values`;
    None when there is none.

    The scheme is case-insensitive (RFC 9110 section 11.1). Two Authorization headers, or a Bearer
    header without a token, are malformed requests.
    """
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest("more than one Authorization header")
    scheme, _, token = values[0].decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if not token or " " in token:
        raise InvalidRequest("malformed Authorization header; expected 'Bearer <token>'")
    return token


def count_cookies(headers: Headers, name: str) -> int:
    """How many cookies called ``name`` the request carries, across every Cookie header.

    More than one is ambiguous: a sibling subdomain can plant a second refresh cookie that the
    browser sends alongside ours, and "last one wins" would let it log the user out or swap sessions.
    """
    count = 0
    for header in headers.getlist("cookie"):
        for part in header.split(";"):
            key, sep, _ = part.partition("=")
            if sep and key.strip() == name:
                count += 1
    return count


def query_carries_token(scope: Scope) -> bool:
    """True when the query string names a token; tokens in URLs leak into logs and histories."""
    query: bytes = scope.get("query_string", b"")
    if not query:
        return False
    for pair in query.split(b"&"):
        name = pair.partition(b"=")[0].lower()
        if name in _QUERY_TOKEN_NAMES:
            return True
    return False


def own_origin(scope: Scope, headers: Headers) -> str:
    """This app's origin as the browser sees it: scheme plus the Host header."""
    scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
    host = headers.get("host")
    if not host and scope.get("server"):
        server_host, port = scope["server"]
        host = f"{server_host}:{port}"
    return normalize_origin(f"{scheme}://{host}") if host else ""


def check_same_origin(scope: Scope, headers: Headers, settings: Settings) -> None:
    """Refuses a browser request sent by a page of another origin (one not in ``trusted_origins``).

    ``Origin`` decides when present (browsers always send it on cross-origin POSTs); without it,
    ``Sec-Fetch-Site: cross-site`` does. A request with neither comes from a non-browser client,
    which cannot carry a victim's cookies.
    """
    values = headers.getlist("origin")
    if len(values) > 1:
        raise CrossSiteRequest("more than one Origin header")
    if values:
        if is_own_origin(values[0], scope, headers, settings):
            return
        raise CrossSiteRequest(
            f"requests from origin {values[0][:100]!r} may not use the refresh cookie; "
            "list the origin in trusted_origins if it is yours"
        )
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise CrossSiteRequest("cross-site requests may not use the refresh cookie")


def is_own_origin(value: str, scope: Scope, headers: Headers, settings: Settings) -> bool:
    """Whether an ``Origin`` header's ``value`` names this app: its own origin, one of
    ``trusted_origins``, or ``null`` with ``Sec-Fetch-Site: same-origin`` (a form the app's own page
    posted under ``Referrer-Policy: no-referrer``, whose origin browsers then hide; a sandboxed or
    ``data:`` page also sends ``null``, but its requests are marked ``cross-site``)."""
    origin = normalize_origin(value)
    if origin:
        return origin == own_origin(scope, headers) or origin in settings.trusted_origins
    return value.strip() == "null" and headers.get("sec-fetch-site") == "same-origin"


FORM = "application/x-www-form-urlencoded"
# More fields than any OAuth2 request has; a body with more is refused before it is looked at.
_MAX_FORM_FIELDS = 32
# The form parameters the endpoints read: each may come once (RFC 6749 section 3.2). Any other is
# ignored, repeated or not (section 3.1).
_READ_PARAMETERS = frozenset({"grant_type", "refresh_token", "token", "token_type_hint"})


async def read_parameters(request: Request, limit: int) -> tuple[dict[str, Any], bool]:
    """The request's parameters and whether they came as a form: a JSON object, or an OAuth2 form
    (``application/x-www-form-urlencoded``, RFC 6749 appendix B), ``{}`` when there is no body.
    InvalidRequest for anything else, or for a form giving a parameter we read twice."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise InvalidRequest(
            f"request body larger than {limit} bytes" if declared.isdigit() else "bad Content-Length"
        )
    body = await _read_body(request.receive, limit)
    if not body:  # no body at all; one of only whitespace is malformed JSON, like any other
        return {}, False
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == FORM:
        return _form_fields(body), True
    if media_type != "application/json":
        raise InvalidRequest(f"the request body must be JSON (application/json) or a form ({FORM})")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting: RecursionError
        raise InvalidRequest("the request body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return value, False


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The request body, refused once it passes ``limit`` bytes: what ``Request.stream()`` gives,
    read without its async generator (a refresh reads one body; this is a microsecond cheaper)."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise InvalidRequest(f"request body larger than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


def _form_fields(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, max_num_fields=_MAX_FORM_FIELDS
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("the request body is not a valid form") from exc
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields and name in _READ_PARAMETERS:
            raise InvalidRequest(f"the form gives {name!r} more than once")
        fields.setdefault(name, value)
    return fields
