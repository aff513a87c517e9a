"""starlette-refresh: short-lived JWT access tokens and rotating refresh tokens in a shared Redis.

The public surface is :class:`TokenAuth`; see the README for the HTTP contract.
"""

from .auth import TokenAuth
from .clock import Clock, system_clock
from .errors import (
    AuthError,
    ConfigurationError,
    CrossSiteRequest,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    StarletteRefreshError,
    StoreUnavailable,
)
from .keys import KeyRing, SigningKey
from .observe import NullObserver, Observer
from .refresh_tokens import fingerprint
from .settings import CookieSettings, Settings
from .store import RedisStore, SessionStore
from .user import TokenUser

__all__ = [
    "AuthError",
    "Clock",
    "ConfigurationError",
    "CookieSettings",
    "CrossSiteRequest",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidToken",
    "KeyRing",
    "NullObserver",
    "Observer",
    "RedisStore",
    "SessionStore",
    "Settings",
    "SigningKey",
    "StarletteRefreshError",
    "StoreUnavailable",
    "TokenAuth",
    "TokenUser",
    "fingerprint",
    "system_clock",
]

__version__ = "0.1.0"
