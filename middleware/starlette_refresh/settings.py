"""Validated, immutable settings.

Every value is checked once, when :class:`~starlette_refresh.TokenAuth` is built, so a bad setting
stops the app at import time with a message that says what to change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from .errors import ConfigurationError

SameSite = Literal["strict", "lax", "none"]

DAY = 86_400
#: The most clock skew ``leeway`` may tolerate, in seconds: more means clocks to fix, not to excuse.
MAX_LEEWAY = 300


@dataclass(frozen=True, slots=True)
class CookieSettings:
    """How the refresh token travels as a cookie.

    ``path`` defaults to the endpoint prefix so the cookie is only ever sent to the auth endpoints.
    Set ``secure=False`` only for plain-http development.
    """

    name: str = "refresh_token"
    secure: bool = True
    samesite: SameSite = "strict"
    domain: str | None = None
    path: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """Lifetimes, paths and policies. Times are seconds."""

    access_ttl: int = 900
    refresh_ttl: int = 7 * DAY
    absolute_ttl: int = 30 * DAY
    refresh_grace: float = 10.0
    leeway: int = 10
    prefix: str = "/auth"
    exclude: tuple[str, ...] = ()
    issuer: str | None = None
    audience: str | None = None
    realm: str = "api"
    cookie: CookieSettings = field(default_factory=CookieSettings)
    trusted_origins: frozenset[str] = frozenset()
    key_prefix: str = "sr:"
    max_sessions_per_user: int = 100
    store_timeout: float = 2.0
    store_max_connections: int = 100
    retry_after: int = 2
    replica_acks: int = 0
    replica_ack_timeout: float = 0.5
    access_cache_size: int = 10_000
    max_body_bytes: int = 16_384
    max_claims_bytes: int = 4_096
    # Derived from ``exclude`` once, so that the per-request check is a set lookup and one startswith.
    _excluded_exact: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())
    _excluded_below: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        _positive_int("access_ttl", self.access_ttl)
        _positive_int("refresh_ttl", self.refresh_ttl)
        _positive_int("absolute_ttl", self.absolute_ttl)
        _positive_int("max_sessions_per_user", self.max_sessions_per_user)
        _positive_int("store_max_connections", self.store_max_connections)
        _positive_int("retry_after", self.retry_after)
        _positive_int("max_body_bytes", self.max_body_bytes)
        _positive_int("max_claims_bytes", self.max_claims_bytes)
        if not isinstance(self.leeway, int) or isinstance(self.leeway, bool) or self.leeway < 0:
            raise ConfigurationError(f"leeway must be a whole number of seconds >= 0, got {self.leeway!r}")
        if self.leeway > MAX_LEEWAY:
            raise ConfigurationError(
                f"leeway={self.leeway} is more than 5 minutes; fix the servers' clocks instead"
            )
        _finite_number("refresh_grace", self.refresh_grace)
        _finite_number("store_timeout", self.store_timeout)
        if not 0 <= self.refresh_grace < self.refresh_ttl:
            raise ConfigurationError(
                f"refresh_grace must be >= 0 and shorter than refresh_ttl, got {self.refresh_grace!r}"
            )
        if self.access_ttl >= self.refresh_ttl:
            raise ConfigurationError(
                f"access_ttl ({self.access_ttl}s) must be shorter than refresh_ttl "
                f"({self.refresh_ttl}s), or refreshing could never help"
            )
        if self.refresh_ttl > self.absolute_ttl:
            raise ConfigurationError(
                f"refresh_ttl ({self.refresh_ttl}s) must not exceed absolute_ttl ({self.absolute_ttl}s)"
            )
        if self.store_timeout <= 0:
            raise ConfigurationError(f"store_timeout must be > 0 seconds, got {self.store_timeout!r}")
        acks = self.replica_acks
        if not isinstance(acks, int) or isinstance(acks, bool) or acks < 0:
            raise ConfigurationError(
                f"replica_acks must be a whole number of replicas >= 0, got {self.replica_acks!r}"
            )
        cache = self.access_cache_size
        if not isinstance(cache, int) or isinstance(cache, bool) or cache < 0:
            raise ConfigurationError(
                f"access_cache_size must be a whole number of tokens >= 0 (0 turns the cache off), "
                f"got {cache!r}"
            )
        _finite_number("replica_ack_timeout", self.replica_ack_timeout)
        if self.replica_ack_timeout <= 0 or (acks and self.replica_ack_timeout >= self.store_timeout):
            raise ConfigurationError(
                f"replica_ack_timeout must be > 0 and shorter than store_timeout ({self.store_timeout}s), "
                f"got {self.replica_ack_timeout!r}"
            )
        if not self.prefix.startswith("/") or self.prefix.endswith("/") or len(self.prefix) < 2:
            raise ConfigurationError(
                f"prefix must look like '/auth' (leading slash, no trailing slash), got {self.prefix!r}"
            )
        for path in self.exclude:
            if not path.startswith("/"):
                raise ConfigurationError(f"exclude entries are path prefixes like '/login', got {path!r}")
            if path == "/":
                raise ConfigurationError(
                    "exclude '/' would leave every path unprotected; write '/$' to exclude only the root page"
                )
        for origin in self.trusted_origins:
            if normalize_origin(origin) != origin:
                raise ConfigurationError(
                    f"trusted_origins entries look like 'https://app.example.com' "
                    f"(scheme, host, optional port, nothing else), got {origin!r}"
                )
        if self.cookie.samesite not in ("strict", "lax", "none"):
            raise ConfigurationError(
                f"cookie samesite must be 'strict', 'lax' or 'none', got {self.cookie.samesite!r}"
            )
        if self.cookie.samesite == "none" and not self.cookie.secure:
            raise ConfigurationError("browsers drop SameSite=None cookies that are not Secure")
        if not self.cookie.name or any(c in self.cookie.name for c in " ;,=\t\r\n"):
            raise ConfigurationError(f"cookie name {self.cookie.name!r} is not a valid cookie name")
        exact = {p[:-1] if p.endswith("$") else p for p in self.exclude if not p.endswith("/")}
        below = tuple(p if p.endswith("/") else p + "/" for p in self.exclude if not p.endswith("$"))
        object.__setattr__(self, "_excluded_exact", frozenset(exact))
        object.__setattr__(self, "_excluded_below", below)
        if not self.key_prefix or "{" in self.key_prefix or "}" in self.key_prefix:
            raise ConfigurationError(
                f"key_prefix must be non-empty and free of '{{' and '}}' (they are Redis Cluster "
                f"hash tags), got {self.key_prefix!r}"
            )

    @property
    def cookie_path(self) -> str:
        """Where the refresh cookie is sent: the endpoint prefix unless configured otherwise."""
        return self.cookie.path or self.prefix

    def is_excluded(self, path: str) -> bool:
        """True when ``path`` needs no access token.

        ``/static`` matches ``/static`` and everything below it (whole segments only, so not
        ``/staticfoo``); ``/static/`` matches only what is below it; a trailing ``$`` asks for an
        exact match (``/$`` is the root page alone).
        """
        return path in self._excluded_exact or path.startswith(self._excluded_below)


def normalize_origin(value: str) -> str:
    """``scheme://host[:port]`` in lower case, default ports dropped; '' when not an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return ""
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    suffix = f":{port}" if port is not None and port != default else ""
    return f"{parts.scheme}://{host}{suffix}"


def origins(values: Iterable[str]) -> frozenset[str]:
    """Normalizes a list of trusted origins, failing loudly on anything that is not an origin."""
    result = set()
    for value in values:
        origin = normalize_origin(value)
        if not origin:
            raise ConfigurationError(
                f"trusted_origins entries look like 'https://app.example.com', got {value!r}"
            )
        result.add(origin)
    return frozenset(result)


def _finite_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigurationError(f"{name} must be a whole number > 0, got {value!r}")
