"""The published JWK Set (RFC 7517): ``GET /auth/jwks.json``, and the keys' export behind it.

Every asymmetric key of the ring is published (signing and verify-only), with ``kid``, ``alg`` and
``use: "sig"`` and its public members only; an HMAC key never is, and a ring of HMAC keys alone
publishes nothing (404). The real verifiers (PyJWT's ``PyJWKClient``, Node's ``jose``) against a real
uvicorn are in tests/integration/test_jwks.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from starlette_refresh import TokenAuth
from starlette_refresh.access_tokens import AccessTokenCodec
from starlette_refresh.jwks import JWKS_MAX_AGE, jwk_set
from starlette_refresh.keys import KeyRing, SigningKey
from starlette_refresh.settings import Settings
from tests.apps import SECRET, build_app
from tests.unit.test_contract import BASE_URL, FOREIGN_ORIGIN, assert_cross_site

MakeAuth = Callable[..., TokenAuth]

#: Every asymmetric algorithm the key ring signs with, one per family member.
ASYMMETRIC = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]
_CURVES = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}
#: Members of a JWK that hold private or symmetric key material (RFC 7518 sections 6.2.2, 6.3.2, 6.4.1;
#: RFC 8037 section 2).
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
HMAC_SECRET = "an-hmac-key-that-must-never-be-published-0123456789"


def private_pem(algorithm: str) -> bytes:
    """A fresh private key for ``algorithm``, in PEM."""
    key: Any
    if algorithm.startswith(("RS", "PS")):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm in _CURVES:
        key = ec.generate_private_key(_CURVES[algorithm])
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def public_pem(private: bytes) -> bytes:
    """The public half of a private PEM, in PEM (what a verify-only key is configured with)."""
    key = serialization.load_pem_private_key(private, password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def signed_by(key: SigningKey) -> str:
    """An access token signed by ``key``, minted by the library's own codec."""
    codec = AccessTokenCodec(KeyRing([key]), Settings(), time.time)
    return codec.issue("42", "session-1").token


# --- the export ------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ASYMMETRIC)
def test_each_algorithm_is_published_as_a_jwk_that_verifies_its_tokens(algorithm: str) -> None:
    key = SigningKey.from_pem(private_pem(algorithm), kid=f"k-{algorithm}", algorithm=algorithm)
    token = signed_by(key)

    document = jwk_set(KeyRing([key]))

    assert document is not None
    (jwk,) = document["keys"]
    assert (jwk["kid"], jwk["alg"], jwk["use"]) == (f"k-{algorithm}", algorithm, "sig")
    assert jwk["kty"] == {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}[algorithm[:2]]
    assert not PRIVATE_MEMBERS & set(jwk), f"private members published: {PRIVATE_MEMBERS & set(jwk)}"
    # A stock library builds the key from the JWK alone and checks the library's signature with it.
    claims = jwt.decode(token, jwt.PyJWK(jwk), algorithms=[algorithm])
    assert claims["sub"] == "42"


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_a_jwk_holds_exactly_the_public_members_of_its_key_type(algorithm: str) -> None:
    """Nothing beyond the RFC 7518/8037 public members: no private part, and no ``key_ops`` (PyJWT
    writes one for RSA; RFC 7517 section 4.3 says not to use it beside ``use``)."""
    key = SigningKey.from_pem(private_pem(algorithm), kid="k", algorithm=algorithm)
    jwk = key.public_jwk()
    assert jwk is not None
    public = {"RSA": {"n", "e"}, "EC": {"crv", "x", "y"}, "OKP": {"crv", "x"}}[jwk["kty"]]
    assert set(jwk) == {"kty", "kid", "alg", "use"} | public


@pytest.mark.parametrize("algorithm", ["RS256", "ES384", "EdDSA"])
def test_a_private_key_passed_as_the_public_one_still_exports_no_private_member(algorithm: str) -> None:
    """The export keeps the public members by name, so even a key built by hand with its private
    half in ``public`` (which PyJWT would export with ``d``, ``p``, ``q``...) publishes none of it."""
    private = serialization.load_pem_private_key(private_pem(algorithm), password=None)
    careless = SigningKey(kid="k", algorithm=algorithm, public=private, private=private)
    jwk = careless.public_jwk()
    assert jwk is not None
    assert not PRIVATE_MEMBERS & set(jwk)


def test_hmac_keys_are_never_published() -> None:
    hmac = SigningKey.hmac(HMAC_SECRET, kid="old-hmac")
    ec_key = SigningKey.from_pem(private_pem("ES256"), kid="new-ec")
    assert hmac.public_jwk() is None
    document = jwk_set(KeyRing([hmac, ec_key]))
    assert document is not None
    assert [jwk["kid"] for jwk in document["keys"]] == ["new-ec"]
    assert "k" not in document["keys"][0]
    assert jwk_set(KeyRing([hmac])) is None


def test_verify_only_keys_are_published_beside_the_signing_key() -> None:
    """During a rotation the set holds the key that signs and those whose tokens are still valid."""
    old, new, third = private_pem("ES256"), private_pem("RS256"), private_pem("EdDSA")
    ring = KeyRing(
        [
            SigningKey.verify_only(public_pem(old), kid="old", algorithm="ES256"),
            SigningKey.from_pem(new, kid="new"),
            SigningKey.verify_only(public_pem(third), kid="next", algorithm="EdDSA"),
        ]
    )
    document = jwk_set(ring)
    assert document is not None
    assert [(jwk["kid"], jwk["alg"]) for jwk in document["keys"]] == [
        ("old", "ES256"),
        ("new", "RS256"),
        ("next", "EdDSA"),
    ]
    # The verify-only key's JWK verifies what its private half signed elsewhere.
    token = signed_by(SigningKey.from_pem(old, kid="old"))
    assert jwt.decode(token, jwt.PyJWK(document["keys"][0]), algorithms=["ES256"])


# --- the endpoint ------------------------------------------------------------------------------------


@pytest.fixture
def ring() -> KeyRing:
    """ES256 signing, an RSA key verify-only, and an HMAC key that must stay unpublished."""
    return KeyRing(
        [
            SigningKey.from_pem(private_pem("ES256"), kid="signing"),
            SigningKey.verify_only(public_pem(private_pem("RS256")), kid="retiring", algorithm="RS256"),
            SigningKey.hmac(HMAC_SECRET, kid="hmac"),
        ]
    )


@pytest.fixture
def asymmetric_client(make_auth: MakeAuth, ring: KeyRing) -> Iterator[TestClient]:
    with TestClient(build_app(make_auth(keys=ring)), base_url=BASE_URL) as client:
        yield client


def test_the_endpoint_publishes_the_set_without_an_access_token(asymmetric_client: TestClient) -> None:
    answer = asymmetric_client.get("/auth/jwks.json")

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert [(jwk["kid"], jwk["alg"]) for jwk in answer.json()["keys"]] == [
        ("signing", "ES256"),
        ("retiring", "RS256"),
    ]
    assert HMAC_SECRET not in answer.text
    assert answer.headers["cache-control"] == f"public, max-age={JWKS_MAX_AGE}"
    assert "pragma" not in answer.headers
    assert "set-cookie" not in answer.headers


def test_tokens_the_app_issues_verify_with_the_published_set(asymmetric_client: TestClient) -> None:
    issued = asymmetric_client.post("/login", json={"transport": "body"}).json()
    published = jwt.PyJWKSet.from_dict(asymmetric_client.get("/auth/jwks.json").json())
    kid = jwt.get_unverified_header(issued["access_token"])["kid"]
    # The app runs on the suite's manual clock, in 2027: its tokens are "issued in the future" here.
    claims = jwt.decode(
        issued["access_token"], published[kid], algorithms=["ES256"], options={"verify_iat": False}
    )
    assert claims["sub"] == "42"


def test_a_ring_of_hmac_keys_only_publishes_nothing(make_auth: MakeAuth) -> None:
    """A shared secret has no public half: the endpoint is the library's 404, never the secret."""
    with TestClient(build_app(make_auth()), base_url=BASE_URL) as client:
        answer = client.get("/auth/jwks.json")
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"
    assert "shared secret" in answer.json()["error_description"]
    assert answer.headers["cache-control"] == "no-store"
    assert SECRET not in answer.text


def test_only_get_is_answered(asymmetric_client: TestClient) -> None:
    answer = asymmetric_client.post("/auth/jwks.json")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET"


def test_a_cross_site_page_is_refused_like_everywhere_under_the_prefix(asymmetric_client: TestClient) -> None:
    """Nothing secret here, but the rule for the prefix has no exceptions (a verifier is a server,
    which sends no ``Origin``; a same-origin page's fetch passes)."""
    assert_cross_site(asymmetric_client.get("/auth/jwks.json", headers={"Origin": FOREIGN_ORIGIN}))
    same_origin = asymmetric_client.get("/auth/jwks.json", headers={"Sec-Fetch-Site": "same-origin"})
    assert same_origin.status_code == 200


def test_behind_a_path_prefix_the_set_is_at_the_route_path(make_auth: MakeAuth, ring: KeyRing) -> None:
    outer = Starlette(routes=[Mount("/api", app=build_app(make_auth(keys=ring)))])
    with TestClient(outer, base_url=BASE_URL) as client:
        answer = client.get("/api/auth/jwks.json")
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["keys"]) == 2


def test_a_custom_prefix_moves_the_set(make_auth: MakeAuth, ring: KeyRing) -> None:
    with TestClient(build_app(make_auth(keys=ring, prefix="/session")), base_url=BASE_URL) as client:
        assert client.get("/session/jwks.json").status_code == 200
        assert client.get("/auth/jwks.json").status_code == 401  # not the library's any more
