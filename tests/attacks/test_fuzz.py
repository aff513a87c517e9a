"""Fuzzing the token parsers and the endpoints with hypothesis.

Parsers: ``AccessTokenCodec.verify`` (through ``TokenAuth.verify_access_token``) and
``RefreshTokenCodec.parse`` get arbitrary text, arbitrary bytes decoded with ``surrogateescape``, and
structured inputs shaped like the real thing (three base64url segments carrying fuzzed JOSE headers
and claims, most of them correctly HMAC-signed so that the claim checks run; five-part ``srt1``
strings, many with a valid MAC). Only :class:`InvalidToken` / :class:`InvalidGrant` may come out;
anything else is a bug that hypothesis shrinks to a minimal input.

Endpoints: the ASGI app behind a TestClient that re-raises any exception escaping the app
(``raise_server_exceptions=True``), fed fuzzed bodies, content types, cookies, Origin and
Authorization headers (as raw bytes, duplicates included), query strings, methods and session ids,
mixed with live tokens and mutations of them so that the deep paths (rotation, grace, reuse,
revocation) run too. Every answer must be a contract status with a JSON error body (or a 200/204);
never a 500, never a 503 (the store is up the whole time, so a 503 would hide a store error caused
by the input).

Budget (the whole file takes about 30-45 s): 3000 inputs per parser (1000 each of text, bytes and
structured) and 800 per endpoint target. Each test prints how many inputs it really tried
(``[fuzz] <target>: <n> inputs``), shown even without ``-s``; ``SR_FUZZ_SCALE=10`` runs ten times
as many.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import anyio.from_thread
import httpx2
import jwt
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from starlette_refresh import InvalidGrant, InvalidToken, KeyRing, SigningKey, TokenAuth
from starlette_refresh.refresh_tokens import RefreshToken, RefreshTokenCodec
from tests.apps import SECRET, build_app

SCALE = float(os.environ.get("SR_FUZZ_SCALE", "1"))
PARSER_EXAMPLES = int(1000 * SCALE)  # per input family: 3 families, 3000 inputs per parser
ENDPOINT_EXAMPLES = int(800 * SCALE)
NOW = 1_800_000_000  # the clock fixture's time
BASE_URL = "https://testserver"
BARE_CHALLENGE = 'Bearer realm="api"'
B64URL = string.ascii_letters + string.digits + "-_"
HEX = "0123456789abcdef"

FUZZ = settings(
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
PARSER_FUZZ = settings(FUZZ, max_examples=PARSER_EXAMPLES)
ENDPOINT_FUZZ = settings(FUZZ, max_examples=ENDPOINT_EXAMPLES)


@dataclass
class Tally:
    """How many inputs one fuzz target tried."""

    name: str
    count: int = 0


class Fuzz(Protocol):
    """Signature of the ``fuzz`` fixture."""

    def __call__(
        self, name: str, budget: settings, check: Callable[..., None], **strategies: st.SearchStrategy[Any]
    ) -> None: ...


@pytest.fixture
def fuzz(capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> Iterator[Fuzz]:
    """Runs one fuzz target: ``check(**drawn)`` on inputs drawn from ``strategies`` under ``budget``.

    Counts every input under ``name``, and after the test prints each target's count (even without
    ``-s``) and records it in the test's user properties. A target that tried no input fails.
    """
    tallies: list[Tally] = []

    def run(
        name: str, budget: settings, check: Callable[..., None], **strategies: st.SearchStrategy[Any]
    ) -> None:
        tally = Tally(name)
        tallies.append(tally)

        def target(**drawn: Any) -> None:
            tally.count += 1
            check(**drawn)

        # hypothesis keys its example database by the test function's source, which every target
        # shares here; the name keeps each target's saved failures its own to replay.
        target._hypothesis_internal_add_digest = name.encode()  # type: ignore[attr-defined]
        budget(given(**strategies)(target))()
        assert tally.count > 0, f"{name} tried no input"

    yield run
    with capsys.disabled():
        for entry in tallies:
            print(f"\n[fuzz] {entry.name}: {entry.count} inputs", end="")
            request.node.user_properties.append((f"fuzz:{entry.name}", entry.count))


# ---------------------------------------------------------------------------------------------
# strategies: JSON values with the awkward corners (NaN, infinities, huge integers, deep nesting)
# ---------------------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from([2**53, 2**53 + 1, 2**63, -(2**63), 10**20, -0.0, 1e308, NOW, NOW + 300, NOW - 300]),
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=4,
)
TIMES = st.one_of(
    st.integers(min_value=NOW - 1000, max_value=NOW + 1000),
    st.floats(min_value=NOW - 1000, max_value=NOW + 1000),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 10**400, 2**53, True, "1800000000", None]),
    SCALARS,
)
ALGS = st.sampled_from(
    ["HS256", "HS384", "HS512", "RS256", "PS256", "ES256", "ES384", "EdDSA", "none", "None", "hs256", ""]
)
TYPS = st.sampled_from(["at+jwt", "AT+JWT", "application/at+jwt", "JWT", "jwt", "", "at+jwt "])
KIDS = st.sampled_from(["h", "e", "r", "d", "k1", "", "../../etc/passwd", "h\x00"])
MISSING: Any = object()  # drops the member it is drawn for


def mostly(good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any] = SCALARS) -> st.SearchStrategy[Any]:
    """Usually a plausible value (so later checks run), sometimes an odd one, sometimes absent."""
    return st.one_of(good, good, good, odd, st.just(MISSING))


def present(members: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in members.items() if value is not MISSING}


HEADERS = st.fixed_dictionaries(
    {"alg": mostly(st.just("HS256") | ALGS), "typ": mostly(st.just("at+jwt") | TYPS)},
    optional={
        "kid": KIDS | SCALARS,
        "crit": st.lists(st.text(max_size=5), max_size=2) | SCALARS,
        "jku": st.just("https://evil.example/jwks.json") | SCALARS,
        "jwk": JSON_VALUES,
        "b64": st.booleans() | SCALARS,
        "x5u": SCALARS,
    },
).map(present)
CLAIMS = st.fixed_dictionaries(
    {
        "sub": mostly(st.just("42")),
        "sid": mostly(st.just("AbCdEfGhIjKlMnOpQrSt_-")),
        "jti": mostly(st.just("j")),
        "iat": mostly(st.just(NOW), TIMES),
        "exp": mostly(st.just(NOW + 300), TIMES),
    },
    optional={
        "nbf": TIMES,
        "iss": st.just("https://i.example") | SCALARS,
        "aud": st.just("api") | JSON_VALUES,
        "scope": JSON_VALUES,
    },
).map(present)
RAW_JSON = st.sampled_from(
    [
        '{"alg":NaN,"typ":"at+jwt"}',
        '{"alg":"HS256","typ":"at+jwt"} trailing',
        '{"alg":"HS256","alg":"none","typ":"at+jwt"}',
        '{"alg":1e999}',
        '{"exp":Infinity,"iat":-Infinity,"sub":"42","sid":"s","jti":"j"}',
        '{"exp":' + "9" * 5000 + "}",
        "\ufeff{}",
        "null",
        "",
    ]
)
# Nesting deeper than Python's recursion limit (json.loads raises RecursionError). Kept to the
# parser fuzz; the endpoint fuzz leaves it out so that one known bug does not mask others there
# (test_attack_catalogue.py has the HTTP cases: deeply-nested-json-header and -body).
DEEP_JSON = st.sampled_from(["[" * 2000 + "]" * 2000, '{"a":' * 3000])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True, separators=(",", ":"))


def json_segment(value: Any) -> str:
    return b64(dumps(value).encode())


def padded_segment(value: Any) -> str:
    return base64.urlsafe_b64encode(dumps(value).encode()).decode()


def standard_b64_segment(value: Any) -> str:
    return base64.b64encode(dumps(value).encode()).decode()


TEXT_40 = st.text(max_size=40)


def segments(values: st.SearchStrategy[Any], raw_json: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """One base64url segment: usually of JSON, sometimes oddly encoded or not base64 at all."""
    as_json = values.map(json_segment)
    return st.one_of(
        as_json,
        as_json,
        as_json,
        raw_json.map(lambda text: b64(text.encode())),
        st.binary(max_size=64).map(b64),
        values.map(padded_segment),
        values.map(standard_b64_segment),
        TEXT_40,
    )


SEGMENTS = {
    deep: (segments(HEADERS, RAW_JSON | DEEP_JSON if deep else RAW_JSON), segments(CLAIMS, RAW_JSON))
    for deep in (False, True)
}
# How the signature part is made: with our secret (so the claim checks run), or not at all.
SIGNATURES = st.one_of(
    st.just("hs256"),
    st.just("hs256"),
    st.just("hs256"),
    st.just("hs512"),
    st.binary(max_size=600).map(lambda raw: "=" + b64(raw)),
    st.just("=" + ""),
    TEXT_40.map(lambda text: "=" + text),
)
TAILS = st.sampled_from(["", "", "", ".", " ", "\x00", ".extra"])


def make_jwt(header: str, payload: str, signature: str, tail: str) -> str:
    signing_input = f"{header}.{payload}"
    if signature in ("hs256", "hs512"):
        digest = hashlib.sha256 if signature == "hs256" else hashlib.sha512
        signature = b64(
            hmac.new(SECRET.encode(), signing_input.encode("utf-8", "surrogatepass"), digest).digest()
        )
    else:
        signature = signature[1:]
    return f"{signing_input}.{signature}{tail}"


def jwt_like(deep: bool = True) -> st.SearchStrategy[str]:
    """Three segments with fuzzed JOSE headers and claims, most of them correctly HMAC-signed."""
    header_segments, claim_segments = SEGMENTS[deep]
    return st.builds(make_jwt, header_segments, claim_segments, SIGNATURES, TAILS)


def refresh_mac(body: str) -> str:
    """The refresh-token MAC as the format defines it (HMAC-SHA256 under the derived key)."""
    key = hmac.new(SECRET.encode(), b"starlette-refresh/refresh-token/v1", hashlib.sha256).digest()
    return b64(hmac.new(key, body.encode("utf-8", "surrogatepass"), hashlib.sha256).digest())


PREFIXES = st.sampled_from(["srt1", "srt1", "srt1", "srt2", "SRT1", ""]) | st.text(max_size=5)
TAGS = st.text(HEX, min_size=20, max_size=20) | st.text(max_size=24)
SESSION_PARTS = st.text(B64URL, min_size=22, max_size=22) | st.text(max_size=26)
GENERATIONS = (
    st.integers(min_value=-5, max_value=10**17).map(str)
    | st.sampled_from(["0", "07", "00", "-1", "+1", "1_0", "\u0667", "", " 1", "1.0", "0x1"])
    | st.text(max_size=18)
)
# None: no MAC part at all; "valid": the real MAC of the body; otherwise the given text.
MACS = st.one_of(
    st.just("valid"),
    st.just("valid"),
    st.just("valid"),
    st.text(B64URL, min_size=42, max_size=44),
    st.text(max_size=50),
    st.none(),
)
SRT_TAILS = st.sampled_from(["", "", "", ".", ".x", " ", "\n", "\x00"])


def make_srt(prefix: str, tag: str, session: str, generation: str, mac: str | None, tail: str) -> str:
    body = ".".join([prefix, tag, session, generation])
    if mac is None:
        return body
    return f"{body}.{refresh_mac(body) if mac == 'valid' else mac}{tail}"


def srt_like() -> st.SearchStrategy[str]:
    """Five-part refresh-token lookalikes, many of them with a valid MAC."""
    return st.builds(make_srt, PREFIXES, TAGS, SESSION_PARTS, GENERATIONS, MACS, SRT_TAILS)


SURROGATE_TEXT = st.binary(max_size=300).map(lambda raw: raw.decode("utf-8", "surrogateescape"))


# ---------------------------------------------------------------------------------------------
# (a) parsers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_ring() -> KeyRing:
    """One key of every family, so fuzzed alg/kid pairs reach every verifier."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    def pem(key: Any) -> bytes:
        return bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    return KeyRing(
        [
            SigningKey.hmac(SECRET, kid="h"),
            SigningKey.from_pem(pem(ec.generate_private_key(ec.SECP256R1())), kid="e"),
            SigningKey.from_pem(pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), kid="r"),
            SigningKey.from_pem(pem(ed25519.Ed25519PrivateKey.generate()), kid="d"),
        ]
    )


def only_invalid_token(auth: TokenAuth, token: str) -> None:
    """``verify`` returns claims or raises InvalidToken; any other exception propagates (a bug)."""
    refused: InvalidToken | None = None
    try:
        claims = auth.verify_access_token(token)
    except InvalidToken as exc:
        refused = exc
    if refused is not None:
        assert (refused.status_code, refused.error) == (401, "invalid_token")
        assert isinstance(refused.description, str)
        assert refused.description
        return
    # Whatever passes must carry the contract's claims.
    assert isinstance(claims, dict)
    assert isinstance(claims["sub"], str)
    assert isinstance(claims["sid"], str)


def only_invalid_grant(codec: RefreshTokenCodec, token: str) -> None:
    """``parse`` returns a RefreshToken or raises InvalidGrant; anything else propagates (a bug)."""
    refused: InvalidGrant | None = None
    try:
        parsed = codec.parse(token)
    except InvalidGrant as exc:
        refused = exc
    if refused is not None:
        assert (refused.status_code, refused.error) == (400, "invalid_grant")
        return
    # Whatever parses is exactly the token the codec would mint for what it names.
    assert isinstance(parsed, RefreshToken)
    assert codec.mint(parsed.user_tag, parsed.session_id, parsed.generation) == token


ANY_TEXT = st.text(max_size=300) | st.text(B64URL + ".", max_size=300)


def test_fuzz_verify_access_token(
    make_auth: Callable[..., TokenAuth], mixed_ring: KeyRing, fuzz: Fuzz
) -> None:
    auths = [make_auth(), make_auth(keys=mixed_ring), make_auth(issuer="https://i.example", audience="api")]

    def check(token: str, which: int) -> None:
        only_invalid_token(auths[which], token)

    fuzz("verify_access_token/text", PARSER_FUZZ, check, token=ANY_TEXT, which=st.integers(0, 2))
    fuzz("verify_access_token/bytes", PARSER_FUZZ, check, token=SURROGATE_TEXT, which=st.integers(0, 2))
    fuzz("verify_access_token/jwt-like", PARSER_FUZZ, check, token=jwt_like(), which=st.integers(0, 2))


def test_fuzz_parse_refresh_token(fuzz: Fuzz) -> None:
    codec = RefreshTokenCodec(SECRET.encode())

    def check(token: str) -> None:
        only_invalid_grant(codec, token)

    fuzz("RefreshTokenCodec.parse/text", PARSER_FUZZ, check, token=ANY_TEXT)
    fuzz("RefreshTokenCodec.parse/bytes", PARSER_FUZZ, check, token=SURROGATE_TEXT)
    fuzz("RefreshTokenCodec.parse/srt1-like", PARSER_FUZZ, check, token=srt_like())


# ---------------------------------------------------------------------------------------------
# (b) endpoints through the ASGI app
# ---------------------------------------------------------------------------------------------


@dataclass
class Live:
    """The app under fuzz, plus a supply of genuine tokens to mix into the inputs."""

    client: TestClient
    access: list[str] = field(default_factory=list)
    refresh: list[str] = field(default_factory=list)

    def login(self, transport: str = "body") -> tuple[str, str]:
        self.client.cookies.clear()
        response = self.client.post("/login", json={"transport": transport})
        assert response.status_code == 200, response.text
        body = response.json()
        refresh = body.get("refresh_token") or response.cookies.get("refresh_token", "")
        self.client.cookies.clear()
        self.access.append(body["access_token"])
        self.refresh.append(refresh)
        return body["access_token"], refresh


@contextlib.contextmanager
def live_app(auth: TokenAuth) -> Iterator[Live]:
    """The app on one event loop for the whole test, without its lifespan.

    The lifespan is left out because the revocation feed's shutdown can hang on fakeredis (see
    test_attack_catalogue.py); no answer depends on it. One portal keeps the store's connections on
    one loop, as in a server.
    """
    client = TestClient(build_app(auth), base_url=BASE_URL, raise_server_exceptions=True)
    with anyio.from_thread.start_blocking_portal() as portal:
        client.portal = portal
        live = Live(client)
        for _ in range(3):
            live.login()
        try:
            yield live
        finally:
            client.portal = None


def mutate(token: str, how: str, where: int) -> str:
    if not token:
        return token
    index = where % len(token)
    if how == "flip":
        return token[:index] + ("B" if token[index] == "A" else "A") + token[index + 1 :]
    if how == "cut":
        return token[:index]
    if how == "dup":
        return token + token
    if how == "space":
        return token[:index] + " " + token[index:]
    return token.swapcase()


NOISE = st.one_of(st.text(max_size=40), st.text(B64URL + ".", max_size=80), srt_like(), jwt_like(deep=False))
SOURCES = ("latest", "old", "mutated", "noise", "latest", "fresh", "mutated", "other-kind")
MUTATIONS = ("flip", "cut", "dup", "space", "case")
CODES = st.integers(0, 2**32 - 1)


def draw_token(data: st.DataObject, live: Live, kind: str) -> str:
    """A token for a request: a live one, an old one, a mutated one, one of the other kind, or noise.

    One integer decides everything but the noise (cheap to draw, and it does not depend on the
    app's state, so hypothesis can replay it); the app's pools resolve it.
    """
    code = data.draw(CODES)
    source = SOURCES[code % len(SOURCES)]
    if source == "noise":
        return data.draw(NOISE)
    pool = live.access if kind == "access" else live.refresh
    index = code >> 3
    if source == "fresh":
        access, refresh = live.login()
        return access if kind == "access" else refresh
    if source == "latest":
        return pool[-1]
    if source == "old":
        return pool[index % len(pool)]
    if source == "mutated":
        return mutate(pool[index % len(pool)], MUTATIONS[(code >> 20) % len(MUTATIONS)], code >> 23)
    other = live.refresh if kind == "access" else live.access
    return other[index % len(other)]


def header_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


RAW_HEADER = st.binary(max_size=120)
CONTENT_TYPES = (
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
        ]
    ).map(str.encode)
    | RAW_HEADER
)
ORIGINS = (
    st.sampled_from(
        [
            "https://testserver",
            "https://TESTSERVER:443",
            "https://evil.example",
            "null",
            "http://testserver",
            "",
        ]
    ).map(str.encode)
    | RAW_HEADER
)
QUERIES = st.sampled_from(
    ["", "", "", "refresh_token=x", "ACCESS_TOKEN=", "a=1&refresh_token", "x=%00"]
) | st.text(string.ascii_letters + "=&%_", max_size=30)
SCHEMES = st.sampled_from(["Bearer ", "bearer ", "BEARER ", "Bearer  ", "Basic ", "Bearer", ""])


def authorization_value(data: st.DataObject, live: Live) -> bytes:
    """An Authorization header value: a scheme and a picked access token, or raw bytes."""
    if data.draw(st.integers(0, 4)) == 0:
        return data.draw(RAW_HEADER)
    scheme = data.draw(SCHEMES)
    return header_bytes(scheme + draw_token(data, live, "access"))


def refresh_request(data: st.DataObject, live: Live) -> tuple[list[tuple[bytes, bytes]], bytes, str]:
    """Headers, body and query for POST /auth/refresh or /auth/logout."""
    headers: list[tuple[bytes, bytes]] = []
    body_kind = data.draw(st.sampled_from(["token", "token", "json", "bytes", "empty", "big"]))
    if body_kind == "token":
        value: Any = draw_token(data, live, "refresh") if data.draw(st.integers(0, 3)) else data.draw(SCALARS)
        extra = data.draw(st.dictionaries(st.text(max_size=5), SCALARS, max_size=2))
        body = dumps({**extra, "refresh_token": value}).encode("utf-8", "surrogatepass")
    elif body_kind == "json":
        body = dumps(data.draw(JSON_VALUES)).encode("utf-8", "surrogatepass")
    elif body_kind == "bytes":
        body = data.draw(st.binary(max_size=300))
    elif body_kind == "big":
        body = b'{"refresh_token":"' + b"x" * data.draw(st.integers(16_000, 17_000)) + b'"}'
    else:
        body = b""
    if data.draw(st.booleans()):
        headers.append((b"content-type", data.draw(CONTENT_TYPES)))
    for _ in range(data.draw(st.integers(0, 2))):
        if data.draw(st.booleans()):
            cookie = "refresh_token=" + draw_token(data, live, "refresh")
            headers.append((b"cookie", header_bytes(cookie)))
        else:
            headers.append((b"cookie", data.draw(RAW_HEADER)))
    for _ in range(data.draw(st.integers(0, 2))):
        headers.append((b"origin", data.draw(ORIGINS)))
    if data.draw(st.booleans()):
        headers.append(
            (b"sec-fetch-site", data.draw(st.sampled_from([b"cross-site", b"same-origin", b"none"])))
        )
    for _ in range(data.draw(st.integers(0, 2))):
        headers.append((b"authorization", authorization_value(data, live)))
    return headers, body, data.draw(QUERIES)


def send(
    live: Live, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"", query: str = ""
) -> httpx2.Response:
    url = f"{path}?{query}" if query else path
    live.client.cookies.clear()
    response = live.client.request(method, url, headers=headers, content=body or None)
    live.client.cookies.clear()
    return response


def check_answer(response: httpx2.Response, allowed: set[int], library: bool = True) -> None:
    """A contract status, and for every refusal a JSON object body naming the error."""
    status = response.status_code
    assert status != 500, response.text
    assert status != 503, f"the store is up; a 503 hides an error: {response.text}"
    assert status in allowed, (status, response.text[:300])
    if library:
        assert response.headers.get("cache-control") == "no-store"
    if status == 204:
        assert response.content == b""
        return
    body = response.json()
    assert isinstance(body, dict)
    if status == 200:
        return
    if status == 401 and response.headers.get("www-authenticate") == BARE_CHALLENGE:
        assert body == {"error_description": "an access token is required"}
        return
    assert isinstance(body.get("error"), str)
    assert body["error"]
    assert isinstance(body.get("error_description"), str)


def test_fuzz_refresh_endpoint(make_auth: Callable[..., TokenAuth], fuzz: Fuzz) -> None:
    with live_app(make_auth()) as live:

        def check(data: st.DataObject) -> None:
            headers, body, query = refresh_request(data, live)
            response = send(live, "POST", "/auth/refresh", headers, body, query)
            check_answer(response, {200, 400, 403})
            if response.status_code == 200:
                answer = response.json()
                live.access.append(answer["access_token"])
                live.refresh.append(answer.get("refresh_token") or response.cookies.get("refresh_token", ""))

        fuzz("POST /auth/refresh", ENDPOINT_FUZZ, check, data=st.data())


def test_fuzz_protected_route(make_auth: Callable[..., TokenAuth], fuzz: Fuzz) -> None:
    with live_app(make_auth()) as live:

        def check(data: st.DataObject) -> None:
            count = data.draw(st.integers(0, 3))
            headers = [(b"authorization", authorization_value(data, live)) for _ in range(count)]
            if data.draw(st.booleans()):
                headers.append((data.draw(st.sampled_from([b"cookie", b"origin"])), data.draw(RAW_HEADER)))
            query = data.draw(QUERIES)
            response = send(live, "GET", "/me", headers, query=query)
            check_answer(response, {200, 400, 401}, library=response.status_code != 200)
            if response.status_code == 200:
                assert response.json()["sub"] == "42"

        fuzz("GET /me", ENDPOINT_FUZZ, check, data=st.data())


def test_fuzz_logout_endpoint(make_auth: Callable[..., TokenAuth], fuzz: Fuzz) -> None:
    with live_app(make_auth()) as live:

        def check(data: st.DataObject) -> None:
            headers, body, query = refresh_request(data, live)
            response = send(live, "POST", "/auth/logout", headers, body, query)
            check_answer(response, {204, 400, 403})

        fuzz("POST /auth/logout", ENDPOINT_FUZZ, check, data=st.data())


SESSION_IDS = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"), min_size=1, max_size=40
)


def test_fuzz_session_endpoints(make_auth: Callable[..., TokenAuth], fuzz: Fuzz) -> None:
    with live_app(make_auth()) as live:

        def check(data: st.DataObject) -> None:
            targets = ["list", "list", "delete", "delete", "logout-all", "method"]
            target = data.draw(st.sampled_from(targets))
            count = data.draw(st.integers(0, 2))
            headers = [(b"authorization", authorization_value(data, live)) for _ in range(count)]
            query = data.draw(QUERIES)
            if target == "list":
                response = send(live, "GET", "/auth/sessions", headers, query=query)
                check_answer(response, {200, 400, 401})
                if response.status_code == 200:
                    assert isinstance(response.json()["sessions"], list)
            elif target == "delete":
                session_id = data.draw(st.sampled_from(["own", "fuzz", "fuzz"]))
                if session_id == "own":
                    session_id = str(jwt.decode(live.access[-1], options={"verify_signature": False})["sid"])
                else:
                    session_id = data.draw(SESSION_IDS)
                    # "." and ".." are dot segments: URL normalization turns them into other paths.
                    assume(session_id not in (".", ".."))
                path = "/auth/sessions/" + quote(session_id, safe="")
                response = send(live, "DELETE", path, headers, query=query)
                # an empty id names the list itself, where DELETE is the wrong method
                check_answer(response, {405} if not session_id else {204, 400, 401, 404})
            elif target == "logout-all":
                response = send(live, "POST", "/auth/logout-all", headers, query=query)
                check_answer(response, {204, 400, 401})
            else:
                method = data.draw(st.sampled_from(["PUT", "PATCH", "DELETE", "GET", "OPTIONS"]))
                path = data.draw(st.sampled_from(["/auth/refresh", "/auth/logout", "/auth/logout-all"]))
                response = send(live, method, path, headers, query=query)
                check_answer(response, {405})

        fuzz("GET/DELETE /auth/sessions[/{id}], POST /auth/logout-all", ENDPOINT_FUZZ, check, data=st.data())
