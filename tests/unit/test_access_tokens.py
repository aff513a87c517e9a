"""Access tokens: minting, verification and every attack the verifier must refuse.

Attack tokens are built by hand (base64url JSON header and payload, then HMAC or a real signature)
so that each one is a real token a client could send, not a mock.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.api_jws import PyJWS
from starlette.testclient import TestClient

from starlette_refresh import ConfigurationError, InvalidToken, KeyRing, Settings, SigningKey, TokenAuth
from starlette_refresh.access_tokens import RESERVED_CLAIMS, AccessTokenCodec
from starlette_refresh.testing import ManualClock
from tests.apps import SECRET, build_app

Factory = Callable[..., TokenAuth]

ACCESS_TTL = 300  # what the make_auth fixture configures
LEEWAY = 10  # the Settings default


# --------------------------------------------------------------------------- helpers


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def hs_token(
    header: dict[str, Any], payload: dict[str, Any] | str, key: bytes | str = SECRET, digest: Any = None
) -> str:
    """A JWS signed by hand with HMAC (SHA-256 unless ``digest`` says otherwise)."""
    raw_payload = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    signing_input = f"{segment(header)}.{b64url(raw_payload.encode())}"
    secret = key.encode() if isinstance(key, str) else key
    mac = hmac.new(secret, signing_input.encode(), digest or hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def claims_at(now: float, **extra: Any) -> dict[str, Any]:
    """A complete, valid claim set for a token issued at ``now``."""
    claims: dict[str, Any] = {
        "sub": "42",
        "sid": "session-1",
        "jti": "jti-1",
        "iat": int(now),
        "exp": int(now) + ACCESS_TTL,
    }
    claims.update(extra)
    return claims


AT_HEADER: dict[str, Any] = {"alg": "HS256", "typ": "at+jwt"}
UNFINISHED_JSON = b'{"alg":'


def rejection(auth: TokenAuth, token: str) -> str:
    """The error description ``verify_access_token`` gives; fails the test if the token passes."""
    with pytest.raises(InvalidToken) as caught:
        auth.verify_access_token(token)
    assert type(caught.value) is InvalidToken
    assert caught.value.status_code == 401
    assert caught.value.error == "invalid_token"
    return caught.value.description


def pem_private(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pem_public(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def issue(auth: TokenAuth, claims: dict[str, Any] | None = None) -> str:
    return auth.access.issue("42", "session-1", claims).token


# --------------------------------------------------------------------------- HS256 default


def test_default_token_verifies_with_stock_pyjwt_and_the_secret_as_given(make_auth: Factory) -> None:
    auth = make_auth(clock=ManualClock(time.time()))
    token = issue(auth, {"email": "a@example.com"})

    claims = jwt.decode(token, SECRET, algorithms=["HS256"])

    assert claims["sub"] == "42"
    assert claims["email"] == "a@example.com"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, SECRET + "x", algorithms=["HS256"])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, hashlib.sha256(SECRET.encode()).digest(), algorithms=["HS256"])


def test_bytes_secret_is_used_exactly_as_given(make_auth: Factory) -> None:
    secret = bytes(range(40))  # not valid UTF-8 text; must still be the raw HMAC key
    auth = make_auth(secret_key=secret, clock=ManualClock(time.time()))

    claims = jwt.decode(issue(auth), secret, algorithms=["HS256"])

    assert claims["sid"] == "session-1"


def test_default_header_is_exactly_alg_and_typ(auth: TokenAuth) -> None:
    assert jwt.get_unverified_header(issue(auth)) == {"alg": "HS256", "typ": "at+jwt"}


def test_claims_are_exactly_the_contract_plus_app_claims(make_auth: Factory) -> None:
    clock = ManualClock(1_800_000_000.75)
    auth = make_auth(clock=clock)

    issued = auth.access.issue("user-7", "sid-abc", {"email": "a@example.com", "roles": ["admin"]})
    claims = json.loads(base64.urlsafe_b64decode(issued.token.split(".")[1] + "=="))

    assert set(claims) == {"sub", "sid", "jti", "iat", "exp", "email", "roles"}
    assert claims["sub"] == "user-7"
    assert claims["sid"] == "sid-abc"
    assert claims["iat"] == 1_800_000_000
    assert claims["exp"] == 1_800_000_000 + ACCESS_TTL
    assert claims["email"] == "a@example.com"
    assert claims["roles"] == ["admin"]
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) >= 16
    assert issued.expires_in == ACCESS_TTL
    assert dict(issued.claims) == claims


def test_every_token_gets_a_fresh_jti(auth: TokenAuth) -> None:
    jtis = {auth.verify_access_token(issue(auth))["jti"] for _ in range(20)}

    assert len(jtis) == 20


def test_iss_and_aud_are_present_only_when_configured(make_auth: Factory) -> None:
    plain = make_auth().verify_access_token(issue(make_auth()))
    configured_auth = make_auth(issuer="https://issuer.example", audience="api://orders")
    configured = configured_auth.verify_access_token(issue(configured_auth))

    assert "iss" not in plain
    assert "aud" not in plain
    assert configured["iss"] == "https://issuer.example"
    assert configured["aud"] == "api://orders"


def test_app_claims_cannot_override_the_contract_claims_at_mint_time(auth: TokenAuth) -> None:
    token = auth.access.issue("42", "sid-1", {"sub": "admin", "exp": 99_999_999_999}).token
    claims = auth.verify_access_token(token)

    assert claims["sub"] == "42"
    assert claims["exp"] == int(auth.clock()) + ACCESS_TTL


# --------------------------------------------------------------------------- time


def test_round_trip_returns_the_claims(auth: TokenAuth) -> None:
    issued = auth.access.issue("42", "sid-1", {"email": "a@example.com"})

    assert auth.verify_access_token(issued.token) == dict(issued.claims)


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (0, None),
        (ACCESS_TTL - 1, None),
        (ACCESS_TTL, None),  # exp reached, still inside the leeway
        (ACCESS_TTL + LEEWAY - 0.5, None),
        (ACCESS_TTL + LEEWAY, "token expired"),
        (ACCESS_TTL + LEEWAY + 1, "token expired"),
        (10 * 86_400, "token expired"),
    ],
)
def test_expiry_honours_the_leeway(
    auth: TokenAuth, clock: ManualClock, elapsed: float, expected: str | None
) -> None:
    token = issue(auth)
    clock.advance(elapsed)

    if expected is None:
        assert auth.verify_access_token(token)["sub"] == "42"
    else:
        assert rejection(auth, token) == expected


@pytest.mark.parametrize(
    ("clock_behind", "expected"),
    [(LEEWAY, None), (LEEWAY + 1, "token issued in the future"), (3600, "token issued in the future")],
)
def test_iat_in_the_future(
    auth: TokenAuth, clock: ManualClock, clock_behind: int, expected: str | None
) -> None:
    token = issue(auth)
    clock.now -= clock_behind  # the verifying server's clock is behind the issuer's

    if expected is None:
        assert auth.verify_access_token(token)["sub"] == "42"
    else:
        assert rejection(auth, token) == expected


@pytest.mark.parametrize(
    ("nbf_offset", "expected"),
    [
        (-60, None),
        (LEEWAY, None),
        (LEEWAY + 1, "token not yet valid"),
        (120, "token not yet valid"),
    ],
)
def test_nbf(auth: TokenAuth, clock: ManualClock, nbf_offset: int, expected: str | None) -> None:
    token = hs_token(AT_HEADER, claims_at(clock(), nbf=int(clock()) + nbf_offset))

    if expected is None:
        assert auth.verify_access_token(token)["nbf"] == int(clock()) + nbf_offset
    else:
        assert rejection(auth, token) == expected


@pytest.mark.parametrize("nbf", ["0", None, True, [0], float("nan")])
def test_nbf_that_is_not_a_number_is_refused(auth: TokenAuth, clock: ManualClock, nbf: Any) -> None:
    assert rejection(auth, hs_token(AT_HEADER, claims_at(clock(), nbf=nbf))) == "token not yet valid"


# --------------------------------------------------------------------------- algorithm attacks


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("with_signature", [False, True])
def test_alg_none_is_refused(auth: TokenAuth, clock: ManualClock, alg: str, with_signature: bool) -> None:
    header = {"alg": alg, "typ": "at+jwt"}
    unsigned = f"{segment(header)}.{segment(claims_at(clock()))}."
    token = hs_token(header, claims_at(clock())) if with_signature else unsigned

    assert rejection(auth, token) == "algorithm not allowed"


@pytest.mark.parametrize("alg", [None, 256, ["HS256"], "", "hs256", "HS256 "])
def test_missing_or_odd_alg_is_refused(auth: TokenAuth, clock: ManualClock, alg: Any) -> None:
    header: dict[str, Any] = {"typ": "at+jwt"} if alg is None else {"alg": alg, "typ": "at+jwt"}

    assert rejection(auth, hs_token(header, claims_at(clock()))) == "algorithm not allowed"


@pytest.mark.parametrize(("alg", "digest"), [("HS512", hashlib.sha512), ("HS384", hashlib.sha384)])
def test_hmac_algorithm_not_on_the_ring_is_refused(
    auth: TokenAuth, clock: ManualClock, alg: str, digest: Any
) -> None:
    # Correctly signed with our own secret, but with an algorithm the ring does not allow.
    token = hs_token({"alg": alg, "typ": "at+jwt"}, claims_at(clock()), digest=digest)

    assert rejection(auth, token) == "algorithm not allowed"


@pytest.mark.parametrize("key_name", ["rsa", "ec", "ed"])
def test_key_confusion_hmac_signed_with_the_public_pem_is_refused(
    make_auth: Factory,
    clock: ManualClock,
    rsa_key: Any,
    ec_key: Any,
    ed_key: Any,
    key_name: str,
) -> None:
    private = {"rsa": rsa_key, "ec": ec_key, "ed": ed_key}[key_name]
    auth = make_auth(keys=[SigningKey.from_pem(pem_private(private), kid="k1")])
    public_pem = pem_public(private)
    for header in ({"alg": "HS256", "typ": "at+jwt", "kid": "k1"}, {"alg": "HS256", "typ": "at+jwt"}):
        token = hs_token(header, claims_at(clock()), key=public_pem)

        assert rejection(auth, token) == "algorithm not allowed"


def test_key_confusion_in_a_mixed_ring_is_refused_per_key(
    make_auth: Factory, clock: ManualClock, rsa_key: Any
) -> None:
    # HS256 is on the ring (for kid "h"), but kid "r" is bound to RS256: its public PEM is no HMAC key.
    ring = KeyRing([SigningKey.hmac(SECRET, kid="h"), SigningKey.from_pem(pem_private(rsa_key), kid="r")])
    auth = make_auth(keys=ring)
    token = hs_token(
        {"alg": "HS256", "typ": "at+jwt", "kid": "r"}, claims_at(clock()), key=pem_public(rsa_key)
    )

    assert rejection(auth, token) == "algorithm not allowed for this key"
    good = hs_token({"alg": "HS256", "typ": "at+jwt", "kid": "h"}, claims_at(clock()))
    assert auth.verify_access_token(good)["sub"] == "42"


# --------------------------------------------------------------------------- header attacks


@pytest.mark.parametrize("typ", ["JWT", "jwt", "JOSE", "rt+jwt", "at+jwt ", "", 1, None, ["at+jwt"]])
def test_wrong_or_missing_typ_is_refused(auth: TokenAuth, clock: ManualClock, typ: Any) -> None:
    header: dict[str, Any] = {"alg": "HS256"} if typ is None else {"alg": "HS256", "typ": typ}

    assert rejection(auth, hs_token(header, claims_at(clock()))) == "not an access token (typ must be at+jwt)"


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt"])
def test_at_jwt_media_type_spellings_are_accepted(auth: TokenAuth, clock: ManualClock, typ: str) -> None:
    token = hs_token({"alg": "HS256", "typ": typ}, claims_at(clock()))

    assert auth.verify_access_token(token)["sub"] == "42"


def test_a_stock_jwt_with_typ_jwt_is_refused(auth: TokenAuth, clock: ManualClock) -> None:
    # What another service's ID token or session JWT signed with the same secret would look like.
    token = jwt.encode(claims_at(clock()), SECRET, algorithm="HS256")

    assert jwt.get_unverified_header(token)["typ"] == "JWT"
    assert rejection(auth, token) == "not an access token (typ must be at+jwt)"


KID_INJECTIONS = [
    "../../etc/passwd",
    "/dev/null",
    "' OR 1=1 --",
    '" OR ""="',
    "k1\x00",
    "k1 ",
    "K1",
    "",
    "$(reboot)",
    "http://attacker.example/key.pem",
]


@pytest.mark.parametrize("kid", KID_INJECTIONS)
def test_kid_injection_on_a_multi_key_ring_is_an_unknown_key(
    make_auth: Factory, clock: ManualClock, kid: str
) -> None:
    ring = KeyRing([SigningKey.hmac(SECRET, kid="k1"), SigningKey.hmac(SECRET + "-2", kid="k2")])
    auth = make_auth(keys=ring)
    # Signed with the real secret of k1, so nothing but the kid lookup can refuse it.
    token = hs_token({"alg": "HS256", "typ": "at+jwt", "kid": kid}, claims_at(clock()))

    assert rejection(auth, token) == "unknown key id"


@pytest.mark.parametrize("kid", KID_INJECTIONS)
def test_kid_injection_on_the_default_ring_is_an_unknown_key(
    auth: TokenAuth, clock: ManualClock, kid: str
) -> None:
    token = hs_token({"alg": "HS256", "typ": "at+jwt", "kid": kid}, claims_at(clock()))

    assert rejection(auth, token) == "unknown key id"


def test_token_without_kid_on_a_multi_key_ring_is_an_unknown_key(
    make_auth: Factory, clock: ManualClock
) -> None:
    ring = KeyRing([SigningKey.hmac(SECRET, kid="k1"), SigningKey.hmac(SECRET + "-2", kid="k2")])
    auth = make_auth(keys=ring)

    assert rejection(auth, hs_token(AT_HEADER, claims_at(clock()))) == "unknown key id"


@pytest.mark.parametrize(
    "kid", [123, None, True, ["k1"], {"k": "k1"}], ids=["int", "null", "bool", "list", "object"]
)
def test_non_string_kid_is_refused_as_an_unknown_key(auth: TokenAuth, clock: ManualClock, kid: Any) -> None:
    token = hs_token({"alg": "HS256", "typ": "at+jwt", "kid": kid}, claims_at(clock()))

    assert rejection(auth, token) == "unknown key id"


def test_non_string_kid_on_a_protected_route_answers_401_not_500(auth: TokenAuth, clock: ManualClock) -> None:
    token = hs_token({"alg": "HS256", "typ": "at+jwt", "kid": 1}, claims_at(clock()))
    with TestClient(build_app(auth), base_url="https://testserver", raise_server_exceptions=False) as client:
        response = client.get("/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["exp"], "exp": 1},
        {"crit": ["b64"], "b64": True},
        {"crit": ["x-unknown"]},
        {"crit": []},
        {"crit": "b64"},
    ],
    ids=["crit-exp", "crit-b64", "crit-unknown-ext", "crit-empty", "crit-string"],
)
def test_crit_header_is_refused(auth: TokenAuth, clock: ManualClock, extra: dict[str, Any]) -> None:
    token = hs_token({**AT_HEADER, **extra}, claims_at(clock()))

    assert rejection(auth, token) == "unsupported critical header"


def _ec_jwk(private: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = private.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


def test_embedded_jwk_of_an_attacker_key_is_ignored(
    make_auth: Factory, clock: ManualClock, ec_key: Any
) -> None:
    auth = make_auth(keys=[SigningKey.from_pem(pem_private(ec_key), kid="k1")])
    attacker = ec.generate_private_key(ec.SECP256R1())
    jwk_header = {"typ": "at+jwt", "jwk": _ec_jwk(attacker)}

    with_our_kid = jwt.encode(
        claims_at(clock()), attacker, algorithm="ES256", headers={**jwk_header, "kid": "k1"}
    )
    without_kid = jwt.encode(claims_at(clock()), attacker, algorithm="ES256", headers=jwk_header)
    with_own_kid = jwt.encode(
        claims_at(clock()), attacker, algorithm="ES256", headers={**jwk_header, "kid": "attacker"}
    )

    # The attacker's token really is valid under the key it embeds.
    relaxed: Any = {"verify_exp": False, "verify_iat": False}
    jwt.decode(with_our_kid, attacker.public_key(), algorithms=["ES256"], options=relaxed)
    assert rejection(auth, with_our_kid) == "signature verification failed"
    assert rejection(auth, without_kid) == "signature verification failed"  # one-key ring: our key
    assert rejection(auth, with_own_kid) == "unknown key id"


def test_embedded_symmetric_jwk_is_ignored(auth: TokenAuth, clock: ManualClock) -> None:
    attacker_secret = b"attacker-secret-attacker-secret-attacker"
    header = {**AT_HEADER, "jwk": {"kty": "oct", "k": b64url(attacker_secret)}}

    assert rejection(auth, hs_token(header, claims_at(clock()), key=attacker_secret)) == (
        "signature verification failed"
    )


@pytest.mark.parametrize(
    "extra",
    [
        {"jku": "https://attacker.example/jwks.json"},
        {"x5u": "https://attacker.example/cert.pem"},
        {"jku": "https://attacker.example/jwks.json", "x5u": "https://attacker.example/c.pem"},
    ],
)
def test_url_key_headers_do_not_stop_a_token_signed_with_our_key(
    make_auth: Factory, clock: ManualClock, ec_key: Any, extra: dict[str, str]
) -> None:
    auth = make_auth(keys=[SigningKey.from_pem(pem_private(ec_key), kid="k1")])
    ours = jwt.encode(
        claims_at(clock()), ec_key, algorithm="ES256", headers={"typ": "at+jwt", "kid": "k1", **extra}
    )
    attacker = ec.generate_private_key(ec.SECP256R1())
    theirs = jwt.encode(
        claims_at(clock()), attacker, algorithm="ES256", headers={"typ": "at+jwt", "kid": "k1", **extra}
    )

    assert auth.verify_access_token(ours)["sub"] == "42"
    assert rejection(auth, theirs) == "signature verification failed"


# --------------------------------------------------------------------------- issuer and audience


@pytest.fixture
def strict_auth(make_auth: Factory) -> TokenAuth:
    return make_auth(issuer="https://issuer.example", audience="api://orders")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"iss": "https://issuer.example", "aud": "api://orders"}, None),
        ({"iss": "https://issuer.example", "aud": ["api://other", "api://orders"]}, None),
        ({"iss": "https://evil.example", "aud": "api://orders"}, "invalid issuer"),
        ({"iss": "https://issuer.example/", "aud": "api://orders"}, "invalid issuer"),
        ({"aud": "api://orders"}, "invalid issuer"),
        ({"iss": ["https://issuer.example"], "aud": "api://orders"}, "invalid issuer"),
        ({"iss": "https://issuer.example", "aud": "api://other"}, "invalid audience"),
        ({"iss": "https://issuer.example", "aud": ["api://other"]}, "invalid audience"),
        ({"iss": "https://issuer.example", "aud": []}, "invalid audience"),
        ({"iss": "https://issuer.example"}, "invalid audience"),
        ({"iss": "https://issuer.example", "aud": "api://orders-extra"}, "invalid audience"),
        ({"iss": "https://issuer.example", "aud": {"api://orders": 1}}, "invalid audience"),
    ],
)
def test_issuer_and_audience(
    strict_auth: TokenAuth, clock: ManualClock, extra: dict[str, Any], expected: str | None
) -> None:
    token = hs_token(AT_HEADER, claims_at(clock(), **extra))

    if expected is None:
        assert strict_auth.verify_access_token(token)["iss"] == "https://issuer.example"
    else:
        assert rejection(strict_auth, token) == expected


# --------------------------------------------------------------------------- claims


@pytest.mark.parametrize("name", ["sub", "sid", "jti", "exp", "iat"])
def test_missing_required_claim(auth: TokenAuth, clock: ManualClock, name: str) -> None:
    claims = claims_at(clock())
    del claims[name]

    assert rejection(auth, hs_token(AT_HEADER, claims)) == f"missing or invalid claim: {name}"


@pytest.mark.parametrize("name", ["sub", "sid", "jti"])
@pytest.mark.parametrize("value", ["", 42, None, ["42"]])
def test_invalid_string_claim(auth: TokenAuth, clock: ManualClock, name: str, value: Any) -> None:
    token = hs_token(AT_HEADER, claims_at(clock(), **{name: value}))

    assert rejection(auth, token) == f"missing or invalid claim: {name}"


# JSON text spliced into the payload as is, so NaN/Infinity/huge numbers are exactly what is sent.
NON_NUMBERS = [
    "NaN",
    "Infinity",
    "-Infinity",
    '"1900000000"',
    "true",
    "false",
    "null",
    "[1900000000]",
    "{}",
    "1e400",
    "9" * 400,
]


@pytest.mark.parametrize("name", ["exp", "iat"])
@pytest.mark.parametrize("raw", NON_NUMBERS, ids=[r if len(r) < 20 else "huge-int" for r in NON_NUMBERS])
def test_time_claim_that_is_not_a_finite_number(
    auth: TokenAuth, clock: ManualClock, name: str, raw: str
) -> None:
    claims = claims_at(clock())
    del claims[name]
    payload = json.dumps(claims, separators=(",", ":"))[:-1] + f',"{name}":{raw}}}'

    assert rejection(auth, hs_token(AT_HEADER, payload)) == f"missing or invalid claim: {name}"


def test_huge_integer_nbf_is_refused(auth: TokenAuth, clock: ManualClock) -> None:
    payload = json.dumps(claims_at(clock()), separators=(",", ":"))[:-1] + ',"nbf":' + "9" * 400 + "}"

    assert rejection(auth, hs_token(AT_HEADER, payload)) == "token not yet valid"


def test_float_times_are_accepted(auth: TokenAuth, clock: ManualClock) -> None:
    token = hs_token(AT_HEADER, claims_at(clock(), iat=clock() - 0.5, exp=clock() + 60.5))

    assert auth.verify_access_token(token)["exp"] == clock() + 60.5


@pytest.mark.parametrize("payload", ["[]", '"claims"', "42", "null", "not json", "{"])
def test_payload_that_is_not_a_json_object(auth: TokenAuth, payload: str) -> None:
    assert rejection(auth, hs_token(AT_HEADER, payload)) == "malformed token"


# --------------------------------------------------------------------------- tampering and garbage


def test_tampered_payload_fails_the_signature(auth: TokenAuth) -> None:
    token = issue(auth)
    header, _, signature = token.split(".")
    forged = segment({**auth.verify_access_token(token), "sub": "admin"})

    assert rejection(auth, f"{header}.{forged}.{signature}") == "signature verification failed"


def test_tampered_header_fails_the_signature(auth: TokenAuth) -> None:
    _, payload, signature = issue(auth).split(".")
    header = segment({"alg": "HS256", "typ": "at+jwt", "x": 1})

    assert rejection(auth, f"{header}.{payload}.{signature}") == "signature verification failed"


def test_flipped_signature_character_fails_the_signature(auth: TokenAuth) -> None:
    token = issue(auth)
    head, signature = token.rsplit(".", 1)
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]

    assert rejection(auth, f"{head}.{flipped}") == "signature verification failed"


def test_signature_of_another_token_fails(auth: TokenAuth, clock: ManualClock) -> None:
    first = issue(auth)
    clock.advance(1)
    second = issue(auth)
    spliced = first.rsplit(".", 1)[0] + "." + second.rsplit(".", 1)[1]

    assert rejection(auth, spliced) == "signature verification failed"


@pytest.mark.parametrize(
    ("cut", "expected"),
    [
        (lambda t: t.rsplit(".", 1)[0], "malformed token"),  # header.payload
        (lambda t: t.rsplit(".", 1)[0] + ".", "signature verification failed"),  # empty signature
        (lambda t: t[:-3], "signature verification failed"),  # 40 chars: a valid, shorter MAC
        (lambda t: t[:-2], "malformed token"),  # 41 chars is never base64
        (lambda t: t.split(".")[0], "malformed token"),
        (lambda t: t[: len(t) // 2], "malformed token"),
    ],
    ids=["no-signature-part", "empty-signature", "minus-3", "minus-2", "header-only", "half"],
)
def test_truncated_token_is_refused(auth: TokenAuth, cut: Callable[[str], str], expected: str) -> None:
    assert rejection(auth, cut(issue(auth))) == expected


def test_64_kb_token_is_too_large(auth: TokenAuth) -> None:
    token = issue(auth)
    huge = token + "A" * (64 * 1024 - len(token))

    assert len(huge) == 64 * 1024
    assert rejection(auth, huge) == "token too large"


def test_size_limit_boundary(auth: TokenAuth) -> None:
    assert rejection(auth, "a.b." + "c" * (8192 - 4)) == "malformed token"
    assert rejection(auth, "a.b." + "c" * (8193 - 4)) == "token too large"


def test_big_but_allowed_claims_still_verify(auth: TokenAuth) -> None:
    token = issue(auth, {"blob": "x" * 5000})

    assert len(token) > 6000
    assert auth.verify_access_token(token)["blob"] == "x" * 5000


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c.d",
        "....",
        "@@@.###.$$$",
        "a.b.c",
        "..",
        "eyJhbGciOiJIUzI1NiJ9",
        f"{b64url(b'not json')}.{segment({})}.AAAA",
        f"{segment([1, 2])}.{segment({})}.AAAA",
        f"{segment('HS256')}.{segment({})}.AAAA",
        f"{b64url(UNFINISHED_JSON)}.{segment({})}.AAAA",
        f"{segment(AT_HEADER)}.!!!!.AAAA",
        f"{segment(AT_HEADER)}.{segment({})}.@@@@",
        "Bearer " + "a.b.c",
    ],
)
def test_garbage_is_malformed(auth: TokenAuth, token: str) -> None:
    assert rejection(auth, token) == "malformed token"


def test_refresh_token_presented_as_an_access_token(auth: TokenAuth, client: TestClient) -> None:
    response = client.post("/login", json={"transport": "body"})
    assert response.status_code == 200
    refresh_token = response.json()["refresh_token"]

    assert refresh_token.count(".") == 4
    assert rejection(auth, refresh_token) == "malformed token"
    me = client.get("/me", headers={"Authorization": f"Bearer {refresh_token}"})
    assert me.status_code == 401
    assert me.json() == {"error": "invalid_token", "error_description": "malformed token"}
    # The access token of the same login works, so the refusal is about the token kind.
    access = response.json()["access_token"]
    assert client.get("/me", headers={"Authorization": f"Bearer {access}"}).status_code == 200


def test_token_of_another_secret_fails_the_signature(make_auth: Factory, auth: TokenAuth) -> None:
    other = make_auth(secret_key="another-secret-0123456789-0123456789-0123")

    assert rejection(auth, issue(other)) == "signature verification failed"


# --------------------------------------------------------------------------- key rings


@pytest.mark.parametrize(("key_name", "algorithm"), [("ec", "ES256"), ("rsa", "RS256"), ("ed", "EdDSA")])
def test_asymmetric_key_ring(
    make_auth: Factory, rsa_key: Any, ec_key: Any, ed_key: Any, key_name: str, algorithm: str
) -> None:
    private = {"rsa": rsa_key, "ec": ec_key, "ed": ed_key}[key_name]
    key = SigningKey.from_pem(pem_private(private), kid=f"{key_name}-2025")
    auth = make_auth(keys=KeyRing([key]), clock=ManualClock(time.time()))

    token = issue(auth, {"email": "a@example.com"})

    assert key.algorithm == algorithm
    assert jwt.get_unverified_header(token) == {"alg": algorithm, "typ": "at+jwt", "kid": f"{key_name}-2025"}
    assert auth.verify_access_token(token)["email"] == "a@example.com"
    # Any JWT library holding the public key can verify it.
    assert jwt.decode(token, private.public_key(), algorithms=[algorithm])["sub"] == "42"


def test_pem_given_as_text_and_list_of_keys_are_accepted(make_auth: Factory, ec_key: Any) -> None:
    auth = make_auth(keys=[SigningKey.from_pem(pem_private(ec_key).decode(), kid="text")])

    assert jwt.get_unverified_header(issue(auth))["kid"] == "text"


def test_rotation_old_key_verify_only_still_verifies_old_tokens(
    make_auth: Factory, ec_key: Any, ed_key: Any
) -> None:
    old_auth = make_auth(keys=[SigningKey.from_pem(pem_private(ec_key), kid="2024")])
    old_token = issue(old_auth)
    new_ring = KeyRing(
        [
            SigningKey.from_pem(pem_private(ed_key), kid="2025"),
            SigningKey.verify_only(pem_public(ec_key), kid="2024", algorithm="ES256"),
        ]
    )
    new_auth = make_auth(keys=new_ring)
    new_token = issue(new_auth)

    assert new_ring.signing_key.kid == "2025"
    assert jwt.get_unverified_header(new_token) == {"alg": "EdDSA", "typ": "at+jwt", "kid": "2025"}
    assert new_auth.verify_access_token(old_token)["sub"] == "42"
    assert new_auth.verify_access_token(new_token)["sub"] == "42"
    # The old ring never learnt the new key.
    assert rejection(old_auth, new_token) == "algorithm not allowed"


def test_token_claiming_the_old_kid_but_signed_with_another_key_fails(
    make_auth: Factory, clock: ManualClock, ec_key: Any
) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    ring = KeyRing(
        [
            SigningKey.from_pem(pem_private(other), kid="2025"),
            SigningKey.verify_only(pem_public(ec_key), kid="2024", algorithm="ES256"),
        ]
    )
    auth = make_auth(keys=ring)
    forged = jwt.encode(
        claims_at(clock()), other, algorithm="ES256", headers={"typ": "at+jwt", "kid": "2024"}
    )

    assert rejection(auth, forged) == "signature verification failed"


def test_signing_kid_chooses_the_signer(make_auth: Factory, ec_key: Any, ed_key: Any) -> None:
    ring = KeyRing(
        [
            SigningKey.from_pem(pem_private(ec_key), kid="a"),
            SigningKey.from_pem(pem_private(ed_key), kid="b"),
        ],
        signing_kid="b",
    )
    auth = make_auth(keys=ring)

    assert jwt.get_unverified_header(issue(auth)) == {"alg": "EdDSA", "typ": "at+jwt", "kid": "b"}


def test_verify_only_ring_cannot_be_built(ec_key: Any) -> None:
    only = SigningKey.verify_only(pem_public(ec_key), kid="2024", algorithm="ES256")

    with pytest.raises(ConfigurationError, match=r"no key that can sign \(all are verify-only\)"):
        KeyRing([only])


def test_signing_kid_naming_a_verify_only_key_is_refused(ec_key: Any, ed_key: Any) -> None:
    ring = [
        SigningKey.from_pem(pem_private(ed_key), kid="new"),
        SigningKey.verify_only(pem_public(ec_key), kid="old", algorithm="ES256"),
    ]

    with pytest.raises(ConfigurationError, match="signing_kid 'old' names no key with a private part"):
        KeyRing(ring, signing_kid="old")
    with pytest.raises(ConfigurationError, match="signing_kid 'missing' names no key with a private part"):
        KeyRing(ring, signing_kid="missing")


def test_duplicate_kids_are_refused(ec_key: Any, ed_key: Any) -> None:
    with pytest.raises(ConfigurationError, match="two keys share the kid 'same'"):
        KeyRing(
            [
                SigningKey.from_pem(pem_private(ec_key), kid="same"),
                SigningKey.from_pem(pem_private(ed_key), kid="same"),
            ]
        )


def test_several_keys_need_kids_and_a_ring_needs_a_key(ec_key: Any) -> None:
    with pytest.raises(ConfigurationError, match="every key in a ring of several keys needs a kid"):
        KeyRing([SigningKey.hmac(SECRET), SigningKey.from_pem(pem_private(ec_key), kid="k")])
    with pytest.raises(ConfigurationError, match="a key ring needs at least one key"):
        KeyRing([])


def test_rsa_1024_is_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - must be refused

    with pytest.raises(ConfigurationError, match="RSA keys need at least 2048 bits"):
        SigningKey.from_pem(pem_private(weak), kid="weak")
    with pytest.raises(ConfigurationError, match="RSA keys need at least 2048 bits"):
        SigningKey.verify_only(pem_public(weak), kid="weak", algorithm="RS256")


@pytest.mark.parametrize(
    ("key_name", "algorithm"),
    [
        ("ec", "RS256"),
        ("ec", "ES384"),  # a P-256 key is bound to ES256 only
        ("ec", "EdDSA"),
        ("rsa", "ES256"),
        ("rsa", "EdDSA"),
        ("ed", "RS256"),
        ("ed", "ES256"),
    ],
)
def test_key_is_bound_to_its_algorithm(
    rsa_key: Any, ec_key: Any, ed_key: Any, key_name: str, algorithm: str
) -> None:
    private = {"rsa": rsa_key, "ec": ec_key, "ed": ed_key}[key_name]

    with pytest.raises(ConfigurationError, match=f"cannot be used with {algorithm}$"):
        SigningKey.from_pem(pem_private(private), kid="k", algorithm=algorithm)
    with pytest.raises(ConfigurationError, match=f"cannot be used with {algorithm}$"):
        SigningKey.verify_only(pem_public(private), kid="k", algorithm=algorithm)


@pytest.mark.parametrize("algorithm", ["HS256", "none", "RS1"])
def test_asymmetric_keys_refuse_non_asymmetric_algorithms(ec_key: Any, algorithm: str) -> None:
    with pytest.raises(ConfigurationError, match="is not an asymmetric algorithm we support"):
        SigningKey.from_pem(pem_private(ec_key), kid="k", algorithm=algorithm)


def test_ec_curve_picks_the_algorithm() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())

    assert SigningKey.from_pem(pem_private(p384), kid="k").algorithm == "ES384"


def test_unsupported_key_type_and_bad_pem_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="key 'k': unsupported key type"):
        SigningKey.from_pem(pem_private(ed448.Ed448PrivateKey.generate()), kid="k")
    with pytest.raises(ConfigurationError, match="key 'k': cannot load the private key PEM"):
        SigningKey.from_pem(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n", kid="k")
    with pytest.raises(ConfigurationError, match="key 'k': cannot load the public key PEM"):
        SigningKey.verify_only("not a pem", kid="k", algorithm="ES256")


def test_hmac_key_refuses_asymmetric_algorithm_and_short_secret() -> None:
    with pytest.raises(ConfigurationError, match="RS256 is not an HMAC algorithm"):
        SigningKey.hmac(SECRET, algorithm="RS256")
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        SigningKey.hmac("x" * 31)


# --------------------------------------------------------------------------- app claims at login


@pytest.fixture
def run() -> Iterator[Callable[[Any], Any]]:
    runner = asyncio.Runner()
    yield runner.run
    runner.close()


@pytest.mark.parametrize("name", ["sub", "sid", "jti", "iat", "exp", "nbf", "iss", "aud"])
def test_reserved_claims_are_refused_at_login(auth: TokenAuth, run: Callable[[Any], Any], name: str) -> None:
    with pytest.raises(ValueError, match=rf"claims \['{name}'\] are set by starlette-refresh"):
        run(auth.sessions.login("42", {"email": "a@example.com", name: "x"}))


@pytest.mark.parametrize(
    "claims",
    [
        {"when": datetime(2025, 1, 1, tzinfo=UTC)},
        {"ratio": float("nan")},
        {"ratio": float("inf")},
        {"tags": {"a", "b"}},
        {"raw": b"bytes"},
        {"nested": {"obj": object()}},
    ],
)
def test_non_json_claims_are_refused_at_login(
    auth: TokenAuth, run: Callable[[Any], Any], claims: dict[Any, Any]
) -> None:
    with pytest.raises(ValueError, match="claims must be JSON-serializable"):
        run(auth.sessions.login("42", claims))


@settings(max_examples=100, deadline=None)
@given(
    algorithm=st.sampled_from(["HS256", "HS384", "HS512"]),
    kid=st.one_of(st.none(), st.text(min_size=1, max_size=8)),
    claims=st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in RESERVED_CLAIMS),
        st.one_of(st.integers(), st.text(max_size=20), st.booleans()),
        max_size=4,
    ),
)
def test_hmac_tokens_are_byte_for_byte_what_pyjwt_signs(
    algorithm: str, kid: str | None, claims: dict[str, object]
) -> None:
    """The codec signs HMAC tokens itself (a refresh signs one); they must be PyJWT's exact bytes."""
    secret = b"s" * 64
    ring = KeyRing([SigningKey.hmac(secret, algorithm=algorithm, kid=kid)])
    codec = AccessTokenCodec(ring, Settings(access_ttl=60), lambda: 1_800_000_000.0)

    issued = codec.issue("alice", "S" * 22, claims)

    header = {"typ": "at+jwt", **({"kid": kid} if kid is not None else {})}
    body = json.dumps(dict(issued.claims), separators=(",", ":")).encode()
    assert issued.token == PyJWS().encode(body, secret, algorithm=algorithm, headers=header)
    assert codec.verify(issued.token)["sub"] == "alice"
