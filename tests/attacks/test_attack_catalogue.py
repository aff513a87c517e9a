"""The attack catalogue: every attack of issue 4 ("Attacks and bad input") with its exact HTTP answer.

One table, one row per attack. Each row names the key ring the app runs with, a builder that turns
a live context (app, clock, keys, real sessions) into one HTTP request, and the exact answer:
status, ``error`` code and ``error_description``. The checker derives the rest of the contract from
those: a 401 ``invalid_token`` carries exactly ``WWW-Authenticate: Bearer realm="api",
error="invalid_token", error_description="<description>"``, a 401 without a token the bare
challenge, every other answer no ``WWW-Authenticate`` at all; every answer is ``no-store``; a
refused request never sets a cookie, not even a cookie-borne ``invalid_grant`` (a late one must not
delete the cookie of a newer login).

Access-token attacks go to ``GET /me`` (protected), refresh-token attacks to ``POST /auth/refresh``.
Several rows repeat what tests/unit covers piece by piece; this file is the single place a reviewer
reads to see every attack and its answer.

The TestClient runs without its lifespan (no ``with``): no answer here depends on startup, and the
revocation feed's shutdown can hang on fakeredis under Python 3.11 (a cancellation swallowed by
``asyncio.wait_for``), which would stall the suite instead of failing one case.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.testclient import TestClient

from starlette_refresh import SigningKey, TokenAuth
from starlette_refresh.refresh_tokens import MAX_GENERATION, RefreshTokenCodec
from starlette_refresh.testing import ManualClock
from tests.apps import SECRET, build_app

BASE_URL = "https://testserver"
EVIL = "https://evil.example"
ISSUER = "https://issuer.example"
AUDIENCE = "api://orders"
ACCESS_TTL = 300  # the make_auth fixture's access_ttl
LEEWAY = 10  # the Settings default
SID = "AbCdEfGhIjKlMnOpQrSt_-"
MAX_BODY = 16_384
BARE_CHALLENGE = 'Bearer realm="api"'
NO_STORE = "no-store"

# The exact descriptions the library gives; one constant each so a reworded message fails loudly here.
ALG = "algorithm not allowed"
KID = "unknown key id"
SIG = "signature verification failed"
TYP = "not an access token (typ must be at+jwt)"
BAD = "malformed token"
RT_BAD = "refresh token is invalid"
RT_GONE = "refresh token is invalid or revoked"
TOO_BIG = f"request body larger than {MAX_BODY} bytes"
NOT_JSON_TYPE = (
    "the request body must be JSON (application/json) or a form (application/x-www-form-urlencoded)"
)
NO_GRANT_TYPE = "grant_type is required: grant_type=refresh_token"
OTHER_GRANT = "only grant_type=refresh_token is supported here"
BAD_FORM = "the request body is not a valid form"
FORM_GRANT = b"grant_type=refresh_token&refresh_token="
PASSWORD_GRANT = b"grant_type=password&username=a"
DISAGREE = "the refresh cookie and the body carry different refresh tokens"
QUERY_RT = "tokens in the query string are refused; send them in a header or body"
QUERY_AT = "tokens in the query string are refused; send Authorization: Bearer"
TWO_AUTH = "more than one Authorization header"
TWO_ORIGINS = "more than one Origin header"
CROSS_SITE = "cross-site requests may not use the refresh cookie"
CROSS_SITE_FETCH = ("Sec-Fetch-Site", "cross-site")
FORM = "application/x-www-form-urlencoded"
EVIL_ORIGIN = (
    f"requests from origin {EVIL!r} may not use the refresh cookie; "
    "list the origin in trusted_origins if it is yours"
)
NULL_ORIGIN = (
    "requests from origin 'null' may not use the refresh cookie; "
    "list the origin in trusted_origins if it is yours"
)

Ring = Literal["hs", "rsa", "ec", "strict"]
Transport = Literal["cookie", "body"] | None
Headers = list[tuple[str, str]]


# ---------------------------------------------------------------------------------------------
# token building blocks
# ---------------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seg(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def hs_sign(signing_input: str, key: bytes, digest: Any = hashlib.sha256) -> str:
    return b64(hmac.new(key, signing_input.encode(), digest).digest())


def pem_private(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def pem_public(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def ec_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
    return {"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)}


def flip(text: str, index: int) -> str:
    """``text`` with the character at ``index`` replaced by another base64url character."""
    return text[:index] + ("B" if text[index] == "A" else "A") + text[index + 1 :]


def flip_tail(token: str) -> str:
    """The token with the first character of its 43-char MAC or HS256 signature changed (6 full bits)."""
    return flip(token, len(token) - 43)


@dataclass(frozen=True)
class Keys:
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    attacker_rsa: rsa.RSAPrivateKey
    attacker_ec: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Req:
    """One HTTP request of the catalogue, and how it presents a refresh token (if it does)."""

    method: str
    path: str
    headers: Headers = field(default_factory=list)
    content: bytes | Iterable[bytes] | None = None
    transport: Transport = None


@dataclass
class Ctx:
    """What a row's builder may use: the running app, the clock, the keys, real sessions."""

    auth: TokenAuth
    client: TestClient
    clock: ManualClock
    keys: Keys

    @property
    def now(self) -> int:
        return int(self.clock())

    # ----- access tokens

    def claims(self, **changes: Any) -> dict[str, Any]:
        """A complete valid claim set; ``name=None`` drops a claim."""
        claims: dict[str, Any] = {"sub": "42", "sid": SID, "jti": "jti-1", "iat": self.now}
        claims["exp"] = self.now + ACCESS_TTL
        claims.update(changes)
        return {name: value for name, value in claims.items() if value is not None}

    def at(self, key: bytes = SECRET.encode(), alg: str = "HS256", digest: Any = hashlib.sha256,
           claims: dict[str, Any] | None = None, **header: Any) -> str:  # fmt: skip
        """An HMAC-signed JWS built by hand: header ``{"alg", "typ": "at+jwt", **header}``."""
        full = {"alg": alg, "typ": "at+jwt", **header}
        full = {name: value for name, value in full.items() if value is not None}
        signing_input = f"{seg(full)}.{seg(self.claims() if claims is None else claims)}"
        return f"{signing_input}.{hs_sign(signing_input, key, digest)}"

    def unsigned(self, header: dict[str, Any], signature: str = "") -> str:
        return f"{seg(header)}.{seg(self.claims())}.{signature}"

    def signed(self, private: Any, alg: str, **header: Any) -> str:
        """A JWS signed with a real asymmetric key (ours or the attacker's)."""
        return jwt.encode(self.claims(), private, algorithm=alg, headers={"typ": "at+jwt", **header})

    def issued(self) -> str:
        """A genuine access token of this app."""
        return self.auth.access.issue("42", SID).token

    def expired(self) -> str:
        token = self.issued()
        self.clock.advance(ACCESS_TTL + LEEWAY)
        return token

    # ----- refresh tokens

    def login(self) -> tuple[str, str]:
        """A real session (body transport): ``(access_token, refresh_token)``."""
        self.client.cookies.clear()
        response = self.client.post("/login", json={"transport": "body"})
        assert response.status_code == 200, response.text
        body = response.json()
        return body["access_token"], body["refresh_token"]

    def refresh_token(self) -> str:
        return self.login()[1]

    def codec(self) -> RefreshTokenCodec:
        """The refresh codec under the app's own secret: it mints validly MAC'd tokens."""
        return RefreshTokenCodec(SECRET.encode())

    def minted(self, generation: int | None = None, session_id: str | None = None) -> str:
        """A validly MAC'd token naming a live session (or ``session_id``) at ``generation``."""
        _, tag, sid, current, _ = self.refresh_token().split(".")
        gen = int(current) if generation is None else generation
        return self.codec().mint(tag, sid if session_id is None else session_id, gen)

    # ----- requests

    def me(self, token: str) -> Req:
        return Req("GET", "/me", [("Authorization", f"Bearer {token}")])

    def get(self, path: str, *headers: tuple[str, str]) -> Req:
        return Req("GET", path, list(headers))

    def body(self, value: object, *headers: tuple[str, str], path: str = "/auth/refresh") -> Req:
        content = json.dumps({"refresh_token": value}).encode()
        return self.raw(content, "application/json", *headers, path=path, transport="body")

    def cookie(self, value: str, *headers: tuple[str, str], path: str = "/auth/refresh") -> Req:
        return Req("POST", path, [("Cookie", f"refresh_token={value}"), *headers], transport="cookie")

    def raw(self, content: bytes | Iterable[bytes], content_type: str | None, *headers: tuple[str, str],
            path: str = "/auth/refresh", transport: Transport = None) -> Req:  # fmt: skip
        typed = [("Content-Type", content_type)] if content_type else []
        return Req("POST", path, [*typed, *headers], content, transport)


def streamed(size: int) -> Iterator[bytes]:
    """A chunked JSON body of ``size`` bytes, sent without Content-Length."""
    head = b'{"refresh_token":"x","pad":"'
    yield head
    remaining = size - len(head) - 2
    while remaining > 0:
        chunk = min(remaining, 65_536)
        yield b"x" * chunk
        remaining -= chunk
    yield b'"}'


def padded_json(size: int) -> bytes:
    head = b'{"refresh_token":"x","pad":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


# ---------------------------------------------------------------------------------------------
# builders too long for one table line
# ---------------------------------------------------------------------------------------------


def tampered_payload(x: Ctx) -> Req:
    header, _, signature = x.issued().split(".")
    return x.me(f"{header}.{seg(x.claims(sub='admin'))}.{signature}")


def spliced_signature(x: Ctx) -> Req:
    first = x.issued()
    x.clock.advance(1)
    return x.me(first.rsplit(".", 1)[0] + "." + x.issued().rsplit(".", 1)[1])


def oversized_64kb(x: Ctx) -> Req:
    token = x.issued()
    request = x.me(token + "A" * (64 * 1024 - len(token)))
    assert len(request.headers[0][1]) == len("Bearer ") + 64 * 1024  # a 64 KB Authorization header
    return request


def jwk_attacker(x: Ctx, kid: str | None) -> Req:
    header: dict[str, Any] = {"jwk": ec_jwk(x.keys.attacker_ec)}
    if kid is not None:
        header["kid"] = kid
    return x.me(x.signed(x.keys.attacker_ec, "ES256", **header))


def jwk_symmetric(x: Ctx) -> Req:
    attacker_secret = b"attacker-secret-attacker-secret-attacker"
    jwk = {"kty": "oct", "k": b64(attacker_secret)}
    return x.me(x.at(key=attacker_secret, jwk=jwk))


def disagree(x: Ctx) -> Req:
    one, other = x.refresh_token(), x.refresh_token()
    return x.body(other, ("Cookie", f"refresh_token={one}"))


def agree(x: Ctx) -> Req:
    token = x.refresh_token()
    return x.body(token, ("Cookie", f"refresh_token={token}"))


def query_refresh(x: Ctx) -> Req:
    token = x.refresh_token()
    return Req("POST", f"/auth/refresh?refresh_token={token}", [("Cookie", f"refresh_token={token}")])


def two_cookie_values(x: Ctx, valid_last: bool) -> Req:
    valid = x.refresh_token()
    values = ["garbage", valid] if valid_last else [valid, "garbage"]
    return x.cookie("; ".join([values[0], f"refresh_token={values[1]}"]))


def two_cookie_values_valid_last(x: Ctx) -> Req:
    return two_cookie_values(x, True)


def two_cookie_values_garbage_last(x: Ctx) -> Req:
    return two_cookie_values(x, False)


NESTED_JSON = b"[" * 2500 + b"]" * 2500  # 5 KB: under the 8 KB token and 16 KiB body limits


def nested_header_token() -> str:
    token = f"{b64(NESTED_JSON)}.{seg({})}.AAAA"
    assert len(token) < 8192  # so the size check cannot be what refuses it
    return token


def nested_header_on_excluded_route(x: Ctx) -> Req:
    return Req("GET", "/public", [("Authorization", f"Bearer {nested_header_token()}")])


def stock_pyjwt_token(x: Ctx) -> Req:
    """What another service's JWT signed with the same secret looks like (typ JWT)."""
    return x.me(jwt.encode(x.claims(), SECRET, "HS256"))


def access_token_in_query(x: Ctx) -> Req:
    return x.get(f"/me?access_token={x.issued()}")


def two_cookie_headers(x: Ctx) -> Req:
    valid = x.refresh_token()
    headers = [("Cookie", "refresh_token=garbage"), ("Cookie", f"refresh_token={valid}")]
    return Req("POST", "/auth/refresh", headers, transport="cookie")


def foreign_refresh_token() -> str:
    """Well formed, but MAC'd under another secret."""
    return RefreshTokenCodec(b"y" * 32).mint("0" * 20, SID, 0)


def unknown_user_token(x: Ctx) -> str:
    """Validly MAC'd (same secret) for a user and a session that never existed."""
    return x.codec().mint(x.codec().user_tag("nobody"), SID, 0)


def twice_the_same_authorization(x: Ctx) -> Req:
    value = f"Bearer {x.issued()}"
    return x.get("/me", ("Authorization", value), ("Authorization", value))


def evil_logout(x: Ctx) -> Req:
    return x.cookie(x.refresh_token(), ("Origin", EVIL), path="/auth/logout")


# ---------------------------------------------------------------------------------------------
# the catalogue
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One attack: the ring the app runs with, the expected answer, and how to build the request."""

    id: str
    ring: Ring
    status: int
    error: str | None
    description: str | None
    build: Callable[[Ctx], Req]


C = Case
HS, RSA, EC, STRICT = "hs", "rsa", "ec", "strict"
INV_T, INV_G, INV_R, XSITE = "invalid_token", "invalid_grant", "invalid_request", "cross_site_request"
UNSUP_G = "unsupported_grant_type"
NONE_HEADER = {"alg": "none", "typ": "at+jwt"}
AT_HEADER = {"alg": "HS256", "typ": "at+jwt"}
NONE_UPPER = {"alg": "NONE", "typ": "at+jwt"}
OWN = BASE_URL
JSON_BODY = b'{"refresh_token":"x"}'
NOT_JSON = "the request body is not valid JSON"
NOT_OBJECT = "the request body must be a JSON object"
JKU = {"jku": EVIL + "/jwks.json"}
X5U = {"x5u": EVIL + "/cert.pem"}
NO_TOKEN = "an access token is required"
BAD_BEARER = "malformed Authorization header; expected 'Bearer <token>'"
NOT_STR = "refresh_token must be a non-empty string"
NO_RT = "no refresh token: send the refresh cookie or a JSON body with refresh_token"
TWO_COOKIES = (
    "more than one refresh cookie: this answer deletes those this site did not set "
    "(planted by another host?), so a retry sends only its own"
)
JSON = "application/json"


def authorization(value: str) -> tuple[str, str]:
    return ("Authorization", value)


def origin(value: str) -> tuple[str, str]:
    return ("Origin", value)


# Access-token builders (one token each, sent as "Authorization: Bearer <token>" to GET /me).
def with_claims(**changes: Any) -> Callable[[Ctx], Req]:
    return lambda x: x.me(x.at(claims=x.claims(**changes)))


def with_header(**header: Any) -> Callable[[Ctx], Req]:
    return lambda x: x.me(x.at(**header))


def later(seconds: int, name: str) -> Callable[[Ctx], Req]:
    """A token whose time claim ``name`` lies ``seconds`` in the future."""
    return lambda x: x.me(x.at(claims=x.claims(**{name: x.now + seconds})))


def ours(alg: str, **header: Any) -> Callable[[Ctx], Req]:
    """Signed with the app's own asymmetric key of the ring (RSA or EC)."""
    return lambda x: x.me(x.signed(x.keys.rsa if alg[0] in "RP" else x.keys.ec, alg, **header))


def theirs(alg: str, **header: Any) -> Callable[[Ctx], Req]:
    """Signed with an attacker's key."""
    return lambda x: x.me(x.signed(attacker_key(x, alg), alg, **header))


def attacker_key(x: Ctx, alg: str) -> Any:
    return x.keys.attacker_rsa if alg[0] in "RP" else x.keys.attacker_ec


def confused(which: str, **header: Any) -> Callable[[Ctx], Req]:
    """HS256 keyed with our public key's PEM (the key-confusion attack)."""
    return lambda x: x.me(x.at(key=pem_public(getattr(x.keys, which)), **header))


# Refresh-token builders (POST /auth/refresh).
def in_body(make: Callable[[Ctx], object], path: str = "/auth/refresh") -> Callable[[Ctx], Req]:
    return lambda x: x.body(make(x), path=path)


def in_cookie(
    make: Callable[[Ctx], str], *headers: tuple[str, str], path: str = "/auth/refresh"
) -> Callable[[Ctx], Req]:
    return lambda x: x.cookie(make(x), *headers, path=path)


def raw(
    content: bytes | Callable[[], Iterable[bytes]], content_type: str | None, path: str = "/auth/refresh"
) -> Callable[[Ctx], Req]:
    return lambda x: x.raw(content if isinstance(content, bytes) else content(), content_type, path=path)


def rt(x: Ctx) -> str:
    """A live refresh token."""
    return x.refresh_token()


def me_with(*headers: tuple[str, str] | Callable[[Ctx], tuple[str, str]]) -> Callable[[Ctx], Req]:
    return lambda x: x.get("/me", *(h(x) if callable(h) else h for h in headers))


def bearer_of(scheme: str = "Bearer", suffix: str = "") -> Callable[[Ctx], tuple[str, str]]:
    return lambda x: authorization(f"{scheme} {x.issued()}{suffix}")


# fmt: off
CATALOGUE: list[Case] = [
    # --- baselines: genuine requests pass, so every refusal below is about the attack
    C("baseline/valid-access-token", HS, 200, None, None, lambda x: x.me(x.issued())),
    C("baseline/valid-refresh-token-in-body", HS, 200, None, None, in_body(rt)),
    C("baseline/valid-refresh-token-in-cookie", HS, 200, None, None, in_cookie(rt)),
    # --- JWT: alg none
    C("jwt/alg-none", HS, 401, INV_T, ALG, lambda x: x.me(x.unsigned(NONE_HEADER))),
    C("jwt/alg-None-with-hs256-signature", HS, 401, INV_T, ALG, with_header(alg="None")),
    C("jwt/alg-NONE-on-rsa-ring", RSA, 401, INV_T, ALG, lambda x: x.me(x.unsigned(NONE_UPPER))),
    C("jwt/alg-missing", HS, 401, INV_T, ALG, with_header(alg=None)),
    # --- JWT: key confusion, HS256 keyed with our public key
    C("jwt/hs256-keyed-with-rsa-public-pem", RSA, 401, INV_T, ALG, confused("rsa", kid="k1")),
    C("jwt/hs256-keyed-with-rsa-public-pem-no-kid", RSA, 401, INV_T, ALG, confused("rsa")),
    C("jwt/hs256-keyed-with-ec-public-pem", EC, 401, INV_T, ALG, confused("ec", kid="k1")),
    # --- JWT: algorithms not on the allow-list
    C("jwt/hs512-with-our-secret", HS, 401, INV_T, ALG, with_header(alg="HS512", digest=hashlib.sha512)),
    C("jwt/hs384-with-our-secret", HS, 401, INV_T, ALG, with_header(alg="HS384", digest=hashlib.sha384)),
    C("jwt/hs256-lowercase-alg", HS, 401, INV_T, ALG, with_header(alg="hs256")),
    C("jwt/rs256-on-hs-ring", HS, 401, INV_T, ALG, theirs("RS256")),
    C("jwt/ps256-with-our-rs256-key", RSA, 401, INV_T, ALG, ours("PS256", kid="k1")),
    C("jwt/es256-on-rsa-ring", RSA, 401, INV_T, ALG, theirs("ES256", kid="k1")),
    # --- JWT: unknown or injected kid
    C("jwt/kid-unknown", RSA, 401, INV_T, KID, ours("RS256", kid="k2")),
    C("jwt/kid-path-traversal", HS, 401, INV_T, KID, with_header(kid="../../../dev/null")),
    C("jwt/kid-sql-injection", HS, 401, INV_T, KID, with_header(kid="' OR 1=1 --")),
    C("jwt/kid-command-injection", HS, 401, INV_T, KID, with_header(kid="$(reboot)")),
    C("jwt/kid-url", RSA, 401, INV_T, KID, theirs("RS256", kid=EVIL + "/key.pem")),
    C("jwt/kid-nul-suffix", RSA, 401, INV_T, KID, ours("RS256", kid="k1\x00")),
    C("jwt/kid-integer", HS, 401, INV_T, KID, with_header(kid=1)),
    C("jwt/kid-object", HS, 401, INV_T, KID, with_header(kid={"k": "k1"})),
    # --- JWT: jwk / jku / x5u headers are ignored
    C("jwt/jwk-attacker-key-with-our-kid", EC, 401, INV_T, SIG, lambda x: jwk_attacker(x, "k1")),
    C("jwt/jwk-attacker-key-without-kid", EC, 401, INV_T, SIG, lambda x: jwk_attacker(x, None)),
    C("jwt/jwk-attacker-key-with-own-kid", EC, 401, INV_T, KID, lambda x: jwk_attacker(x, "attacker")),
    C("jwt/jwk-symmetric-oct-key", HS, 401, INV_T, SIG, jwk_symmetric),
    C("jwt/jku-attacker-signed", EC, 401, INV_T, SIG, theirs("ES256", kid="k1", **JKU)),
    C("jwt/x5u-attacker-signed", EC, 401, INV_T, SIG, theirs("ES256", kid="k1", **X5U)),
    C("jwt/jku-on-our-valid-token-still-works", EC, 200, None, None, ours("ES256", kid="k1", **JKU)),
    C("jwt/x5u-on-our-valid-token-still-works", EC, 200, None, None, ours("ES256", kid="k1", **X5U)),
    C("jwt/jku-on-our-valid-hs256-token-still-works", HS, 200, None, None, with_header(**JKU)),
    C("jwt/crit-header", HS, 401, INV_T, "unsupported critical header", with_header(crit=["exp"])),
    # --- JWT: wrong typ
    C("jwt/typ-JWT", HS, 401, INV_T, TYP, with_header(typ="JWT")),
    C("jwt/typ-missing", HS, 401, INV_T, TYP, with_header(typ=None)),
    C("jwt/typ-rt+jwt", HS, 401, INV_T, TYP, with_header(typ="rt+jwt")),
    C("jwt/typ-stock-pyjwt-token", HS, 401, INV_T, TYP, stock_pyjwt_token),
    # --- JWT: wrong iss / aud (the app configures issuer and audience)
    C("jwt/iss-and-aud-correct", STRICT, 200, None, None, with_claims(iss=ISSUER, aud=AUDIENCE)),
    C("jwt/iss-wrong", STRICT, 401, INV_T, "invalid issuer", with_claims(iss=EVIL, aud=AUDIENCE)),
    C("jwt/iss-missing", STRICT, 401, INV_T, "invalid issuer", with_claims(aud=AUDIENCE)),
    C("jwt/aud-wrong", STRICT, 401, INV_T, "invalid audience", with_claims(iss=ISSUER, aud="api://other")),
    C("jwt/aud-missing", STRICT, 401, INV_T, "invalid audience", with_claims(iss=ISSUER)),
    # --- JWT: time claims (leeway 10 s)
    C("jwt/exp-missing", HS, 401, INV_T, "missing or invalid claim: exp", with_claims(exp=None)),
    C("jwt/exp-string", HS, 401, INV_T, "missing or invalid claim: exp", with_claims(exp="9999999999")),
    C("jwt/nbf-future-beyond-leeway", HS, 401, INV_T, "token not yet valid", later(LEEWAY + 1, "nbf")),
    C("jwt/nbf-future-within-leeway", HS, 200, None, None, later(LEEWAY, "nbf")),
    C("jwt/iat-future-beyond-leeway", HS, 401, INV_T, "token issued in the future", later(LEEWAY + 1, "iat")),
    C("jwt/iat-future-within-leeway", HS, 200, None, None, later(LEEWAY, "iat")),
    C("jwt/expired", HS, 401, INV_T, "token expired", lambda x: x.me(x.expired())),
    C("jwt/expired-at-the-leeway-edge", HS, 401, INV_T, "token expired", later(-LEEWAY, "exp")),
    # --- JWT: tampering, truncation, size, encoding
    C("jwt/tampered-payload", HS, 401, INV_T, SIG, tampered_payload),
    C("jwt/tampered-signature", HS, 401, INV_T, SIG, lambda x: x.me(flip_tail(x.issued()))),
    C("jwt/signature-of-another-token", HS, 401, INV_T, SIG, spliced_signature),
    C("jwt/signature-empty", HS, 401, INV_T, SIG, lambda x: x.me(x.issued().rsplit(".", 1)[0] + ".")),
    C("jwt/signature-of-another-secret", HS, 401, INV_T, SIG, with_header(key=b"x" * 32)),
    C("jwt/truncated-no-signature-part", HS, 401, INV_T, BAD, lambda x: x.me(x.issued().rsplit(".", 1)[0])),
    C("jwt/truncated-to-100-chars", HS, 401, INV_T, BAD, lambda x: x.me(x.issued()[:100])),
    C("jwt/truncated-header-only", HS, 401, INV_T, BAD, lambda x: x.me(x.issued().split(".")[0])),
    C("jwt/oversized-64kb-authorization", HS, 401, INV_T, "token too large", oversized_64kb),
    C("jwt/non-base64", HS, 401, INV_T, BAD, lambda x: x.me("@@@.###.$$$")),
    C("jwt/non-base64-payload", HS, 401, INV_T, BAD, lambda x: x.me(f"{seg(AT_HEADER)}.!!!!.AAAA")),
    C("jwt/deeply-nested-json-header", HS, 401, INV_T, BAD, lambda x: x.me(nested_header_token())),
    C("jwt/deeply-nested-json-header-excluded-route", HS, 200, None, None, nested_header_on_excluded_route),
    C("jwt/header-not-json", HS, 401, INV_T, BAD, lambda x: x.me(f"{b64(b'not json')}.{seg({})}.AAAA")),
    C("jwt/garbage", HS, 401, INV_T, BAD, lambda x: x.me("garbage")),
    C("jwt/refresh-token-as-access-token", HS, 401, INV_T, BAD, lambda x: x.me(x.refresh_token())),
    # --- refresh tokens (POST /auth/refresh)
    C("rt/empty-in-body", HS, 400, INV_R, NOT_STR, in_body(lambda x: "")),
    C("rt/empty-cookie", HS, 400, INV_R, NO_RT, in_cookie(lambda x: "")),
    C("rt/not-a-string", HS, 400, INV_R, NOT_STR, in_body(lambda x: 123)),
    C("rt/oversized-257-chars", HS, 400, INV_G, RT_BAD, in_body(lambda x: rt(x) + "A" * 200)),
    C("rt/oversized-15kb-in-body", HS, 400, INV_G, RT_BAD, in_body(lambda x: "A" * 15_000)),
    C("rt/oversized-8kb-cookie", HS, 400, INV_G, RT_BAD, in_cookie(lambda x: "A" * 8_192)),
    C("rt/wrong-shape-4-parts", HS, 400, INV_G, RT_BAD, in_body(lambda x: "srt1.a.b.c")),
    C("rt/wrong-shape-6-parts", HS, 400, INV_G, RT_BAD, in_body(lambda x: rt(x) + ".x")),
    C("rt/wrong-prefix", HS, 400, INV_G, RT_BAD, in_body(lambda x: "srt2" + rt(x)[4:])),
    C("rt/access-token-as-refresh-token", HS, 400, INV_G, RT_BAD, in_body(lambda x: x.login()[0])),
    C("rt/bad-mac", HS, 400, INV_G, RT_BAD, in_body(lambda x: flip_tail(rt(x)))),
    C("rt/bad-mac-in-cookie", HS, 400, INV_G, RT_BAD, in_cookie(lambda x: flip_tail(rt(x)))),
    C("rt/mac-of-another-secret", HS, 400, INV_G, RT_BAD, in_body(lambda x: foreign_refresh_token())),
    C("rt/unknown-family", HS, 400, INV_G, RT_GONE, in_body(lambda x: x.minted(0, session_id=SID))),
    C("rt/unknown-family-of-unknown-user", HS, 400, INV_G, RT_GONE, in_body(unknown_user_token)),
    C("rt/counter-above-max", HS, 400, INV_G, RT_BAD, in_body(lambda x: x.minted(MAX_GENERATION + 1))),
    C("rt/counter-17-digits", HS, 400, INV_G, RT_BAD, in_body(lambda x: x.minted(10**16))),
    C("rt/counter-negative", HS, 400, INV_G, RT_BAD, in_body(lambda x: x.minted(-1))),
    C("rt/leading-space", HS, 400, INV_G, RT_BAD, in_body(lambda x: " " + rt(x))),
    C("rt/trailing-newline", HS, 400, INV_G, RT_BAD, in_body(lambda x: rt(x) + "\n")),
    C("rt/tab-inside", HS, 400, INV_G, RT_BAD, in_body(lambda x: rt(x).replace(".", ".\t", 1))),
    C("rt/nul-byte-in-body", HS, 400, INV_G, RT_BAD, in_body(lambda x: rt(x) + "\x00")),
    C("rt/nul-byte-in-cookie", HS, 400, INV_G, RT_BAD, in_cookie(lambda x: rt(x) + "\x00")),
    # RFC 6265 parsing trims whitespace around a cookie value: the genuine token still works.
    C("rt/cookie-value-between-spaces", HS, 200, None, None, in_cookie(lambda x: f"  {rt(x)}  ")),
    C("rt/in-query-string", HS, 400, INV_R, QUERY_RT, query_refresh),
    C("rt/in-query-string-uppercase", HS, 400, INV_R, QUERY_RT, in_body(rt, "/auth/refresh?REFRESH_TOKEN=x")),
    C("rt/access-token-in-query", HS, 400, INV_R, QUERY_RT, in_body(rt, "/auth/refresh?access_token=")),
    C("rt/cookie-and-body-disagree", HS, 400, INV_R, DISAGREE, disagree),
    C("rt/cookie-and-body-agree", HS, 200, None, None, agree),
    # --- HTTP: bodies
    C("http/malformed-json", HS, 400, INV_R, NOT_JSON, raw(b'{"refresh_token": ', JSON)),
    C("http/invalid-utf8", HS, 400, INV_R, NOT_JSON, raw(b'{"refresh_token":"\xff"}', JSON)),
    C("http/deeply-nested-json-body", HS, 400, INV_R, NOT_JSON, raw(NESTED_JSON, JSON)),
    C("http/deeply-nested-body-on-logout", HS, 400, INV_R, NOT_JSON, raw(NESTED_JSON, JSON, "/auth/logout")),
    C("http/json-array", HS, 400, INV_R, NOT_OBJECT, raw(b'["refresh_token"]', JSON)),
    C("http/content-type-text-plain", HS, 400, INV_R, NOT_JSON_TYPE, raw(JSON_BODY, "text/plain")),
    C("http/form-without-grant-type", HS, 400, INV_R, NO_GRANT_TYPE, raw(b"refresh_token=x", FORM)),
    C("http/form-password-grant", HS, 400, UNSUP_G, OTHER_GRANT, raw(PASSWORD_GRANT, FORM)),
    C("http/json-password-grant", HS, 400, UNSUP_G, OTHER_GRANT, raw(b'{"grant_type":"password"}', JSON)),
    C("http/form-forged-token", HS, 400, INV_G, RT_BAD, raw(FORM_GRANT + b"x", FORM)),
    C(
        "http/form-refresh-token-twice",
        HS,
        400,
        INV_R,
        "the form gives 'refresh_token' more than once",
        raw(b"grant_type=refresh_token&refresh_token=a&refresh_token=b", FORM),
    ),
    C("http/form-not-utf8", HS, 400, INV_R, BAD_FORM, raw(FORM_GRANT + b"\xff", FORM)),
    C("http/form-malformed-pair", HS, 400, INV_R, BAD_FORM, raw(b"grant_type", FORM)),
    C("http/content-type-missing", HS, 400, INV_R, NOT_JSON_TYPE, raw(JSON_BODY, None)),
    C("http/body-16KiB-plus-1", HS, 400, INV_R, TOO_BIG, raw(padded_json(MAX_BODY + 1), JSON)),
    C("http/body-1MiB", HS, 400, INV_R, TOO_BIG, raw(padded_json(1 << 20), JSON)),
    C("http/body-1MiB-chunked-without-length", HS, 400, INV_R, TOO_BIG, raw(lambda: streamed(1 << 20), JSON)),
    C("http/body-1MiB-on-logout", HS, 400, INV_R, TOO_BIG, raw(padded_json(1 << 20), JSON, "/auth/logout")),
    # --- HTTP: duplicate headers
    C("http/authorization-twice", HS, 400, INV_R, TWO_AUTH, me_with(bearer_of(), authorization("Bearer x"))),
    C("http/authorization-twice-identical", HS, 400, INV_R, TWO_AUTH, twice_the_same_authorization),
    C("http/origin-twice-both-own", HS, 403, XSITE, TWO_ORIGINS, in_cookie(rt, origin(OWN), origin(OWN))),
    C("http/origin-twice-own-evil", HS, 403, XSITE, TWO_ORIGINS, in_cookie(rt, origin(OWN), origin(EVIL))),
    # Two refresh_token values (one Cookie header or two) are ambiguous: a sibling subdomain can
    # plant a second cookie ("cookie tossing"), so neither is used and the cookie is not cleared.
    C("http/cookie-two-values-valid-last", HS, 400, INV_R, TWO_COOKIES, two_cookie_values_valid_last),
    C("http/cookie-two-values-garbage-last", HS, 400, INV_R, TWO_COOKIES, two_cookie_values_garbage_last),
    C("http/cookie-header-twice-valid-last", HS, 400, INV_R, TWO_COOKIES, two_cookie_headers),
    # --- HTTP: Authorization scheme and shape
    C("http/lowercase-bearer-accepted", HS, 200, None, None, me_with(bearer_of("bearer"))),
    C("http/uppercase-bearer-accepted", HS, 200, None, None, me_with(bearer_of("BEARER"))),
    C("http/no-authorization-bare-challenge", HS, 401, None, NO_TOKEN, me_with()),
    C("http/basic-scheme-counts-as-no-token", HS, 401, None, NO_TOKEN, me_with(authorization("Basic YTpi"))),
    C("http/bearer-without-token", HS, 400, INV_R, BAD_BEARER, me_with(authorization("Bearer"))),
    C("http/bearer-two-tokens", HS, 400, INV_R, BAD_BEARER, me_with(bearer_of(suffix=" x"))),
    C("http/access-token-in-query", HS, 400, INV_R, QUERY_AT, access_token_in_query),
    # --- HTTP: CSRF from a cross-site page
    C("http/csrf-cookie-refresh-from-evil-origin", HS, 403, XSITE, EVIL_ORIGIN, in_cookie(rt, origin(EVIL))),
    C("http/csrf-cookie-refresh-origin-null", HS, 403, XSITE, NULL_ORIGIN, in_cookie(rt, origin("null"))),
    C("http/csrf-sec-fetch-site-cross-site", HS, 403, XSITE, CROSS_SITE, in_cookie(rt, CROSS_SITE_FETCH)),
    C("http/csrf-cookie-logout-from-evil-origin", HS, 403, XSITE, EVIL_ORIGIN, evil_logout),
    C("http/same-origin-cookie-refresh-allowed", HS, 200, None, None, in_cookie(rt, origin(OWN))),
]
# fmt: on


# ---------------------------------------------------------------------------------------------
# the one test
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec=ec.generate_private_key(ec.SECP256R1()),
        attacker_rsa=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        attacker_ec=ec.generate_private_key(ec.SECP256R1()),
    )


def auth_for(ring: Ring, make_auth: Callable[..., TokenAuth], keys: Keys) -> TokenAuth:
    if ring == "rsa":
        return make_auth(keys=[SigningKey.from_pem(pem_private(keys.rsa), kid="k1")])
    if ring == "ec":
        return make_auth(keys=[SigningKey.from_pem(pem_private(keys.ec), kid="k1")])
    if ring == "strict":
        return make_auth(issuer=ISSUER, audience=AUDIENCE)
    return make_auth()


def check_answer(case: Case, request: Req, response: httpx2.Response) -> None:
    assert response.status_code == case.status, response.text[:300]
    challenge = response.headers.get("www-authenticate")
    set_cookies = response.headers.get_list("set-cookie")
    if case.status == 200:
        body = response.json()
        if request.path.startswith("/me"):
            assert body["sub"] == "42"
        elif request.path == "/public":  # excluded: a bad token counts as no token
            assert body == {"authenticated": False}
        else:
            expected = {"access_token", "token_type", "expires_in"}
            if request.transport == "body":
                expected.add("refresh_token")
            assert set(body) == expected
            assert body["token_type"] == "Bearer"
            assert (len(set_cookies) == 1) == (request.transport == "cookie"), set_cookies
        assert challenge is None
        return
    assert response.headers.get("cache-control") == NO_STORE
    body = response.json()
    if case.error is None:
        # no token at all: the bare challenge (RFC 6750 section 3.1), no error attribute
        assert body == {"error_description": case.description}
        assert challenge == BARE_CHALLENGE
    else:
        assert body == {"error": case.error, "error_description": case.description}
        if case.error == INV_T:
            assert challenge == (
                f'Bearer realm="api", error="invalid_token", error_description="{case.description}"'
            )
        else:
            assert challenge is None
    # invalid_grant included: a late one must not delete a cookie that a newer login has set
    assert set_cookies == [], "a refused request must not touch the refresh cookie"


def test_catalogue_ids_are_unique() -> None:
    ids = [case.id for case in CATALOGUE]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CATALOGUE])
def test_attack(case: Case, make_auth: Callable[..., TokenAuth], clock: ManualClock, keys: Keys) -> None:
    auth = auth_for(case.ring, make_auth, keys)
    # No lifespan (no ``with``), see the module docstring.
    client = TestClient(build_app(auth), base_url=BASE_URL, raise_server_exceptions=True)
    context = Ctx(auth=auth, client=client, clock=clock, keys=keys)
    request = case.build(context)
    client.cookies.clear()
    response = client.request(request.method, request.path, headers=request.headers, content=request.content)
    check_answer(case, request, response)
