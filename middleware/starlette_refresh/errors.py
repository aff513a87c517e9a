"""Exceptions raised by starlette-refresh.

Configuration problems raise :class:`ConfigurationError` when the app is built or started, never
later. Request-time failures are :class:`AuthError` subclasses carrying the HTTP answer they map to.
"""

from __future__ import annotations


class StarletteRefreshError(Exception):
    """Base class of every exception this library raises."""


class ConfigurationError(StarletteRefreshError):
    """A setting, key or store is missing or wrong; raised at construction or startup."""


class StoreUnavailable(StarletteRefreshError):
    """The session store could not answer (down, timing out, loading, read-only, busy).

    Never means "session expired": the client should retry later.
    """


class AuthError(StarletteRefreshError):
    """An OAuth-style error answer: ``status`` plus the ``error`` code and a description."""

    status_code: int = 400
    error: str = "invalid_request"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class InvalidRequest(AuthError):
    """The request is malformed (bad body, missing token, token in the query string...)."""

    status_code = 400
    error = "invalid_request"


class InvalidGrant(AuthError):
    """The refresh token is unknown, expired, revoked or reused: 400, as RFC 6749 section 5.2 says
    (401 is for a client that failed to authenticate itself, which public clients never do)."""

    status_code = 400
    error = "invalid_grant"


class UnsupportedGrantType(AuthError):
    """A token request with a ``grant_type`` other than ``refresh_token`` (RFC 6749 section 5.2)."""

    status_code = 400
    error = "unsupported_grant_type"


class InvalidToken(AuthError):
    """The access token is malformed, badly signed, expired or revoked."""

    status_code = 401
    error = "invalid_token"


class CrossSiteRequest(AuthError):
    """A cookie-borne request came from a page on another origin."""

    status_code = 403
    error = "cross_site_request"
