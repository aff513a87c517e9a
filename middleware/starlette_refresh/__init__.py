"""starlette-refresh: short-lived JWT access tokens and rotating refresh tokens in a shared Redis.

Everything an app needs is here: :class:`TokenAuth` and its :class:`Settings`, the errors it raises,
the :class:`TokenUser` that ``request.user`` carries, the :class:`LoginAnswer` that a login view of
another framework copies onto its response, the key types for asymmetric signing, and the protocols
of a custom session store and of an observer. :mod:`starlette_refresh.testing` helps test
an app that uses it; docs/architecture.md maps the modules.
"""

from .auth import TokenAuth
from .errors import (
    AuthError,
    ConfigurationError,
    CrossSiteRequest,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    StarletteRefreshError,
    StoreUnavailable,
    UnsupportedGrantType,
)
from .keys import KeyRing, SigningKey
from .logins import LoginAnswer
from .observe import Observer
from .pages import safe_next
from .settings import Settings
from .store import SessionStore
from .user import TokenUser

__all__ = [
    "AuthError",
    "ConfigurationError",
    "CrossSiteRequest",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidToken",
    "KeyRing",
    "LoginAnswer",
    "Observer",
    "SessionStore",
    "Settings",
    "SigningKey",
    "StarletteRefreshError",
    "StoreUnavailable",
    "TokenAuth",
    "TokenUser",
    "UnsupportedGrantType",
    "safe_next",
]

__version__ = "0.1.0"
