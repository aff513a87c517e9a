"""The authenticated user that ``request.user`` carries, per Starlette's conventions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from starlette.authentication import AuthCredentials, BaseUser


class TokenUser(BaseUser):
    """A user proven by a valid access token. ``claims`` are the token's verified claims (read-only)."""

    def __init__(self, claims: Mapping[str, Any]) -> None:
        # The verified claims are shared with the token cache, never copied per request: read-only.
        self.claims: Mapping[str, Any] = (
            claims if isinstance(claims, MappingProxyType) else MappingProxyType(dict(claims))
        )

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def identity(self) -> str:
        """The token's ``sub``."""
        return str(self.claims["sub"])

    @property
    def display_name(self) -> str:
        """The ``name`` or ``email`` claim when the app set one, else the subject."""
        for claim in ("name", "email"):
            value = self.claims.get(claim)
            if isinstance(value, str) and value:
                return value
        return self.identity

    @property
    def session_id(self) -> str:
        """The ``sid`` claim: the session (refresh-token family) this token belongs to."""
        return str(self.claims["sid"])

    def __repr__(self) -> str:
        return f"TokenUser(identity={self.identity!r}, session_id={self.session_id!r})"


def scopes_of(claims: Mapping[str, Any]) -> tuple[str, ...]:
    """``authenticated`` plus the token's scopes (``scope`` space-separated, or a ``scp`` list)."""
    scopes = ["authenticated"]
    scope = claims.get("scope")
    if isinstance(scope, str):
        scopes.extend(s for s in scope.split() if s)
    scp = claims.get("scp")
    if isinstance(scp, list):
        scopes.extend(s for s in scp if isinstance(s, str))
    return tuple(scopes)


def credentials_for(claims: Mapping[str, Any]) -> AuthCredentials:
    """Starlette's credentials for verified ``claims``: :func:`scopes_of` them."""
    return AuthCredentials(scopes_of(claims))


@dataclass(frozen=True, slots=True)
class Principal:
    """What a verified access token stands for. The user (its claims are read-only) is shared by
    the requests that carry the same token; each request gets its own credentials object."""

    user: TokenUser
    scopes: tuple[str, ...]
    session_id: str

    @classmethod
    def of(cls, claims: Mapping[str, Any]) -> Principal:
        """The principal of verified ``claims``."""
        return cls(TokenUser(claims), scopes_of(claims), claims["sid"])

    def credentials(self) -> AuthCredentials:
        """A fresh credentials object for one request."""
        return AuthCredentials(self.scopes)
