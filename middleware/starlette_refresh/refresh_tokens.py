"""Refresh tokens: opaque strings the server can re-derive but the store cannot forge.

Format: ``srt1.<user tag>.<session id>.<generation>.<mac>`` where the MAC is an HMAC-SHA256, under a
key derived from the secret, of everything before it. The store keeps only the generation counter,
so nothing in Redis can be replayed as a token, and the grace-window answer ("the same new token
again") is derived rather than stored. Five dot-separated parts never parse as a JWS (three parts),
so a refresh token can never pass as an access token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from .errors import InvalidGrant

TOKEN_PREFIX = "srt1"  # noqa: S105 - a format marker, not a secret
MAX_REFRESH_TOKEN_CHARS = 256
MAX_GENERATION = 10**15
# The five dot-separated parts: prefix, user tag, session id, generation, MAC. One pattern rather than
# a split and four (none of the parts can hold a dot, so it accepts exactly the same strings).
_TOKEN = re.compile(
    re.escape(TOKEN_PREFIX)
    + r"\.([0-9a-f]{20})\.([A-Za-z0-9_-]{22})\.(0|[1-9][0-9]{0,15})\.([A-Za-z0-9_-]{43})"
)


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """What a verified refresh token names: a session (token family) and its generation."""

    user_tag: str
    session_id: str
    generation: int


class RefreshTokenCodec:
    """Mints and verifies refresh tokens, and derives per-user tags, under one MAC key."""

    def __init__(self, secret: bytes) -> None:
        # Domain separation: the access-token HMAC key is the secret as given, this one is derived.
        self._mac_key = hmac.new(secret, b"starlette-refresh/refresh-token/v1", hashlib.sha256).digest()
        # Keyed once and copied for each MAC: a refresh computes two (the presented token, the new one).
        self._keyed = hmac.new(self._mac_key, digestmod=hashlib.sha256)

    def user_tag(self, subject: str) -> str:
        """A keyed, non-reversible tag of the subject; it is the Redis Cluster hash tag of its keys."""
        digest = hmac.new(self._mac_key, b"user\x00" + subject.encode(), hashlib.sha256).digest()
        return digest[:10].hex()

    @staticmethod
    def new_session_id() -> str:
        """128 random bits, URL-safe."""
        return secrets.token_urlsafe(16)

    def mint(self, user_tag: str, session_id: str, generation: int) -> str:
        """The one token of ``session_id`` at ``generation``; the same inputs give the same token."""
        body = f"{TOKEN_PREFIX}.{user_tag}.{session_id}.{generation}"
        return f"{body}.{self._mac(body)}"

    def parse(self, token: str) -> RefreshToken:
        """Verifies shape and MAC; raises :class:`InvalidGrant` for anything we did not mint."""
        if not token or len(token) > MAX_REFRESH_TOKEN_CHARS:
            raise InvalidGrant("refresh token is invalid")
        matched = _TOKEN.fullmatch(token)
        if matched is None:
            raise InvalidGrant("refresh token is invalid")
        tag, session_id, generation, mac = matched.groups()
        expected = self._mac(token[: -len(mac) - 1])
        if not hmac.compare_digest(expected, mac):
            raise InvalidGrant("refresh token is invalid")
        value = int(generation)
        if value > MAX_GENERATION:
            raise InvalidGrant("refresh token is invalid")
        return RefreshToken(user_tag=tag, session_id=session_id, generation=value)

    def _mac(self, body: str) -> str:
        mac = self._keyed.copy()
        mac.update(body.encode())
        return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def looks_like_refresh_token(token: str) -> bool:
    """True for a string in the refresh-token format (MAC unchecked): never true of a JWT, whose
    first segment is base64url of a JSON object."""
    return token.startswith(TOKEN_PREFIX + ".")


def fingerprint(token: str | bytes) -> str:
    """A short, non-reversible tag of a token for log lines; never log the token itself."""
    raw = token.encode("utf-8", "surrogateescape") if isinstance(token, str) else token
    return hashlib.sha256(raw).hexdigest()[:12]
