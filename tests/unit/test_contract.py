"""HTTP contract tests: one or more tests for every row of the table in DESIGN.md ("HTTP contract").

Everything runs in-process: the app of ``tests/apps.py`` behind a TestClient (https, so ``Secure``
cookies round-trip), a fakeredis server with Lua, and the manual clock. The refresh cookie is always
sent explicitly (the client's cookie jar is cleared first) so each test says exactly which token
travels how, except where a test checks that the jar round-trips the cookie by itself.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import fakeredis
import httpx2
import jwt
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_refresh import TokenAuth
from starlette_refresh.testing import ManualClock
from tests.apps import build_app

BASE_URL = "https://testserver"
OWN_ORIGIN = "https://testserver"
FOREIGN_ORIGIN = "https://evil.example"
ACCESS_TTL = 300
REFRESH_TTL = 3600
GRACE = 10
LEEWAY = 10
COOKIE = "refresh_token"
BARE_CHALLENGE = 'Bearer realm="api"'
EXPIRED_CHALLENGE = 'Bearer realm="api", error="invalid_token", error_description="token expired"'
MALFORMED_CHALLENGE = 'Bearer realm="api", error="invalid_token", error_description="malformed token"'
COOKIE_BODY_FIELDS = {"access_token", "token_type", "expires_in"}
BODY_BODY_FIELDS = COOKIE_BODY_FIELDS | {"refresh_token"}
ERROR_FIELDS = {"error", "error_description"}

MakeAuth = Callable[..., TokenAuth]
MakeClient = Callable[..., TestClient]
Response = httpx2.Response


# ---------------------------------------------------------------------------------------------
# fixtures: a fakeredis server the tests can take down, inspect and bring back
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def inspect_redis(fake_server: fakeredis.FakeServer) -> fakeredis.FakeRedis:
    """A synchronous view of the same data (sync clients ignore the ``connected`` flag)."""
    return fakeredis.FakeRedis(server=fake_server, decode_responses=True)


@pytest.fixture
def make_client(make_auth: MakeAuth) -> Iterator[MakeClient]:
    """Builds one TestClient (lifespan running) for a TokenAuth with overridden settings.

    Use it at most once per test: the fakeredis client is shared and its pooled connections
    belong to the event loop of the first TestClient.
    """
    with contextlib.ExitStack() as stack:

        def make(**overrides: Any) -> TestClient:
            app = build_app(make_auth(**overrides))
            return stack.enter_context(TestClient(app, base_url=BASE_URL))

        yield make


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cookie:
    """One parsed ``Set-Cookie`` header."""

    name: str
    value: str
    attributes: dict[str, str | bool]

    def attr(self, name: str) -> str | bool | None:
        return self.attributes.get(name.lower())


@dataclass(frozen=True)
class Login:
    """What a login answered."""

    response: Response
    access_token: str
    refresh_token: str

    @property
    def sid(self) -> str:
        return str(claims_of(self.access_token)["sid"])


def parse_set_cookie(header: str) -> Cookie:
    first, *rest = (part.strip() for part in header.split(";"))
    name, _, value = first.partition("=")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    attributes: dict[str, str | bool] = {}
    for part in rest:
        if not part:
            continue
        key, sep, val = part.partition("=")
        attributes[key.strip().lower()] = val.strip() if sep else True
    return Cookie(name=name.strip(), value=value, attributes=attributes)


def set_cookies(response: Response) -> list[Cookie]:
    return [parse_set_cookie(h) for h in response.headers.get_list("set-cookie")]


def refresh_cookie(response: Response) -> Cookie:
    """The single refresh-token ``Set-Cookie`` of ``response``."""
    cookies = set_cookies(response)
    assert [c.name for c in cookies] == [COOKIE], cookies
    return cookies[0]


def assert_cookie_set(response: Response, max_age: int) -> str:
    """Asserts the refresh cookie carries the contract's attributes; returns its value."""
    cookie = refresh_cookie(response)
    assert cookie.attr("httponly") is True
    assert cookie.attr("secure") is True
    samesite = cookie.attr("samesite")
    assert isinstance(samesite, str)
    assert samesite.lower() == "strict"
    assert cookie.attr("path") == "/auth"
    assert cookie.attr("max-age") == str(max_age)
    assert cookie.value
    return cookie.value


def assert_cookie_cleared(response: Response) -> None:
    cookie = refresh_cookie(response)
    assert cookie.attr("max-age") == "0"
    assert cookie.value == ""
    assert cookie.attr("path") == "/auth"


def assert_no_cookie(response: Response) -> None:
    assert response.headers.get_list("set-cookie") == []


def assert_no_store(response: Response) -> None:
    assert response.headers.get("cache-control") == "no-store"


def assert_error(response: Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_FIELDS
    assert body["error"] == error
    assert isinstance(body["error_description"], str)
    assert body["error_description"]
    return body


def assert_invalid_grant(response: Response) -> None:
    assert_error(response, 400, "invalid_grant")
    assert_no_store(response)


def assert_invalid_request(response: Response) -> None:
    assert_error(response, 400, "invalid_request")
    assert_no_store(response)


def assert_tokens(response: Response, transport: str = "cookie") -> dict[str, Any]:
    """A login/refresh 200: exact fields, Bearer, expires_in == access_ttl, no-store."""
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body: dict[str, Any] = response.json()
    assert set(body) == (COOKIE_BODY_FIELDS if transport == "cookie" else BODY_BODY_FIELDS)
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == ACCESS_TTL
    assert isinstance(body["access_token"], str)
    if transport == "body":
        assert isinstance(body["refresh_token"], str)
        assert body["refresh_token"]
        assert_no_cookie(response)
    return body


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cookie_header(token: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={token}"}


def login(
    client: TestClient,
    *,
    subject: str = "42",
    transport: str = "cookie",
    claims: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Login:
    payload: dict[str, Any] = {"subject": subject, "transport": transport}
    if claims is not None:
        payload["claims"] = dict(claims)
    client.cookies.clear()
    response = client.post("/login", json=payload, headers=dict(headers or {}))
    body = assert_tokens(response, transport)
    token = assert_cookie_set(response, REFRESH_TTL) if transport == "cookie" else body["refresh_token"]
    client.cookies.clear()
    return Login(response=response, access_token=body["access_token"], refresh_token=token)


def post(client: TestClient, path: str, **kwargs: Any) -> Response:
    """A POST with an empty cookie jar: only what the test passes travels."""
    client.cookies.clear()
    response = client.post(path, **kwargs)
    client.cookies.clear()
    return response


def refresh_by_cookie(client: TestClient, token: str, headers: Mapping[str, str] | None = None) -> Response:
    return post(client, "/auth/refresh", headers={**cookie_header(token), **(headers or {})})


def refresh_by_body(client: TestClient, token: str, headers: Mapping[str, str] | None = None) -> Response:
    return post(client, "/auth/refresh", json={"refresh_token": token}, headers=dict(headers or {}))


def me(client: TestClient, access_token: str) -> Response:
    return client.get("/me", headers=bearer(access_token))


def sessions_of(client: TestClient, access_token: str) -> list[dict[str, Any]]:
    response = client.get("/auth/sessions", headers=bearer(access_token))
    assert response.status_code == 200, response.text
    assert_no_store(response)
    body = response.json()
    assert set(body) == {"sessions"}
    sessions: list[dict[str, Any]] = body["sessions"]
    return sessions


def iso_utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# login
# ---------------------------------------------------------------------------------------------


def test_login_cookie_transport_answers_tokens_and_the_refresh_cookie(client: TestClient) -> None:
    response = client.post("/login")
    body = assert_tokens(response, "cookie")
    value = assert_cookie_set(response, REFRESH_TTL)
    cookie = refresh_cookie(response)
    assert cookie.name == "refresh_token"
    assert "refresh_token" not in body
    claims = claims_of(body["access_token"])
    assert claims["sub"] == "42"
    assert claims["email"] == "a@example.com"
    assert claims["exp"] - claims["iat"] == ACCESS_TTL
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    # the refresh token is opaque and never a JWT
    assert value.count(".") != 2


def test_login_body_transport_answers_the_refresh_token_in_the_body(client: TestClient) -> None:
    response = client.post("/login", json={"transport": "body"})
    body = assert_tokens(response, "body")
    assert_no_cookie(response)
    assert body["refresh_token"] != body["access_token"]
    assert refresh_by_body(client, body["refresh_token"]).status_code == 200


def test_login_store_outage_is_503(client: TestClient, fake_server: fakeredis.FakeServer) -> None:
    fake_server.connected = False
    response = client.post("/login")
    assert_error(response, 503, "temporarily_unavailable")
    assert response.headers["retry-after"] == "2"
    assert_no_store(response)
    assert_no_cookie(response)


# ---------------------------------------------------------------------------------------------
# POST /auth/refresh: 200
# ---------------------------------------------------------------------------------------------


def test_refresh_by_cookie_from_the_jar_rotates_the_cookie(client: TestClient) -> None:
    client.cookies.clear()
    first = client.post("/login")
    old = assert_cookie_set(first, REFRESH_TTL)
    # the jar sends the Secure, Path=/auth cookie back by itself
    response = client.post("/auth/refresh")
    assert_tokens(response, "cookie")
    new = assert_cookie_set(response, REFRESH_TTL)
    assert new != old
    assert client.cookies.get(COOKIE) == new
    # and the jar keeps working for the next rotation
    again = client.post("/auth/refresh")
    assert_tokens(again, "cookie")
    assert assert_cookie_set(again, REFRESH_TTL) not in (old, new)


def test_refresh_by_cookie_keeps_session_and_app_claims(client: TestClient, clock: ManualClock) -> None:
    session = login(client, claims={"email": "z@example.com"})
    clock.advance(60)
    response = refresh_by_cookie(client, session.refresh_token)
    body = assert_tokens(response, "cookie")
    new_refresh = assert_cookie_set(response, REFRESH_TTL)
    assert new_refresh != session.refresh_token
    assert body["access_token"] != session.access_token
    claims = claims_of(body["access_token"])
    assert claims["sid"] == session.sid
    assert claims["sub"] == "42"
    assert claims["email"] == "z@example.com"
    answer = me(client, body["access_token"])
    assert answer.status_code == 200
    assert answer.json()["sid"] == session.sid
    assert answer.json()["sub"] == "42"


def test_refresh_by_body_answers_in_the_body_without_a_cookie(client: TestClient, clock: ManualClock) -> None:
    session = login(client, transport="body")
    clock.advance(60)
    response = refresh_by_body(client, session.refresh_token)
    body = assert_tokens(response, "body")
    assert_no_cookie(response)
    assert body["refresh_token"] != session.refresh_token
    claims = claims_of(body["access_token"])
    assert claims["sid"] == session.sid
    assert claims["email"] == "a@example.com"
    assert me(client, body["access_token"]).json()["sid"] == session.sid
    # the rotated token is the one that works next
    assert_tokens(refresh_by_body(client, body["refresh_token"]), "body")


def test_refresh_with_cookie_and_the_same_token_in_the_body_answers_in_the_body(client: TestClient) -> None:
    session = login(client)
    response = post(
        client,
        "/auth/refresh",
        json={"refresh_token": session.refresh_token},
        headers=cookie_header(session.refresh_token),
    )
    assert_tokens(response, "body")


def test_cookie_login_can_switch_to_body_transport(client: TestClient) -> None:
    session = login(client, transport="cookie")
    body = assert_tokens(refresh_by_body(client, session.refresh_token), "body")
    assert_tokens(refresh_by_cookie(client, body["refresh_token"]), "cookie")


# ---------------------------------------------------------------------------------------------
# grace window and reuse detection
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["cookie", "body"])
def test_same_token_within_grace_gets_the_same_new_refresh_token(
    client: TestClient, clock: ManualClock, transport: str
) -> None:
    session = login(client, transport=transport)
    send = refresh_by_cookie if transport == "cookie" else refresh_by_body
    first = send(client, session.refresh_token)
    first_body = assert_tokens(first, transport)
    clock.advance(5)
    second = send(client, session.refresh_token)
    second_body = assert_tokens(second, transport)
    if transport == "cookie":
        first_token = assert_cookie_set(first, REFRESH_TTL)
        # Max-Age is the remaining idle lifetime of the session, rotated 5 s ago
        second_token = assert_cookie_set(second, REFRESH_TTL - 5)
    else:
        first_token, second_token = first_body["refresh_token"], second_body["refresh_token"]
    assert first_token == second_token
    assert first_token != session.refresh_token
    assert first_body["access_token"] != second_body["access_token"]
    assert claims_of(first_body["access_token"])["sid"] == claims_of(second_body["access_token"])["sid"]
    assert me(client, second_body["access_token"]).status_code == 200
    # the answered token is the live one
    assert_tokens(send(client, second_token), transport)


def test_reuse_after_grace_revokes_the_family_and_leaves_the_cookie_alone(
    client: TestClient, clock: ManualClock
) -> None:
    session = login(client)
    first = refresh_by_cookie(client, session.refresh_token)
    assert_tokens(first)
    newest = assert_cookie_set(first, REFRESH_TTL)
    clock.advance(5)
    assert_tokens(refresh_by_cookie(client, session.refresh_token))  # within grace
    clock.advance(11)  # 16 s after the rotation: past the 10 s grace
    reused = refresh_by_cookie(client, session.refresh_token)
    assert_invalid_grant(reused)
    # no Set-Cookie: a late invalid_grant must not delete a cookie a newer login has set
    assert_no_cookie(reused)
    # the whole family is revoked: the newest token is refused too
    after = refresh_by_cookie(client, newest)
    assert_invalid_grant(after)
    assert_no_cookie(after)


def test_reuse_after_grace_by_body_revokes_the_family(client: TestClient, clock: ManualClock) -> None:
    session = login(client, transport="body")
    newest = assert_tokens(refresh_by_body(client, session.refresh_token), "body")["refresh_token"]
    clock.advance(GRACE + 1)
    assert_invalid_grant(refresh_by_body(client, session.refresh_token))
    assert_invalid_grant(refresh_by_body(client, newest))


def test_reuse_of_an_older_generation_revokes_the_family(client: TestClient, clock: ManualClock) -> None:
    session = login(client, transport="body")
    gen1 = assert_tokens(refresh_by_body(client, session.refresh_token), "body")["refresh_token"]
    clock.advance(1)
    gen2 = assert_tokens(refresh_by_body(client, gen1), "body")["refresh_token"]
    clock.advance(1)
    # generation 0 is two rotations old: no grace for it, even within the window
    assert_invalid_grant(refresh_by_body(client, session.refresh_token))
    assert_invalid_grant(refresh_by_body(client, gen2))


# ---------------------------------------------------------------------------------------------
# 400 invalid_grant (RFC 6749 section 5.2): unknown, forged, expired, revoked
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "srt1.0123456789abcdef0123.AAAAAAAAAAAAAAAAAAAAAA.0.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "x" * 300,
    ],
)
def test_unknown_or_forged_refresh_token_is_invalid_grant(client: TestClient, token: str) -> None:
    response = refresh_by_cookie(client, token)
    assert_invalid_grant(response)
    assert_no_cookie(response)
    assert_invalid_grant(refresh_by_body(client, token))


def test_tampered_refresh_token_is_invalid_grant(client: TestClient) -> None:
    session = login(client, transport="body")
    prefix, tag, sid, gen, mac = session.refresh_token.split(".")
    assert_invalid_grant(refresh_by_body(client, ".".join([prefix, tag, sid, "1", mac])))
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    assert_invalid_grant(refresh_by_body(client, ".".join([prefix, tag, sid, gen, flipped])))
    # the genuine token still works: failed forgeries do not touch the session
    assert_tokens(refresh_by_body(client, session.refresh_token), "body")


def test_access_token_is_not_a_refresh_token(client: TestClient) -> None:
    session = login(client)
    assert_invalid_grant(refresh_by_body(client, session.access_token))


def test_idle_lifetime_expires_without_refresh(client: TestClient, clock: ManualClock) -> None:
    session = login(client)
    clock.advance(REFRESH_TTL + 1)
    response = refresh_by_cookie(client, session.refresh_token)
    assert_invalid_grant(response)
    assert_no_cookie(response)


def test_sliding_idle_lifetime_keeps_a_used_session_alive(client: TestClient, clock: ManualClock) -> None:
    session = login(client)
    token = session.refresh_token
    for _ in range(6):  # 6 x 1800 s = 3 x refresh_ttl
        clock.advance(REFRESH_TTL // 2)
        response = refresh_by_cookie(client, token)
        assert_tokens(response)
        token = assert_cookie_set(response, REFRESH_TTL)
    # and the idle lifetime still applies to the latest token
    clock.advance(REFRESH_TTL + 1)
    assert_invalid_grant(refresh_by_cookie(client, token))


def test_absolute_lifetime_ends_even_a_busy_session(make_client: MakeClient, clock: ManualClock) -> None:
    client = make_client(refresh_ttl=3600, absolute_ttl=7200)
    session = login(client)
    token = session.refresh_token
    for elapsed in (1800, 3600, 5400):
        clock.advance(1800)
        response = refresh_by_cookie(client, token)
        assert_tokens(response)
        # Max-Age never promises more than the absolute lifetime leaves
        token = assert_cookie_set(response, min(3600, 7200 - elapsed))
    clock.advance(1601)  # t = 7001: still inside
    response = refresh_by_cookie(client, token)
    assert_tokens(response)
    token = assert_cookie_set(response, 199)
    clock.advance(200)  # t = 7201: past absolute_ttl although refreshed 200 s ago
    response = refresh_by_cookie(client, token)
    assert_invalid_grant(response)
    assert_no_cookie(response)


# ---------------------------------------------------------------------------------------------
# 400 invalid_request
# ---------------------------------------------------------------------------------------------


def test_no_token_at_all_is_invalid_request(client: TestClient) -> None:
    assert_invalid_request(post(client, "/auth/refresh"))
    assert_invalid_request(post(client, "/auth/refresh", json={}))
    assert_invalid_request(post(client, "/auth/refresh", json={"other": "x"}))


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"refresh_token": ', b"\xff\xfe{}", b'["refresh_token"]', b'"srt1.x"', b"null", b"42"],
)
def test_malformed_or_non_object_json_is_invalid_request(client: TestClient, content: bytes) -> None:
    session = login(client)
    headers = {"Content-Type": "application/json"}
    assert_invalid_request(post(client, "/auth/refresh", content=content, headers=headers))
    # a broken body is refused even when a valid cookie came along
    response = post(
        client, "/auth/refresh", content=content, headers={**headers, **cookie_header(session.refresh_token)}
    )
    assert_invalid_request(response)
    assert_no_cookie(response)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_with_a_body_is_invalid_request(
    client: TestClient, content_type: str | None
) -> None:
    session = login(client)
    content = json.dumps({"refresh_token": session.refresh_token}).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    assert_invalid_request(post(client, "/auth/refresh", content=content, headers=headers))
    response = post(
        client, "/auth/refresh", content=content, headers={**headers, **cookie_header(session.refresh_token)}
    )
    assert_invalid_request(response)
    # the refused requests did not rotate anything
    assert_tokens(refresh_by_cookie(client, session.refresh_token))


@pytest.mark.parametrize("value", [123, "", [], {}, True, 1.5])
def test_refresh_token_not_a_non_empty_string_is_invalid_request(client: TestClient, value: Any) -> None:
    assert_invalid_request(post(client, "/auth/refresh", json={"refresh_token": value}))


def test_token_in_query_string_is_refused_even_with_a_valid_cookie(client: TestClient) -> None:
    session = login(client)
    for query in (f"refresh_token={session.refresh_token}", "refresh_token=x", "access_token=x"):
        response = post(client, f"/auth/refresh?{query}", headers=cookie_header(session.refresh_token))
        assert_invalid_request(response)
        assert_no_cookie(response)
    # nothing was rotated
    assert_tokens(refresh_by_cookie(client, session.refresh_token))


def test_cookie_and_body_disagreeing_is_invalid_request(client: TestClient) -> None:
    one = login(client)
    other = login(client)
    response = post(
        client,
        "/auth/refresh",
        json={"refresh_token": other.refresh_token},
        headers=cookie_header(one.refresh_token),
    )
    assert_invalid_request(response)
    assert_no_cookie(response)
    assert_tokens(refresh_by_cookie(client, one.refresh_token))
    assert_tokens(refresh_by_cookie(client, other.refresh_token))


def test_body_over_16_kib_is_invalid_request(client: TestClient) -> None:
    session = login(client)
    big = json.dumps({"refresh_token": session.refresh_token, "pad": "x" * 16_384}).encode()
    assert len(big) > 16 * 1024
    headers = {"Content-Type": "application/json"}
    assert_invalid_request(post(client, "/auth/refresh", content=big, headers=headers))


def test_streamed_body_over_16_kib_is_invalid_request(client: TestClient) -> None:
    session = login(client)
    big = json.dumps({"refresh_token": session.refresh_token, "pad": "x" * 16_384}).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    response = post(client, "/auth/refresh", content=chunks(), headers={"Content-Type": "application/json"})
    assert_invalid_request(response)


def test_body_just_under_the_limit_is_accepted(client: TestClient) -> None:
    session = login(client, transport="body")
    small = {"refresh_token": session.refresh_token, "pad": ""}
    small["pad"] = "x" * (16_384 - len(json.dumps(small)))
    content = json.dumps(small).encode()
    assert len(content) == 16_384
    response = post(client, "/auth/refresh", content=content, headers={"Content-Type": "application/json"})
    assert_tokens(response, "body")


# ---------------------------------------------------------------------------------------------
# 503 temporarily_unavailable
# ---------------------------------------------------------------------------------------------


def assert_unavailable(response: Response) -> None:
    assert_error(response, 503, "temporarily_unavailable")
    assert response.headers["retry-after"] == "2"
    assert_no_store(response)
    assert_no_cookie(response)


def test_store_outage_is_503_not_expiry_and_recovers(
    client: TestClient, fake_server: fakeredis.FakeServer
) -> None:
    cookie_session = login(client)
    body_session = login(client, transport="body")
    fake_server.connected = False
    assert_unavailable(refresh_by_cookie(client, cookie_session.refresh_token))
    assert_unavailable(refresh_by_body(client, body_session.refresh_token))
    # access tokens are checked without the store
    answer = me(client, cookie_session.access_token)
    assert answer.status_code == 200
    assert answer.json()["sid"] == cookie_session.sid
    assert_unavailable(post(client, "/login"))
    assert_unavailable(post(client, "/auth/logout", headers=cookie_header(cookie_session.refresh_token)))
    assert_unavailable(post(client, "/auth/logout", headers=bearer(cookie_session.access_token)))
    assert_unavailable(post(client, "/auth/logout-all", headers=bearer(cookie_session.access_token)))
    assert_unavailable(client.get("/auth/sessions", headers=bearer(cookie_session.access_token)))
    fake_server.connected = True
    # the kept cookie works again: the outage ended nothing
    response = refresh_by_cookie(client, cookie_session.refresh_token)
    assert_tokens(response)
    assert_cookie_set(response, REFRESH_TTL)
    assert_tokens(refresh_by_body(client, body_session.refresh_token), "body")


def test_unreachable_real_redis_is_503(client: TestClient, make_auth: MakeAuth) -> None:
    session = login(client)  # a token minted under the same secret
    down = make_auth(redis=None, redis_url="redis://127.0.0.1:1/0", store_timeout=0.5)
    no_lifespan = TestClient(build_app(down), base_url=BASE_URL)
    response = no_lifespan.post("/auth/refresh", headers=cookie_header(session.refresh_token))
    assert_unavailable(response)


def failure_chain(exc: BaseException | None) -> str:
    messages = []
    while exc is not None:
        messages.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return " | ".join(messages)


def drive_asgi(
    app: ASGIApp, scope: dict[str, Any], first: Message, *, tolerate_errors: bool = False
) -> list[Message]:
    """Runs ``app`` on ``scope`` with one incoming message (then silence); returns what it sent."""
    sent: list[Message] = []
    inbox: list[Message] = [first]

    async def receive() -> Message:
        if inbox:
            return inbox.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        with anyio.fail_after(5):
            if tolerate_errors:
                with contextlib.suppress(Exception):
                    await app(scope, receive, send)
            else:
                await app(scope, receive, send)

    anyio.run(main)
    return sent


def test_unreachable_real_redis_fails_the_asgi_startup(make_auth: MakeAuth) -> None:
    down = make_auth(redis=None, redis_url="redis://127.0.0.1:1/0", store_timeout=0.5)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    sent = drive_asgi(build_app(down), scope, {"type": "lifespan.startup"}, tolerate_errors=True)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "cannot reach its session store" in sent[0]["message"]
    assert "redis://127.0.0.1:1/0" in sent[0]["message"]


def test_unreachable_real_redis_stops_a_test_client_from_starting(make_auth: MakeAuth) -> None:
    """``with TestClient(app)`` must raise when startup fails, as it does for Starlette's own router.

    Written without a ``with`` block so that a wrongly "successful" startup fails the test instead
    of hanging in the TestClient's shutdown wait forever.
    """
    down = make_auth(redis=None, redis_url="redis://127.0.0.1:1/0", store_timeout=0.5)
    test_client = TestClient(build_app(down), base_url=BASE_URL)
    failure: BaseException | None = None
    try:
        test_client.__enter__()
    except Exception as exc:
        failure = exc
    if failure is None:
        # Startup was reported as failed but the TestClient entered anyway: release its shutdown
        # wait (the app's lifespan has already returned and will never answer), then fail.
        assert test_client.portal is not None
        test_client.portal.call(test_client.stream_send.send, {"type": "lifespan.shutdown.complete"})
        test_client.__exit__(None, None, None)
        pytest.fail("`with TestClient(app)` started although the session store is unreachable")
    assert "cannot reach its session store" in failure_chain(failure)


# ---------------------------------------------------------------------------------------------
# 403: cookie-borne requests from another site
# ---------------------------------------------------------------------------------------------


def assert_cross_site(response: Response) -> None:
    assert_error(response, 403, "cross_site_request")
    assert_no_store(response)
    assert_no_cookie(response)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": FOREIGN_ORIGIN},
        {"Origin": "null"},
        {"Origin": "http://testserver"},  # another scheme is another origin
        {"Origin": "https://testserver.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": FOREIGN_ORIGIN, "Sec-Fetch-Site": "same-origin"},
    ],
)
def test_cross_site_cookie_refresh_is_403(client: TestClient, headers: dict[str, str]) -> None:
    session = login(client)
    assert_cross_site(refresh_by_cookie(client, session.refresh_token, headers))
    # the refused request rotated nothing
    assert_tokens(refresh_by_cookie(client, session.refresh_token))


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": OWN_ORIGIN},
        {"Origin": "https://TESTSERVER:443"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {},
    ],
)
def test_same_origin_cookie_refresh_is_allowed(client: TestClient, headers: dict[str, str]) -> None:
    session = login(client)
    response = refresh_by_cookie(client, session.refresh_token, headers)
    assert_tokens(response)
    assert_cookie_set(response, REFRESH_TTL)


def test_trusted_origin_may_refresh_by_cookie(make_client: MakeClient) -> None:
    client = make_client(trusted_origins=["https://app.example"])
    session = login(client)
    response = refresh_by_cookie(client, session.refresh_token, {"Origin": "https://app.example"})
    assert_tokens(response)
    new = assert_cookie_set(response, REFRESH_TTL)
    assert_cross_site(refresh_by_cookie(client, new, {"Origin": FOREIGN_ORIGIN}))


def test_body_refresh_from_a_foreign_origin_is_403_unless_trusted(make_client: MakeClient) -> None:
    """Cookie or not, a browser request from another site's page gets nothing under the prefix
    (DESIGN: any request a browser marks cross-site); a page of a trusted origin may refresh by body."""
    client = make_client(trusted_origins=["https://app.example"])
    session = login(client, transport="body")
    refused = refresh_by_body(client, session.refresh_token, {"Origin": FOREIGN_ORIGIN})
    assert_cross_site(refused)
    assert_no_cookie(refused)
    refused = refresh_by_body(client, session.refresh_token, {"Sec-Fetch-Site": "cross-site"})
    assert_cross_site(refused)
    response = refresh_by_body(client, session.refresh_token, {"Origin": "https://app.example"})
    assert_tokens(response, "body")


def test_cross_site_cookie_logout_is_403_and_the_session_survives(client: TestClient) -> None:
    session = login(client)
    response = post(
        client, "/auth/logout", headers={**cookie_header(session.refresh_token), "Origin": FOREIGN_ORIGIN}
    )
    assert_cross_site(response)
    response = post(
        client,
        "/auth/logout",
        headers={**cookie_header(session.refresh_token), "Sec-Fetch-Site": "cross-site"},
    )
    assert_cross_site(response)
    assert_tokens(refresh_by_cookie(client, session.refresh_token))


def test_cross_site_cookie_login_is_403(client: TestClient) -> None:
    response = post(client, "/login", json={"transport": "cookie"}, headers={"Origin": FOREIGN_ORIGIN})
    assert_cross_site(response)
    response = post(client, "/login", headers={"Sec-Fetch-Site": "cross-site"})
    assert_cross_site(response)
    response = post(client, "/login", json={"transport": "body"}, headers={"Origin": FOREIGN_ORIGIN})
    assert_tokens(response, "body")
    response = post(client, "/login", headers={"Origin": OWN_ORIGIN})
    assert_tokens(response, "cookie")
    assert_cookie_set(response, REFRESH_TTL)


# ---------------------------------------------------------------------------------------------
# POST /auth/logout
# ---------------------------------------------------------------------------------------------


def assert_no_content(response: Response) -> None:
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert_no_store(response)


def test_logout_by_cookie_is_204_idempotent_and_ends_the_session(client: TestClient) -> None:
    session = login(client)
    first = post(client, "/auth/logout", headers=cookie_header(session.refresh_token))
    assert_no_content(first)
    assert_cookie_cleared(first)
    second = post(client, "/auth/logout", headers=cookie_header(session.refresh_token))
    assert_no_content(second)
    assert_cookie_cleared(second)
    response = refresh_by_cookie(client, session.refresh_token)
    assert_invalid_grant(response)


def test_logout_by_cookie_from_the_jar(client: TestClient) -> None:
    client.cookies.clear()
    old = assert_cookie_set(client.post("/login"), REFRESH_TTL)
    response = client.post("/auth/logout")
    assert_no_content(response)
    assert_cookie_cleared(response)
    assert client.cookies.get(COOKIE) is None
    assert_invalid_grant(refresh_by_cookie(client, old))


def test_logout_by_body_token(client: TestClient) -> None:
    session = login(client, transport="body")
    assert_no_content(post(client, "/auth/logout", json={"refresh_token": session.refresh_token}))
    assert_invalid_grant(refresh_by_body(client, session.refresh_token))


def test_logout_with_only_an_access_token_ends_that_session(client: TestClient) -> None:
    ended = login(client)
    kept = login(client)
    response = post(client, "/auth/logout", headers=bearer(ended.access_token))
    assert_no_content(response)
    assert_invalid_grant(refresh_by_cookie(client, ended.refresh_token))
    assert_tokens(refresh_by_cookie(client, kept.refresh_token))


@pytest.mark.parametrize("garbage", ["garbage", "srt1.a.b.0.c"])
def test_logout_with_a_garbage_cookie_is_204(client: TestClient, garbage: str) -> None:
    session = login(client)
    response = post(client, "/auth/logout", headers=cookie_header(garbage))
    assert_no_content(response)
    assert_cookie_cleared(response)
    assert_tokens(refresh_by_cookie(client, session.refresh_token))


def test_logout_with_nothing_is_204(client: TestClient) -> None:
    assert_no_content(post(client, "/auth/logout"))


def test_logout_after_rotation_with_the_current_token_ends_the_family(
    client: TestClient, clock: ManualClock
) -> None:
    session = login(client)
    newest = assert_cookie_set(refresh_by_cookie(client, session.refresh_token), REFRESH_TTL)
    clock.advance(1)
    assert_no_content(post(client, "/auth/logout", headers=cookie_header(newest)))
    assert_invalid_grant(refresh_by_cookie(client, newest))
    assert_invalid_grant(refresh_by_cookie(client, session.refresh_token))


# ---------------------------------------------------------------------------------------------
# POST /auth/logout-all
# ---------------------------------------------------------------------------------------------


def test_logout_all_ends_every_session_of_the_subject_only(client: TestClient) -> None:
    mine = [login(client, subject="42") for _ in range(3)]
    theirs = login(client, subject="7")
    response = post(client, "/auth/logout-all", headers=bearer(mine[1].access_token))
    assert_no_content(response)
    assert_cookie_cleared(response)
    for session in mine:
        assert_invalid_grant(refresh_by_cookie(client, session.refresh_token))
    assert_tokens(refresh_by_cookie(client, theirs.refresh_token))
    # logging in again afterwards starts a fresh, working session
    fresh = login(client, subject="42")
    assert_tokens(refresh_by_cookie(client, fresh.refresh_token))
    assert [s["id"] for s in sessions_of(client, fresh.access_token)] == [fresh.sid]


def test_logout_all_without_a_token_is_a_bare_challenge(client: TestClient) -> None:
    session = login(client)
    response = post(client, "/auth/logout-all")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == BARE_CHALLENGE
    assert_no_store(response)
    assert response.json().get("error") is None
    # a refresh cookie is no access token
    response = post(client, "/auth/logout-all", headers=cookie_header(session.refresh_token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == BARE_CHALLENGE
    assert_tokens(refresh_by_cookie(client, session.refresh_token))


def test_logout_all_with_a_bad_token_is_invalid_token(client: TestClient, clock: ManualClock) -> None:
    session = login(client)
    response = post(client, "/auth/logout-all", headers=bearer("garbage"))
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == MALFORMED_CHALLENGE
    assert_no_store(response)
    response = post(client, "/auth/logout-all", headers=bearer(session.refresh_token))
    assert_error(response, 401, "invalid_token")
    clock.advance(ACCESS_TTL + LEEWAY + 1)
    response = post(client, "/auth/logout-all", headers=bearer(session.access_token))
    assert_error(response, 401, "invalid_token")
    assert response.json()["error_description"] == "token expired"
    assert response.headers["www-authenticate"] == EXPIRED_CHALLENGE
    assert_tokens(refresh_by_cookie(client, session.refresh_token))


# ---------------------------------------------------------------------------------------------
# GET /auth/sessions
# ---------------------------------------------------------------------------------------------


def test_sessions_list_shape_ids_times_and_current_flag(client: TestClient, clock: ManualClock) -> None:
    first_login_at = clock()
    first = login(client, headers={"User-Agent": "contract-tests/1.0 (first)"})
    clock.advance(30)
    second = login(client, headers={"User-Agent": "contract-tests/1.0 (second)"})
    other = login(client, subject="7")
    sessions = sessions_of(client, first.access_token)
    assert len(sessions) == 2
    for entry in sessions:
        assert set(entry) == {"id", "created_at", "last_used_at", "user_agent", "current"}
        for name in ("created_at", "last_used_at"):
            value = entry[name]
            assert isinstance(value, str)
            assert value.endswith("Z")
            parsed = datetime.fromisoformat(value)
            assert parsed.utcoffset() is not None
            assert parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        assert isinstance(entry["current"], bool)
    by_id = {entry["id"]: entry for entry in sessions}
    assert set(by_id) == {first.sid, second.sid}
    assert other.sid not in by_id
    assert by_id[first.sid]["current"] is True
    assert by_id[second.sid]["current"] is False
    assert by_id[first.sid]["user_agent"] == "contract-tests/1.0 (first)"
    assert by_id[second.sid]["user_agent"] == "contract-tests/1.0 (second)"
    assert by_id[first.sid]["created_at"] == iso_utc(first_login_at)
    assert by_id[first.sid]["last_used_at"] == iso_utc(first_login_at)
    assert by_id[second.sid]["created_at"] == iso_utc(first_login_at + 30)
    # from the other session's token, the flags swap
    flags = {entry["id"]: entry["current"] for entry in sessions_of(client, second.access_token)}
    assert flags == {first.sid: False, second.sid: True}


def test_sessions_last_used_at_moves_on_refresh(client: TestClient, clock: ManualClock) -> None:
    login_at = clock()
    session = login(client)
    clock.advance(120)
    body = assert_tokens(refresh_by_cookie(client, session.refresh_token))
    [entry] = sessions_of(client, body["access_token"])
    assert entry["id"] == session.sid
    assert entry["created_at"] == iso_utc(login_at)
    assert entry["last_used_at"] == iso_utc(login_at + 120)
    assert datetime.fromisoformat(entry["last_used_at"]) > datetime.fromisoformat(entry["created_at"])
    assert entry["current"] is True


def test_sessions_needs_an_access_token(client: TestClient) -> None:
    session = login(client)
    response = client.get("/auth/sessions")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == BARE_CHALLENGE
    assert_no_store(response)
    response = client.get("/auth/sessions", headers=bearer("garbage"))
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == MALFORMED_CHALLENGE
    response = client.get("/auth/sessions", headers=bearer(session.access_token))
    assert response.status_code == 200


def test_sessions_hides_ended_sessions(client: TestClient) -> None:
    kept = login(client)
    ended = login(client)
    assert_no_content(post(client, "/auth/logout", headers=cookie_header(ended.refresh_token)))
    assert [entry["id"] for entry in sessions_of(client, kept.access_token)] == [kept.sid]


# ---------------------------------------------------------------------------------------------
# DELETE /auth/sessions/{id}
# ---------------------------------------------------------------------------------------------


def test_delete_session_is_204_and_ends_it(client: TestClient) -> None:
    caller = login(client)
    target = login(client)
    response = client.delete(f"/auth/sessions/{target.sid}", headers=bearer(caller.access_token))
    assert_no_content(response)
    assert_no_cookie(response)  # another session's revoke leaves the caller's cookie alone
    assert_invalid_grant(refresh_by_cookie(client, target.refresh_token))
    assert_tokens(refresh_by_cookie(client, caller.refresh_token))
    assert [entry["id"] for entry in sessions_of(client, caller.access_token)] == [caller.sid]
    # deleting it again: no longer a live session of the subject
    response = client.delete(f"/auth/sessions/{target.sid}", headers=bearer(caller.access_token))
    assert_error(response, 404, "not_found")


def test_delete_own_current_session_clears_the_cookie(client: TestClient) -> None:
    session = login(client)
    response = client.delete(f"/auth/sessions/{session.sid}", headers=bearer(session.access_token))
    assert_no_content(response)
    assert_cookie_cleared(response)
    assert_invalid_grant(refresh_by_cookie(client, session.refresh_token))


def test_delete_another_subjects_session_is_404_and_leaves_it_alone(client: TestClient) -> None:
    mine = login(client, subject="42")
    theirs = login(client, subject="7")
    response = client.delete(f"/auth/sessions/{theirs.sid}", headers=bearer(mine.access_token))
    assert_error(response, 404, "not_found")
    assert_no_store(response)
    assert_tokens(refresh_by_cookie(client, theirs.refresh_token))
    assert [entry["id"] for entry in sessions_of(client, mine.access_token)] == [mine.sid]


@pytest.mark.parametrize("session_id", ["AAAAAAAAAAAAAAAAAAAAAA", "nope", "%7Bx%7D"])
def test_delete_unknown_session_is_404(client: TestClient, session_id: str) -> None:
    session = login(client)
    response = client.delete(f"/auth/sessions/{session_id}", headers=bearer(session.access_token))
    assert_error(response, 404, "not_found")
    assert_no_store(response)
    assert_tokens(refresh_by_cookie(client, session.refresh_token))


def test_delete_session_needs_an_access_token(client: TestClient) -> None:
    session = login(client)
    response = client.delete(f"/auth/sessions/{session.sid}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == BARE_CHALLENGE
    response = client.delete(f"/auth/sessions/{session.sid}", headers=bearer("garbage"))
    assert_error(response, 401, "invalid_token")
    assert_tokens(refresh_by_cookie(client, session.refresh_token))


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/auth/refresh", "POST"),
        ("PUT", "/auth/refresh", "POST"),
        ("GET", "/auth/logout", "POST"),
        ("GET", "/auth/logout-all", "POST"),
        ("POST", "/auth/sessions", "GET"),
        ("GET", "/auth/sessions/abc", "DELETE"),
    ],
)
def test_wrong_method_on_a_library_path_is_405_with_allow(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert_no_store(response)


# ---------------------------------------------------------------------------------------------
# protected routes
# ---------------------------------------------------------------------------------------------


def test_protected_route_without_token_is_a_bare_challenge(client: TestClient) -> None:
    for path in ("/me", "/guarded", "/auth/custom"):
        response = client.get(path)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == BARE_CHALLENGE
        assert "error=" not in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNlcjpwYXNz", "Token abc", "Bearertoken"],
)
def test_other_authorization_schemes_count_as_no_token(client: TestClient, authorization: str) -> None:
    response = client.get("/me", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == BARE_CHALLENGE


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."])
def test_protected_route_with_a_bad_token_is_invalid_token(client: TestClient, token: str) -> None:
    response = client.get("/me", headers=bearer(token))
    body = assert_error(response, 401, "invalid_token")
    header = response.headers["www-authenticate"]
    assert (
        header
        == f'Bearer realm="api", error="invalid_token", error_description="{body["error_description"]}"'
    )


def test_protected_route_with_a_garbage_token_names_it_malformed(client: TestClient) -> None:
    response = client.get("/me", headers=bearer("garbage"))
    assert_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == MALFORMED_CHALLENGE


def test_protected_route_with_a_tampered_or_foreign_token_is_invalid_token(client: TestClient) -> None:
    session = login(client)
    claims = claims_of(session.access_token)
    forged = jwt.encode(claims, "another-secret-0123456789-0123456789-01", headers={"typ": "at+jwt"})
    response = client.get("/me", headers=bearer(forged))
    assert_error(response, 401, "invalid_token")
    assert response.json()["error_description"] == "signature verification failed"
    # a refresh token never passes as an access token
    response = client.get("/me", headers=bearer(session.refresh_token))
    assert_error(response, 401, "invalid_token")


def test_protected_route_with_an_expired_token_says_token_expired(
    client: TestClient, clock: ManualClock
) -> None:
    session = login(client)
    clock.advance(ACCESS_TTL - 1)
    assert me(client, session.access_token).status_code == 200
    clock.advance(LEEWAY + 2)
    response = me(client, session.access_token)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token", "error_description": "token expired"}
    assert response.headers["www-authenticate"] == EXPIRED_CHALLENGE
    # a refresh helps, as the description promises
    body = assert_tokens(refresh_by_cookie(client, session.refresh_token))
    assert me(client, body["access_token"]).status_code == 200


def test_protected_route_accepts_a_valid_token_and_lowercase_scheme(client: TestClient) -> None:
    session = login(client)
    for scheme in ("Bearer", "bearer", "BEARER"):
        response = client.get("/me", headers={"Authorization": f"{scheme} {session.access_token}"})
        assert response.status_code == 200, scheme
        assert response.json()["sub"] == "42"
        assert response.json()["sid"] == session.sid


def test_scopes_contain_authenticated(client: TestClient) -> None:
    session = login(client)
    body = me(client, session.access_token).json()
    assert set(body) == {"sub", "sid", "scopes"}
    assert "authenticated" in body["scopes"]


def test_app_scope_claim_becomes_auth_scopes(client: TestClient) -> None:
    session = login(client, claims={"scope": "read write"})
    assert me(client, session.access_token).json()["scopes"] == ["authenticated", "read", "write"]


def test_two_authorization_headers_is_invalid_request(client: TestClient) -> None:
    session = login(client)
    headers = [("Authorization", f"Bearer {session.access_token}"), ("Authorization", "Bearer other")]
    response = client.get("/me", headers=headers)
    assert_error(response, 400, "invalid_request")
    same = [("Authorization", f"Bearer {session.access_token}")] * 2
    assert_error(client.get("/me", headers=same), 400, "invalid_request")


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer a b"])
def test_malformed_bearer_header_is_invalid_request(client: TestClient, value: str) -> None:
    assert_error(client.get("/me", headers={"Authorization": value}), 400, "invalid_request")


def test_access_token_in_query_string_is_refused(client: TestClient) -> None:
    session = login(client)
    response = client.get(f"/me?access_token={session.access_token}")
    assert_error(response, 400, "invalid_request")
    # even together with a valid header
    response = client.get(f"/me?access_token={session.access_token}", headers=bearer(session.access_token))
    assert_error(response, 400, "invalid_request")


def test_excluded_route_works_with_or_without_a_token(client: TestClient) -> None:
    session = login(client)
    assert client.get("/public").json() == {"authenticated": False}
    response = client.get("/public", headers=bearer(session.access_token))
    assert response.status_code == 200
    assert response.json() == {"authenticated": True}
    response = client.get("/public", headers=bearer("garbage"))
    assert response.status_code == 200
    assert response.json() == {"authenticated": False}
    response = client.get("/public/")
    assert response.status_code != 401  # the exclusion is segment-wise: /public/... is excluded too


def test_excluded_prefix_is_segment_wise(client: TestClient) -> None:
    response = client.get("/publicity")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == BARE_CHALLENGE


def test_app_route_under_the_prefix_passes_through(client: TestClient) -> None:
    session = login(client)
    response = client.get("/auth/custom")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == BARE_CHALLENGE
    response = client.get("/auth/custom", headers=bearer(session.access_token))
    assert response.status_code == 200
    assert response.text == "app route under the prefix (GET)"


def test_requires_authenticated_works(client: TestClient) -> None:
    session = login(client)
    response = client.get("/guarded", headers=bearer(session.access_token))
    assert response.status_code == 200
    assert response.json() == {"sub": "42"}
    response = client.get("/guarded")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == BARE_CHALLENGE


# ---------------------------------------------------------------------------------------------
# WebSocket
# ---------------------------------------------------------------------------------------------


def handshake_watchdog(app: ASGIApp) -> ASGIApp:
    """Does what a real server does when a WebSocket app returns without answering the handshake.

    uvicorn answers such a handshake with HTTP 500; without this wrapper the TestClient would wait
    forever for an answer. The wrapper closes with 1011 so such a test fails instead of hanging.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await app(scope, receive, send)
            return
        answered = False

        async def tracking_send(message: Message) -> None:
            nonlocal answered
            answered = True
            await send(message)

        await app(scope, receive, tracking_send)
        if not answered:
            await send({"type": "websocket.close", "code": 1011, "reason": "handshake never answered"})

    return wrapped


@pytest.fixture
def ws_client(auth: TokenAuth) -> Iterator[TestClient]:
    with TestClient(handshake_watchdog(build_app(auth)), base_url=BASE_URL) as test_client:
        yield test_client


def test_websocket_with_a_valid_token_is_accepted(ws_client: TestClient) -> None:
    session = login(ws_client)
    with ws_client.websocket_connect("/ws", headers=bearer(session.access_token)) as ws:
        assert ws.receive_json() == {"sub": "42"}


def test_websocket_without_a_token_is_denied_with_401(ws_client: TestClient) -> None:
    # TestClient offers the websocket.http.response (denial response) extension, so the handshake
    # must be answered with the same 401 as an HTTP request.
    with pytest.raises(WebSocketDenialResponse) as denied, ws_client.websocket_connect("/ws"):
        pass  # pragma: no cover
    assert denied.value.status_code == 401
    assert denied.value.headers["www-authenticate"] == BARE_CHALLENGE


def test_websocket_with_a_bad_token_is_denied_with_401(ws_client: TestClient) -> None:
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        ws_client.websocket_connect("/ws", headers=bearer("garbage")),
    ):
        pass  # pragma: no cover
    assert denied.value.status_code == 401
    assert denied.value.headers["www-authenticate"] == MALFORMED_CHALLENGE
    assert denied.value.json() == {"error": "invalid_token", "error_description": "malformed token"}


def run_websocket_handshake(
    app: ASGIApp, headers: list[tuple[bytes, bytes]], extensions: dict[str, Any]
) -> list[Message]:
    """Drives one WebSocket handshake straight through the ASGI app; returns what it sent."""
    scope: dict[str, Any] = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "scheme": "wss",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 443),
        "subprotocols": [],
        "extensions": extensions,
    }
    return drive_asgi(app, scope, {"type": "websocket.connect"})


def test_websocket_without_token_and_without_denial_extension_closes_1008(auth: TokenAuth) -> None:
    sent = run_websocket_handshake(build_app(auth), [], {})
    assert [m["type"] for m in sent] == ["websocket.close"]
    assert sent[0]["code"] == 1008


def test_websocket_without_token_with_denial_extension_sends_the_401(auth: TokenAuth) -> None:
    sent = run_websocket_handshake(build_app(auth), [], {"websocket.http.response": {}})
    assert [m["type"] for m in sent] == ["websocket.http.response.start", "websocket.http.response.body"]
    assert sent[0]["status"] == 401
    headers = {k.decode().lower(): v.decode() for k, v in sent[0]["headers"]}
    assert headers["www-authenticate"] == BARE_CHALLENGE
    assert headers["cache-control"] == "no-store"


def test_websocket_with_a_valid_token_direct(auth: TokenAuth) -> None:
    token = auth.access.issue("42", "AAAAAAAAAAAAAAAAAAAAAA").token
    sent = run_websocket_handshake(
        build_app(auth), [(b"authorization", f"Bearer {token}".encode())], {"websocket.http.response": {}}
    )
    assert sent[0] == {"type": "websocket.accept", "subprotocol": None, "headers": []}
    assert json.loads(sent[1]["text"]) == {"sub": "42"}


# ---------------------------------------------------------------------------------------------
# max sessions per user
# ---------------------------------------------------------------------------------------------


def test_max_sessions_per_user_evicts_the_oldest(make_client: MakeClient, clock: ManualClock) -> None:
    client = make_client(max_sessions_per_user=2)
    sessions = []
    for _ in range(3):
        sessions.append(login(client))
        clock.advance(1)
    other = login(client, subject="7")
    assert_invalid_grant(refresh_by_cookie(client, sessions[0].refresh_token))
    assert_tokens(refresh_by_cookie(client, sessions[1].refresh_token))
    assert_tokens(refresh_by_cookie(client, sessions[2].refresh_token))
    assert_tokens(refresh_by_cookie(client, other.refresh_token))
    listed = {entry["id"] for entry in sessions_of(client, sessions[2].access_token)}
    assert listed == {sessions[1].sid, sessions[2].sid}


# ---------------------------------------------------------------------------------------------
# key hygiene in the store
# ---------------------------------------------------------------------------------------------


def stored_strings(redis: fakeredis.FakeRedis, key: str) -> list[str]:
    kind = redis.type(key)
    if kind == "hash":
        return [part for pair in redis.hgetall(key).items() for part in pair]
    if kind == "zset":
        return [member for member, _ in redis.zrange(key, 0, -1, withscores=True)]
    if kind == "string":  # a user's sessions, in binary: read the bytes (tokens are ASCII)
        raw = fakeredis.FakeRedis(connection_pool=redis.connection_pool, decode_responses=False)
        return [(raw.execute_command("GET", key, NEVER_DECODE=True) or b"").decode("latin-1")]
    if kind == "set":
        return list(redis.smembers(key))
    if kind == "list":
        return list(redis.lrange(key, 0, -1))
    raise AssertionError(f"unexpected key type {kind} for {key}")


def test_store_keys_have_ttls_hash_tags_and_no_tokens(
    client: TestClient, clock: ManualClock, inspect_redis: fakeredis.FakeRedis
) -> None:
    cookie_session = login(client, headers={"User-Agent": "hygiene-test"})
    clock.advance(30)
    rotated = refresh_by_cookie(client, cookie_session.refresh_token)
    rotated_body = assert_tokens(rotated)
    rotated_refresh = assert_cookie_set(rotated, REFRESH_TTL)
    body_session = login(client, transport="body")
    body_rotated = assert_tokens(refresh_by_body(client, body_session.refresh_token), "body")
    other = login(client, subject="7")

    refresh_tokens = [
        cookie_session.refresh_token,
        rotated_refresh,
        body_session.refresh_token,
        body_rotated["refresh_token"],
        other.refresh_token,
    ]
    access_tokens = [
        cookie_session.access_token,
        rotated_body["access_token"],
        body_session.access_token,
        body_rotated["access_token"],
        other.access_token,
    ]
    secrets_ = [
        *refresh_tokens,
        *(token.rsplit(".", 1)[1] for token in refresh_tokens),  # the MAC part
        *access_tokens,
        *(token.rsplit(".", 1)[1] for token in access_tokens),  # the signature part
    ]
    tags = {token.split(".")[1] for token in refresh_tokens}
    assert len(tags) == 2  # subjects 42 and 7

    keys = sorted(inspect_redis.keys("*"))
    assert keys, "the store holds no keys at all"
    seen_tags = set()
    for key in keys:
        ttl = inspect_redis.pttl(key)
        assert ttl > 0, f"{key} has no TTL ({ttl})"
        owners = [tag for tag in tags if "{" + tag + "}" in key]
        assert len(owners) == 1, f"{key} carries no user hash tag"
        seen_tags.update(owners)
        values = stored_strings(inspect_redis, key)
        for secret in secrets_:
            assert secret not in key, f"{key} names a token"
            for value in values:
                assert secret not in value, f"{key} stores a token (or its MAC)"
    assert seen_tags == tags
