"""Access tokens: short-lived JWTs (RFC 9068 profile) minted and verified without the store.

Signatures go through PyJWT's JWS layer; every claim check is ours so that time comes from the
injected clock and each failure has a precise ``error_description``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jwt
from jwt.api_jws import PyJWS
from jwt.utils import base64url_decode

from .clock import Clock
from .errors import InvalidToken
from .keys import KeyRing
from .settings import Settings

ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
RESERVED_CLAIMS = frozenset({"sub", "sid", "jti", "iat", "exp", "nbf", "iss", "aud"})
MAX_ACCESS_TOKEN_BYTES = 8_192
_MAX_TIMESTAMP = 2**53


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    """A freshly signed access token and its lifetime."""

    token: str
    expires_in: int
    claims: Mapping[str, Any]


class AccessTokenCodec:
    """Mints and verifies access tokens with one key ring, one clock and one set of rules."""

    def __init__(
        self, keys: KeyRing, settings: Settings, clock: Clock, is_revoked: Callable[[str], bool] | None = None
    ) -> None:
        self._keys = keys
        self._is_revoked: Callable[[str], bool] = is_revoked or _never_revoked
        self._settings = settings
        self._clock = clock
        self._jws = PyJWS()
        signer = keys.signing_key
        self._header: dict[str, Any] = {"typ": "at+jwt"}
        if signer.kid is not None:
            self._header["kid"] = signer.kid
        self._hmac = (
            _HmacSigner(signer.private, signer.algorithm, self._header) if signer.algorithm in _HMAC else None
        )

    @property
    def key_ring(self) -> KeyRing:
        """The keys this codec signs and verifies with (their public halves are published as JWKs)."""
        return self._keys

    def issue(
        self,
        subject: str,
        session_id: str,
        claims: Mapping[str, Any] | None = None,
        *,
        issued_at: float | None = None,
    ) -> IssuedAccessToken:
        """Signs a token for ``subject`` in session ``session_id`` carrying the app's ``claims``.

        ``issued_at`` (default: now) is the moment its lifetime counts from: a refresh passes the time
        its rotation was decided at, so that a logout landing after the rotation always outlasts it.
        """
        now = int(self._clock() if issued_at is None else issued_at)
        payload: dict[str, Any] = dict(claims or {})
        payload.update(
            sub=subject,
            sid=session_id,
            jti=secrets.token_urlsafe(12),
            iat=now,
            exp=now + self._settings.access_ttl,
        )
        if self._settings.issuer is not None:
            payload["iss"] = self._settings.issuer
        if self._settings.audience is not None:
            payload["aud"] = self._settings.audience
        body = _COMPACT_JSON.encode(payload).encode()
        if self._hmac is not None:
            token = self._hmac.sign(body)
        else:
            signer = self._keys.signing_key
            token = self._jws.encode(body, signer.private, algorithm=signer.algorithm, headers=self._header)
        return IssuedAccessToken(token=token, expires_in=self._settings.access_ttl, claims=payload)

    def verify(self, token: str) -> Mapping[str, Any]:
        """Returns the (read-only) claims of a valid token or raises :class:`InvalidToken` saying why not.

        Every call runs every check; the middleware remembers verified headers itself (see
        :mod:`starlette_refresh.token_cache`).
        """
        claims = self._verify_fully(token)
        if self._is_revoked(claims["sid"]):
            raise InvalidToken("token revoked")
        return claims

    def validity(self, claims: Mapping[str, Any]) -> tuple[float, float]:
        """The window in which verified ``claims`` stay valid: ``(valid_from, valid_until)``, leeway
        included. Outside it the full check fails (``iat``/``nbf`` in the future, or expired)."""
        leeway = self._settings.leeway
        not_before = max(claims["iat"], claims.get("nbf", claims["iat"]))
        return not_before - leeway, claims["exp"] + leeway

    def _verify_fully(self, token: str) -> Mapping[str, Any]:
        if len(token) > MAX_ACCESS_TOKEN_BYTES:
            raise InvalidToken("token too large")
        if token.count(".") != 2:
            raise InvalidToken("malformed token")
        header = _unverified_header(token)
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._keys.algorithms:
            raise InvalidToken("algorithm not allowed")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("not an access token (typ must be at+jwt)")
        if "crit" in header:
            raise InvalidToken("unsupported critical header")
        kid = header.get("kid")
        key = self._keys.find(kid) if kid is None or isinstance(kid, str) else None
        if key is None or ("kid" in header and kid is None):
            raise InvalidToken("unknown key id")
        if key.algorithm != algorithm:
            raise InvalidToken("algorithm not allowed for this key")
        try:
            payload = self._jws.decode(token, key.public, algorithms=[key.algorithm])
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken("signature verification failed") from exc
        except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
            raise InvalidToken("malformed token") from exc
        try:
            claims = json.loads(payload)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise InvalidToken("malformed token") from exc
        if not isinstance(claims, dict):
            raise InvalidToken("malformed token")
        self._check_claims(claims)
        return MappingProxyType(claims)

    def _check_claims(self, claims: dict[str, Any]) -> None:
        for name in ("sub", "sid", "jti"):
            if not isinstance(claims.get(name), str) or not claims[name]:
                raise InvalidToken(f"missing or invalid claim: {name}")
        for name in ("exp", "iat"):
            if not _is_number(claims.get(name)):
                raise InvalidToken(f"missing or invalid claim: {name}")
        now = self._clock()
        leeway = self._settings.leeway
        if claims["exp"] <= now - leeway:
            raise InvalidToken("token expired")
        if claims["iat"] > now + leeway:
            raise InvalidToken("token issued in the future")
        if "nbf" in claims and (not _is_number(claims["nbf"]) or claims["nbf"] > now + leeway):
            raise InvalidToken("token not yet valid")
        issuer = self._settings.issuer
        if issuer is not None and claims.get("iss") != issuer:
            raise InvalidToken("invalid issuer")
        audience = self._settings.audience
        if audience is not None:
            aud = claims.get("aud")
            if not (aud == audience or (isinstance(aud, list) and audience in aud)):
                raise InvalidToken("invalid audience")


def check_app_claims(claims: Mapping[str, Any] | None, max_bytes: int) -> str:
    """Validates the app's extra claims and returns them as compact JSON for the store."""
    if claims is None:
        return "{}"
    if not isinstance(claims, Mapping):
        raise TypeError("claims must be a mapping of claim names to JSON values")
    clash = RESERVED_CLAIMS.intersection(claims)
    if clash:
        raise ValueError(f"claims {sorted(clash)} are set by starlette-refresh and cannot be passed")
    try:
        encoded = json.dumps(dict(claims), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"claims must be JSON-serializable: {exc}") from exc
    if len(encoded.encode()) > max_bytes:
        raise ValueError(f"claims take more than max_claims_bytes={max_bytes} bytes as JSON")
    return encoded


# json.dumps(payload, separators=(",", ":")) without building an encoder for every token it signs.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))

_HMAC = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


class _HmacSigner:
    """HS256/384/512 signing with the header encoded and the key scheduled once: the same bytes as
    PyJWT's ``PyJWS.encode`` (sorted header, compact JSON, unpadded base64url), at a third of its cost,
    which matters because every refresh signs one token. Verification stays with PyJWT."""

    __slots__ = ("_keyed", "_prefix")

    def __init__(self, key: bytes, algorithm: str, header: Mapping[str, Any]) -> None:
        encoded = json.dumps({"alg": algorithm, **header}, separators=(",", ":"), sort_keys=True)
        self._prefix = _b64(encoded.encode()) + b"."
        self._keyed = hmac.new(key, digestmod=_HMAC[algorithm])

    def sign(self, payload: bytes) -> str:
        signing_input = self._prefix + _b64(payload)
        mac = self._keyed.copy()
        mac.update(signing_input)
        return (signing_input + b"." + _b64(mac.digest())).decode()


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, parsed by us so that every oddity becomes a precise InvalidToken."""
    try:
        header = json.loads(base64url_decode(token.partition(".")[0]))
    except (ValueError, TypeError, UnicodeDecodeError, binascii.Error, RecursionError) as exc:
        raise InvalidToken("malformed token") from exc
    if not isinstance(header, dict):
        raise InvalidToken("malformed token")
    return header


def _is_number(value: object) -> bool:
    # json.loads accepts NaN, Infinity and 400-digit integers; NaN compares false with everything.
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < _MAX_TIMESTAMP
    return isinstance(value, float) and math.isfinite(value) and abs(value) < _MAX_TIMESTAMP


def _never_revoked(session_id: str) -> bool:
    return False
