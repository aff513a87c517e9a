"""Every setting of the library, with its default, written once.

:class:`Settings` is the one home: ``TokenAuth(settings=Settings(...))`` takes it whole, and
``TokenAuth(access_ttl=...)`` takes the same names as keywords, checked against it. Every value is
checked when the object is built, so a bad setting stops the app at import time with a message that
says what to change. Each message names the setting as the field is named, so an app that reads its
settings from elsewhere (environment variables, say) can relabel the names and nothing else.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypedDict
from urllib.parse import urlsplit

from .errors import ConfigurationError

SameSite = Literal["strict", "lax", "none"]

DAY = 86_400
#: The most clock skew ``leeway`` may tolerate, in seconds: more means clocks to fix, not to excuse.
MAX_LEEWAY = 300


@dataclass(frozen=True, slots=True)
class Settings:
    """Lifetimes, paths and policies of one app. Times are seconds.

    ``exclude`` and ``trusted_origins`` take any collection of strings and are kept as a tuple and a
    frozenset of normalized origins.
    """

    #: Lifetime of an access token.
    access_ttl: int = 900
    #: Idle lifetime of a session: each refresh moves its end this far ahead.
    refresh_ttl: int = 7 * DAY
    #: Absolute lifetime of a session, however often it is refreshed.
    absolute_ttl: int = 30 * DAY
    #: How long the previous refresh token still answers (two tabs, a lost response).
    refresh_grace: float = 10.0
    #: Clock skew tolerated on token times, at most :data:`MAX_LEEWAY`.
    leeway: int = 10
    #: Where the auth endpoints live; the refresh cookie is scoped to it.
    prefix: str = "/auth"
    #: Path prefixes that need no access token (``/static``; ``/static/`` for below only; ``/$`` exact).
    exclude: Collection[str] = ()
    #: ``iss`` written into access tokens and required from them.
    issuer: str | None = None
    #: ``aud`` written into access tokens and required from them.
    audience: str | None = None
    #: The realm of ``WWW-Authenticate`` challenges.
    realm: str = "api"
    cookie_name: str = "refresh_token"
    #: ``False`` only for plain-http development.
    cookie_secure: bool = True
    cookie_samesite: SameSite = "strict"
    cookie_domain: str | None = None
    #: The refresh cookie's ``Path``; None scopes it to ``prefix``.
    cookie_path: str | None = None
    #: Other origins whose pages may use the refresh cookie (``https://app.example.com``).
    trusted_origins: Collection[str] = frozenset()
    #: Prefix of every Redis key and channel the library writes.
    key_prefix: str = "sr:"
    #: A login over this many live sessions ends the user's oldest ones.
    max_sessions_per_user: int = 100
    #: The longest a store operation may take, waiting for a connection included, before a 503.
    store_timeout: float = 2.0
    store_max_connections: int = 100
    #: ``Retry-After`` of a 503.
    retry_after: int = 2
    #: Replicas that must hold a login, logout or revocation before it is answered (Redis ``WAIT``).
    replica_acks: int = 0
    replica_ack_timeout: float = 0.5
    #: Verified access tokens remembered per process (0 turns the cache off).
    access_cache_size: int = 10_000
    #: The largest request body the auth endpoints read.
    max_body_bytes: int = 16_384
    #: The largest app claims a session may carry, as JSON.
    max_claims_bytes: int = 4_096
    #: Server-rendered pages: logins also set the HttpOnly page cookies that navigations carry, and
    #: the middleware refreshes inline when their access token has run out (docs/guide.md).
    page_mode: bool = False
    #: Where page mode sends a visitor with no session: a path of this app, listed in ``exclude``.
    login_url: str | None = None
    #: The page cookie holding the refresh token; ``<name>_access`` holds the access token.
    page_cookie_name: str = "sr_session"
    # Derived from ``exclude`` once, so that the per-request check is a set lookup and one startswith.
    _excluded_exact: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())
    _excluded_below: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        for name in ("exclude", "trusted_origins"):
            if isinstance(getattr(self, name), str):
                raise ConfigurationError("exclude and trusted_origins take a list of strings, not one string")
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "trusted_origins", _origins(self.trusted_origins))
        for check in _CHECKS:
            check(self)
        exact = {p[:-1] if p.endswith("$") else p for p in self.exclude if not p.endswith("/")}
        below = tuple(p if p.endswith("/") else p + "/" for p in self.exclude if not p.endswith("$"))
        object.__setattr__(self, "_excluded_exact", frozenset(exact))
        object.__setattr__(self, "_excluded_below", below)
        _check_pages(self)  # after the exclusions, which it consults

    @classmethod
    def build(cls, base: Settings | None = None, **options: Any) -> Settings:
        """``base`` (or the defaults) with ``options`` replacing some fields; an unknown name is a
        :class:`ConfigurationError` that suggests the closest one."""
        unknown = sorted(set(options) - SETTING_NAMES)
        if unknown:
            close = difflib.get_close_matches(unknown[0], SETTING_NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the settings are {sorted(SETTING_NAMES)}"
            raise ConfigurationError(f"unknown setting {unknown[0]!r}{hint}")
        return cls(**options) if base is None else dataclasses.replace(base, **options)

    def refresh_cookie_path(self, root_path: str = "") -> str:
        """Where the refresh cookie is sent: ``cookie_path`` (the whole path, as browsers see it),
        else the endpoint prefix behind the request's ``root_path`` (a proxy's or a ``Mount``'s)."""
        return self.cookie_path or root_path + self.prefix

    @property
    def page_access_cookie_name(self) -> str:
        """The page cookie holding the access token."""
        return self.page_cookie_name + "_access"

    def is_excluded(self, path: str) -> bool:
        """True when ``path`` needs no access token.

        ``/static`` matches ``/static`` and everything below it (whole segments only, so not
        ``/staticfoo``); ``/static/`` matches only what is below it; a trailing ``$`` asks for an
        exact match (``/$`` is the root page alone).
        """
        return path in self._excluded_exact or path.startswith(self._excluded_below)


class SettingOptions(TypedDict, total=False):
    """The fields of :class:`Settings` as keyword arguments of ``TokenAuth`` (for type checkers; a
    unit test keeps the two in step)."""

    access_ttl: int
    refresh_ttl: int
    absolute_ttl: int
    refresh_grace: float
    leeway: int
    prefix: str
    exclude: Iterable[str]
    issuer: str | None
    audience: str | None
    realm: str
    cookie_name: str
    cookie_secure: bool
    cookie_samesite: SameSite
    cookie_domain: str | None
    cookie_path: str | None
    trusted_origins: Iterable[str]
    key_prefix: str
    max_sessions_per_user: int
    store_timeout: float
    store_max_connections: int
    retry_after: int
    replica_acks: int
    replica_ack_timeout: float
    access_cache_size: int
    max_body_bytes: int
    max_claims_bytes: int
    page_mode: bool
    login_url: str | None
    page_cookie_name: str


SETTING_NAMES = frozenset(f.name for f in fields(Settings) if f.init)


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


def _origins(values: Iterable[str]) -> frozenset[str]:
    """Normalizes trusted origins, failing loudly on anything that is not an origin."""
    result = set()
    for value in values:
        origin = normalize_origin(value) if isinstance(value, str) else ""
        if not origin:
            raise ConfigurationError(
                f"trusted_origins entries look like 'https://app.example.com', got {value!r}"
            )
        result.add(origin)
    return frozenset(result)


# --------------------------------------------------------------------------- checks, in order

#: The most app claims a session can carry (session_records: a record's length is 16 bits).
MAX_CLAIMS_BYTES = 60_000

#: Settings that must be whole numbers (``int``, never ``bool``): the least value and how to say it.
_WHOLE_NUMBERS: Mapping[str, tuple[int, str]] = {
    "access_ttl": (1, "a whole number > 0"),
    "refresh_ttl": (1, "a whole number > 0"),
    "absolute_ttl": (1, "a whole number > 0"),
    "max_sessions_per_user": (1, "a whole number > 0"),
    "store_max_connections": (1, "a whole number > 0"),
    "retry_after": (1, "a whole number > 0"),
    "max_body_bytes": (1, "a whole number > 0"),
    "max_claims_bytes": (1, "a whole number > 0"),
    "leeway": (0, "a whole number of seconds >= 0"),
    "replica_acks": (0, "a whole number of replicas >= 0"),
    "access_cache_size": (0, "a whole number of tokens >= 0 (0 turns the cache off)"),
}
#: Settings that are a finite number of seconds (``int`` or ``float``).
_SECONDS = ("refresh_grace", "store_timeout", "replica_ack_timeout")


def _check_numbers(s: Settings) -> None:
    for name, (least, what) in _WHOLE_NUMBERS.items():
        value = getattr(s, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigurationError(f"{name} must be {what}, got {value!r}")
    for name in _SECONDS:
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
    if s.max_claims_bytes > MAX_CLAIMS_BYTES:
        raise ConfigurationError(
            f"max_claims_bytes must be at most {MAX_CLAIMS_BYTES} (a stored session record has a 16-bit "
            f"length), got {s.max_claims_bytes}; keep large data in your own store, keyed by the subject"
        )


def _check_lifetimes(s: Settings) -> None:
    if s.leeway > MAX_LEEWAY:
        raise ConfigurationError(f"leeway={s.leeway} is more than 5 minutes; fix the servers' clocks instead")
    if not 0 <= s.refresh_grace < s.refresh_ttl:
        raise ConfigurationError(
            f"refresh_grace must be >= 0 and shorter than refresh_ttl ({s.refresh_ttl}s), "
            f"got {s.refresh_grace!r}"
        )
    if s.access_ttl >= s.refresh_ttl:
        raise ConfigurationError(
            f"access_ttl ({s.access_ttl}s) must be shorter than refresh_ttl ({s.refresh_ttl}s), "
            "or refreshing could never help"
        )
    if s.refresh_ttl > s.absolute_ttl:
        raise ConfigurationError(
            f"refresh_ttl ({s.refresh_ttl}s) must not exceed absolute_ttl ({s.absolute_ttl}s)"
        )


def _check_store(s: Settings) -> None:
    if s.store_timeout <= 0:
        raise ConfigurationError(f"store_timeout must be > 0 seconds, got {s.store_timeout!r}")
    if s.replica_ack_timeout <= 0 or (s.replica_acks and s.replica_ack_timeout >= s.store_timeout):
        raise ConfigurationError(
            f"replica_ack_timeout must be > 0 and shorter than store_timeout ({s.store_timeout}s), "
            f"got {s.replica_ack_timeout!r}"
        )
    if not s.key_prefix or "{" in s.key_prefix or "}" in s.key_prefix:
        raise ConfigurationError(
            f"key_prefix must be non-empty and free of '{{' and '}}' (they are Redis Cluster "
            f"hash tags), got {s.key_prefix!r}"
        )


def _check_paths(s: Settings) -> None:
    if not s.prefix.startswith("/") or s.prefix.endswith("/") or len(s.prefix) < 2:
        raise ConfigurationError(
            f"prefix must look like '/auth' (leading slash, no trailing slash), got {s.prefix!r}"
        )
    for path in s.exclude:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigurationError(f"exclude entries are path prefixes like '/login', got {path!r}")
        if path == "/":
            raise ConfigurationError(
                "exclude '/' would leave every path unprotected; write '/$' to exclude only the root page"
            )


def _check_cookie(s: Settings) -> None:
    if s.cookie_samesite not in ("strict", "lax", "none"):
        raise ConfigurationError(
            f"cookie samesite must be 'strict', 'lax' or 'none', got {s.cookie_samesite!r}"
        )
    if s.cookie_samesite == "none" and not s.cookie_secure:
        raise ConfigurationError("browsers drop SameSite=None cookies that are not Secure")
    if not s.cookie_name or any(c in s.cookie_name for c in " ;,=\t\r\n"):
        raise ConfigurationError(f"cookie name {s.cookie_name!r} is not a valid cookie name")
    # Browsers drop a prefixed cookie that breaks its prefix's rules: refuse it here, loudly, instead
    # of a login that silently sets no cookie.
    if s.cookie_name.startswith(("__Host-", "__Secure-")) and not s.cookie_secure:
        raise ConfigurationError(f"browsers drop a {s.cookie_name!r} cookie unless cookie_secure=True")
    if s.cookie_name.startswith("__Host-") and (s.cookie_path != "/" or s.cookie_domain is not None):
        raise ConfigurationError(
            f"browsers drop a {s.cookie_name!r} cookie unless it has cookie_path='/' and no cookie_domain "
            "(the __Host- prefix, which a sibling subdomain cannot plant, needs the whole host)"
        )


def _check_pages(s: Settings) -> None:
    if not isinstance(s.page_mode, bool):
        raise ConfigurationError(f"page_mode must be True or False, got {s.page_mode!r}")
    name = s.page_cookie_name
    if not isinstance(name, str) or not name or any(c in name for c in " ;,=\t\r\n"):
        raise ConfigurationError(f"page_cookie_name {name!r} is not a valid cookie name")
    if s.cookie_name in (name, s.page_access_cookie_name):
        raise ConfigurationError(f"page_cookie_name must differ from cookie_name ({s.cookie_name!r})")
    if name.startswith(("__Host-", "__Secure-")) and not s.cookie_secure:
        raise ConfigurationError(f"browsers drop a {name!r} cookie unless cookie_secure=True")
    if name.startswith("__Host-") and s.cookie_domain is not None:
        raise ConfigurationError(
            f"browsers drop a {name!r} cookie that has a Domain; leave cookie_domain unset"
        )
    if s.login_url is not None and not is_local_path(s.login_url):
        raise ConfigurationError(
            f"login_url must be a path of this app such as '/login', got {s.login_url!r}"
        )
    if not s.page_mode:
        return
    if s.login_url is None:
        raise ConfigurationError(
            "page_mode needs login_url: the page of this app that visitors without a session are sent "
            "to, such as login_url='/login' (list it in exclude too)"
        )
    login_path = s.login_url.split("?", 1)[0]
    if not s.is_excluded(login_path):
        raise ConfigurationError(
            f"login_url {s.login_url!r} needs no session, so list it in exclude "
            f"(exclude=[{login_path!r}, ...]); otherwise its visitors would be sent to it again and again"
        )


def is_local_path(value: str) -> bool:
    """True for a path of this site (``/account?tab=2``): never another host (``//evil.example``,
    ``https://...``; browsers read a backslash as a slash, so none anywhere) and no control characters."""
    return (
        isinstance(value, str)
        and value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
        and not any(ord(c) < 0x20 or c == "\x7f" for c in value)
    )


_CHECKS: tuple[Callable[[Settings], None], ...] = (
    _check_numbers,
    _check_lifetimes,
    _check_store,
    _check_paths,
    _check_cookie,
)
