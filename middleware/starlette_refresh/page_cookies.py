"""The two cookies of page mode: what they hold, their attributes, and reading them from a request.

``<page_cookie_name>`` holds the refresh token and ``<page_cookie_name>_access`` the access token.
Both are ``HttpOnly`` (no script reads them), ``Secure`` unless ``cookie_secure=False``, ``Path=/``
(every page of the host carries them) and ``SameSite=Lax``: a link followed from another site (an
email, a search result) is a top-level navigation and carries them, so it lands logged in, while a
form, fetch or frame of another site does not. ``Strict`` would log out every such link; ``None``
would send them with other sites' subrequests. Unsafe methods are checked again on the server
(:mod:`starlette_refresh.pages`), since a sibling subdomain counts as the same site.

The access cookie expires with its token, the refresh cookie with the session's idle lifetime.
Every response that sets one sets both, and the refresh cookie of the auth endpoints (``/auth``,
``SameSite=Strict``) beside them with the same refresh token, so that the JS refresh manager and
every client of the endpoints work as without page mode.
"""

from __future__ import annotations

import re
from typing import Final, Literal, Protocol

from starlette.responses import Response
from starlette.types import Scope

from .settings import Settings

#: What browsers keep of one cookie, name and attributes included (RFC 6265 section 6.1's least).
MAX_COOKIE_BYTES = 4_096

_PAGE_PATH = "/"
_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_.-]*")


class PageTokens(Protocol):
    """What the cookies hold: a login's or a refresh's tokens and their lifetimes (seconds)."""

    @property
    def access_token(self) -> str: ...
    @property
    def expires_in(self) -> int: ...
    @property
    def refresh_token(self) -> str: ...
    @property
    def refresh_expires_in(self) -> int: ...


_SAMESITE: Final[Literal["lax"]] = "lax"


def set_page_cookies(response: Response, settings: Settings, tokens: PageTokens) -> None:
    """Adds both page cookies for ``tokens`` (a login's or a refresh's) to ``response``."""
    for value in _page_cookies(settings, tokens):
        response.headers.append("set-cookie", value.decode("latin-1"))


def clear_page_cookies(response: Response, settings: Settings) -> None:
    """Tells the browser to drop both page cookies."""
    for name in (settings.page_cookie_name, settings.page_access_cookie_name):
        response.headers.append("set-cookie", _cookie(settings, name, "", 0, _PAGE_PATH, _SAMESITE).decode())


def page_cookie_headers(settings: Settings, tokens: PageTokens, root_path: str) -> list[tuple[bytes, bytes]]:
    """The ``Set-Cookie`` headers of a rotation, raw, for an ASGI response start: the page cookies and
    the refresh cookie of the auth endpoints (``root_path`` in front of its path), which a login in
    page mode sets too, so that both keep holding the same refresh token."""
    refresh = _cookie(
        settings,
        settings.cookie_name,
        tokens.refresh_token,
        tokens.refresh_expires_in,
        settings.refresh_cookie_path(root_path),
        settings.cookie_samesite,
    )
    return [(b"set-cookie", value) for value in (refresh, *_page_cookies(settings, tokens))]


def _page_cookies(settings: Settings, tokens: PageTokens) -> tuple[bytes, bytes]:
    refresh = _cookie(
        settings,
        settings.page_cookie_name,
        tokens.refresh_token,
        tokens.refresh_expires_in,
        _PAGE_PATH,
        _SAMESITE,
    )
    access = _cookie(
        settings,
        settings.page_access_cookie_name,
        tokens.access_token,
        tokens.expires_in,
        _PAGE_PATH,
        _SAMESITE,
    )
    # A browser silently drops a cookie it cannot keep, which would log the user out at the next
    # page: refuse it here instead, where the cause can be named.
    if len(access) > MAX_COOKIE_BYTES:
        raise ValueError(
            f"the page cookie would be {len(access)} bytes, more than the {MAX_COOKIE_BYTES} browsers keep: "
            "carry fewer or smaller claims in the session (max_claims_bytes)"
        )
    return refresh, access


def _cookie(settings: Settings, name: str, value: str, max_age: int, path: str, samesite: str) -> bytes:
    """One ``Set-Cookie`` value, byte for byte what Starlette's ``Response.set_cookie`` writes for
    these attributes (a unit test compares them), at a fraction of ``http.cookies``' cost: tokens
    are base64url and dots, which need no quoting, and anything else is refused."""
    if not _COOKIE_VALUE.fullmatch(value):
        raise ValueError(f"cookie {name!r}: a value of base64url characters and dots was expected")
    domain = f"; Domain={settings.cookie_domain}" if settings.cookie_domain else ""
    secure = "; Secure" if settings.cookie_secure else ""
    cookie = f"{name}={value}{domain}; HttpOnly; Max-Age={max_age}; Path={path}; SameSite={samesite}{secure}"
    return cookie.encode("latin-1")


def request_cookies(scope: Scope, names: tuple[str, ...]) -> dict[str, list[str]]:
    """The values the request carries for each of ``names`` (all of them, in order: more than one
    means some were set by another host), read straight from the scope's ``Cookie`` headers."""
    found: dict[str, list[str]] = {name: [] for name in names}
    for header, value in scope["headers"]:
        if header != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key, sep, cookie = part.partition("=")
            key = key.strip()
            if sep and key in found:
                found[key].append(cookie.strip())
    return found
