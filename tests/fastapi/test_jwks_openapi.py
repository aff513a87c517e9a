"""The OpenAPI schema of examples/fastapi_app.py documents ``GET /auth/jwks.json`` when the app has
asymmetric keys, and Schemathesis finds no answer it does not declare (every check, as in
tests/fastapi/test_schemathesis.py, whose app signs with a shared secret and so publishes no keys).

The schema's ``Jwk`` allows the public members only (``additionalProperties: false``), so the
response-conformance check would refuse a published ``d`` or ``k``.
"""

from __future__ import annotations

from collections import Counter

import fakeredis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import settings

from examples.fastapi_app import PUBLIC_PATHS, create_app
from starlette_refresh import KeyRing, SigningKey, TokenAuth
from tests.apps import SECRET
from tests.unit.test_jwks import private_pem, public_pem

JWKS = "/auth/jwks.json"


def build_app() -> FastAPI:
    keys = KeyRing(
        [
            SigningKey.from_pem(private_pem("ES256"), kid="signing"),
            SigningKey.verify_only(public_pem(private_pem("RS256")), kid="retiring", algorithm="RS256"),
            SigningKey.verify_only(public_pem(private_pem("EdDSA")), kid="next", algorithm="EdDSA"),
        ]
    )
    auth = TokenAuth(secret_key=SECRET, keys=keys, redis=fakeredis.aioredis.FakeRedis(), exclude=PUBLIC_PATHS)
    return create_app(auth)


APP = build_app()
SCHEMA = schemathesis.openapi.from_dict(APP.openapi())
SCHEMA.app = APP
TALLY: Counter[int] = Counter()


@SCHEMA.include(path=JWKS).parametrize()
@settings(max_examples=30, deadline=None)
def test_the_jwks_operation_passes_every_check(case: schemathesis.Case) -> None:
    response = case.call_and_validate()
    TALLY[response.status_code] += 1


def test_the_fuzzer_got_the_set() -> None:
    """Runs after the test above (file order): the fuzzer did reach the 200."""
    if not TALLY:
        pytest.skip("test_the_jwks_operation_passes_every_check did not run")
    assert TALLY[200] > 0, TALLY


def test_the_schema_documents_the_set_only_with_public_keys() -> None:
    documented = APP.openapi()["paths"][JWKS]["get"]
    assert set(documented["responses"]) == {"200", "400", "403"}
    assert documented["responses"]["200"]["headers"]["Cache-Control"]["required"] is True
    hmac_only = create_app(TokenAuth(secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis()))
    assert JWKS not in hmac_only.openapi()["paths"], "a shared secret publishes nothing (404)"


def test_the_documented_jwk_admits_no_private_member() -> None:
    """What the response-conformance check holds the answer to: the public members and no others."""
    jwk = APP.openapi()["components"]["schemas"]["Jwk"]
    assert jwk["additionalProperties"] is False
    assert not {"d", "p", "q", "dp", "dq", "qi", "oth", "k"} & set(jwk["properties"])
