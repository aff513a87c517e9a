"""Outside Starlette, never degrade silently (issue 15): ``auth.wrap(app)`` protects any ASGI app, a
process that gets no lifespan startup starts itself on its first request (503 until it has), and
``auth.issue_session`` gives a login view of any framework its answer as data.

The apps here run on one event loop through httpx's ``ASGITransport``, which, like Django's ASGI
handler behind a server, delivers no ``lifespan``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any

import fakeredis
import httpx
import pytest
from starlette.responses import JSONResponse
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from starlette_refresh import TokenAuth
from starlette_refresh.endpoints import Transport
from starlette_refresh.logins import LoginAnswer
from starlette_refresh.middleware import TokenAuthMiddleware
from starlette_refresh.startup import FIRST_REQUEST_START
from tests.apps import build_app

ORIGIN = "https://app.example.com"
STARTUP_LOGGER = "starlette_refresh.startup"
UNAVAILABLE = {
    "error": "temporarily_unavailable",
    "error_description": "the session store is unavailable; retry shortly",
}


def plain_app(auth: TokenAuth) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A plain ASGI app, no framework: ``POST /login`` issues a session through
    ``auth.issue_session`` (body transport with ``?body``); any other path says who is there."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # ignores lifespan, like many plain ASGI apps
        if scope["path"] == "/login":
            transport: Transport = "body" if scope["query_string"] == b"body" else "cookie"
            answer = await auth.issue_session(scope, "ana", {"email": "ana@example.com"}, transport=transport)
            await send_json(send, answer.status, answer.body, answer.headers)
            return
        user = scope["user"]
        await send_json(send, 200, {"user": user.identity if user.is_authenticated else None}, [])

    return app


async def send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[str, str]]) -> None:
    raw = [(b"content-type", b"application/json")]
    raw += [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def wrapped(auth: TokenAuth) -> Any:
    return auth.wrap(plain_app(auth))


def client_of(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def count_starts(auth: TokenAuth, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the store's starts (one per start of the library), each taking a moment so that
    requests sent together meet it in progress."""
    starts: list[int] = []
    original = auth.store.start

    async def counted() -> None:
        starts.append(1)
        await asyncio.sleep(0.05)
        await original()

    monkeypatch.setattr(auth.store, "start", counted)
    return starts


def first_request_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == STARTUP_LOGGER and r.getMessage() == FIRST_REQUEST_START]


# -- auth.wrap ---------------------------------------------------------------------------------


def test_wrap_protects_a_plain_asgi_app_and_answers_the_endpoints(auth: TokenAuth) -> None:
    async def scenario() -> None:
        async with client_of(wrapped(auth)) as client:
            refused = await client.get("/notes")
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer realm=")
            login = await client.post("/login?body")
            assert login.status_code == 200, login.text
            tokens = login.json()
            assert (await client.get("/notes", headers=bearer(tokens["access_token"]))).json() == {
                "user": "ana"
            }
            refreshed = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert refreshed.status_code == 200, refreshed.text
            logout = await client.post(
                "/auth/logout", json={"refresh_token": refreshed.json()["refresh_token"]}
            )
            assert logout.status_code == 204
            revoked = await client.get("/notes", headers=bearer(refreshed.json()["access_token"]))
            assert revoked.json()["error_description"] == "token revoked"

    asyncio.run(scenario())


def test_wrap_is_the_middleware_of_auth_middleware(auth: TokenAuth) -> None:
    app = plain_app(auth)
    protected = auth.wrap(app)
    assert isinstance(protected, TokenAuthMiddleware)
    assert protected.app is app


# -- Starting without a lifespan ---------------------------------------------------------------


def test_without_a_lifespan_the_first_request_starts_the_library_and_says_so_once(
    auth: TokenAuth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="starlette_refresh")

    async def scenario() -> None:
        assert not auth.revocation_feed.status()["live"]
        async with client_of(wrapped(auth)) as client:
            for _ in range(3):
                assert (await client.get("/notes")).status_code == 401
            assert auth.revocation_feed.status()["live"]  # the feed follows revocations
        await auth.shutdown()

    asyncio.run(scenario())
    (said,) = first_request_warnings(caplog)
    assert said.levelno == logging.WARNING
    assert "session store ready" in caplog.text  # the same checks as the lifespan startup


def test_concurrent_first_requests_wait_for_one_start(
    auth: TokenAuth, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    starts = count_starts(auth, monkeypatch)

    async def scenario() -> list[int]:
        async with client_of(wrapped(auth)) as client:
            answers = await asyncio.gather(*(client.get("/notes") for _ in range(10)))
        await auth.shutdown()
        return [a.status_code for a in answers]

    assert asyncio.run(scenario()) == [401] * 10
    assert len(starts) == 1
    assert len(first_request_warnings(caplog)) == 1


def test_a_session_revoked_before_the_process_started_is_refused_on_its_first_request(
    make_auth: Callable[..., TokenAuth], fake_redis: Any
) -> None:
    first, fresh = make_auth(), make_auth()

    async def scenario() -> httpx.Response:
        issued = await first.sessions.login("ana", None, "")
        await first.sessions.logout(issued.refresh_token)  # on another process, before this one started
        async with client_of(wrapped(fresh)) as client:
            answer = await client.get("/notes", headers=bearer(issued.access_token))
        await fresh.shutdown()
        return answer

    answer = asyncio.run(scenario())
    assert (answer.status_code, answer.json()["error_description"]) == (401, "token revoked")


def test_a_failed_start_answers_503_logs_what_to_do_and_the_next_request_tries_again(
    auth: TokenAuth, fake_server: fakeredis.FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        issued = await auth.sessions.login("ana", None, "")  # a valid token, from before the outage
        fake_server.connected = False
        async with client_of(wrapped(auth)) as client:
            for path, headers in [("/notes", bearer(issued.access_token)), ("/login", {}), ("/notes", {})]:
                answer = await client.get(path, headers=headers)
                # never served without the start, not even with a valid token
                assert (answer.status_code, answer.json()) == (503, UNAVAILABLE)
                assert answer.headers["retry-after"] == str(auth.settings.retry_after)
                assert answer.headers["cache-control"] == "no-store"
            fake_server.connected = True
            answer = await client.get("/notes", headers=bearer(issued.access_token))
            assert (answer.status_code, answer.json()) == (200, {"user": "ana"})
        await auth.shutdown()

    asyncio.run(scenario())
    errors = [r for r in caplog.records if r.name == STARTUP_LOGGER and r.levelno == logging.ERROR]
    assert len(errors) == 3  # one per failed attempt: each request tried again
    assert "could not start on the first request" in errors[0].getMessage()
    assert "Start Redis or fix redis_url" in errors[0].getMessage()
    assert len(first_request_warnings(caplog)) == 1  # said once it has started


def test_concurrent_requests_during_a_failed_start_share_its_one_attempt(
    auth: TokenAuth,
    fake_server: fakeredis.FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    starts = count_starts(auth, monkeypatch)
    fake_server.connected = False

    async def scenario() -> list[int]:
        async with client_of(wrapped(auth)) as client:
            answers = await asyncio.gather(*(client.get("/notes") for _ in range(5)))
        return [a.status_code for a in answers]

    assert asyncio.run(scenario()) == [503] * 5
    assert len(starts) == 1
    assert len([r for r in caplog.records if r.levelno == logging.ERROR and r.name == STARTUP_LOGGER]) == 1


def test_a_websocket_first_starts_the_library_and_is_refused_1013_when_it_cannot(
    auth: TokenAuth, fake_server: fakeredis.FakeServer
) -> None:
    fake_server.connected = False
    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b"", "subprotocols": []}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(wrapped(auth)(scope, receive, send))
    assert [(m["type"], m["code"]) for m in sent] == [("websocket.close", 1013)]


def test_with_a_lifespan_no_request_starts_the_library(
    auth: TokenAuth, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    starts = count_starts(auth, monkeypatch)
    with TestClient(build_app(auth), base_url="https://testserver") as client:
        assert len(starts) == 1  # the lifespan's
        assert client.get("/me").status_code == 401
        assert client.post("/login").status_code == 200
    assert len(starts) == 1
    assert first_request_warnings(caplog) == []


def test_an_explicit_startup_counts_as_the_start(
    auth: TokenAuth, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    starts = count_starts(auth, monkeypatch)

    async def scenario() -> None:
        await auth.startup()
        async with client_of(wrapped(auth)) as client:
            assert (await client.get("/notes")).status_code == 401
        await auth.shutdown()

    asyncio.run(scenario())
    assert len(starts) == 1
    assert first_request_warnings(caplog) == []


# -- auth.issue_session: a login for any framework ---------------------------------------------


def scope_of(headers: dict[str, str], root_path: str = "") -> Scope:
    return {
        "type": "http",
        "scheme": "https",
        "method": "POST",
        "path": f"{root_path}/login",
        "root_path": root_path,
        "query_string": b"",
        "server": ("app.example.com", 443),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
    }


def issue(auth: TokenAuth, scope: Scope, transport: str = "cookie") -> LoginAnswer:
    async def scenario() -> LoginAnswer:
        return await auth.issue_session(scope, "ana", {"email": "ana@example.com"}, transport=transport)  # type: ignore[arg-type]

    return asyncio.run(scenario())


def cookies(answer: LoginAnswer) -> list[SimpleCookie]:
    found = []
    for name, value in answer.headers:
        if name == "set-cookie":
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(value)
            found.append(cookie)
    return found


def test_a_cookie_login_answers_the_tokens_and_the_cookie_headers(auth: TokenAuth) -> None:
    answer = issue(auth, scope_of({"Host": "app.example.com", "Origin": ORIGIN, "User-Agent": "Firefox"}))
    assert answer.ok
    assert answer.status == 200
    assert set(answer.body) == {"access_token", "token_type", "expires_in"}
    assert answer.body["token_type"] == "Bearer"
    assert ("cache-control", "no-store") in answer.headers
    assert not any(name == "content-type" for name, _ in answer.headers)  # the view's response sets it
    own = cookies(answer)[-1]["refresh_token"]  # after the planted-cookie deletions
    assert own["path"] == "/auth"
    assert own["httponly"]
    assert own["secure"]
    assert own["samesite"] == "strict"
    assert int(own["max-age"]) > 0
    sessions = asyncio.run(auth.list_sessions("ana"))
    assert [s.user_agent for s in sessions] == ["Firefox"]
    assert auth.verify_access_token(answer.body["access_token"])["email"] == "ana@example.com"


def test_a_cookie_login_deletes_refresh_cookies_a_sibling_host_planted(auth: TokenAuth) -> None:
    headers = {"Host": "app.example.com", "Origin": ORIGIN, "Cookie": "refresh_token=planted"}
    answer = issue(auth, scope_of(headers))
    deleted = [c["refresh_token"] for c in cookies(answer) if c["refresh_token"]["max-age"] == "0"]
    assert {(m["domain"], m["path"]) for m in deleted} >= {("example.com", "/"), ("example.com", "/auth")}
    assert cookies(answer)[-1]["refresh_token"]["max-age"] != "0"  # the app's own cookie comes last


def test_the_cookie_path_carries_the_root_path(auth: TokenAuth) -> None:
    answer = issue(auth, scope_of({"Host": "app.example.com"}, root_path="/api"))
    assert cookies(answer)[-1]["refresh_token"]["path"] == "/api/auth"


def test_a_body_login_answers_the_refresh_token_in_the_body_and_sets_no_cookie(auth: TokenAuth) -> None:
    # no same-origin check: a cookie-less login cannot be a cross-site page's
    answer = issue(auth, scope_of({"Host": "app.example.com", "Origin": "https://evil.example"}), "body")
    assert answer.status == 200
    assert set(answer.body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert not any(name == "set-cookie" for name, _ in answer.headers)


def test_a_cookie_login_from_another_sites_page_is_403_without_a_cookie(auth: TokenAuth) -> None:
    for cross_site in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        answer = issue(auth, scope_of({"Host": "app.example.com", **cross_site}))
        assert (answer.status, answer.body["error"]) == (403, "cross_site_request")
        assert not answer.ok
        assert cookies(answer) == []
    assert asyncio.run(auth.list_sessions("ana")) == []


def test_a_login_during_a_store_outage_is_503_with_retry_after(
    auth: TokenAuth, fake_server: fakeredis.FakeServer
) -> None:
    fake_server.connected = False
    answer = issue(auth, scope_of({"Host": "app.example.com"}))
    assert (answer.status, answer.body) == (503, UNAVAILABLE)
    assert ("retry-after", str(auth.settings.retry_after)) in answer.headers
    assert cookies(answer) == []


def test_an_unknown_transport_is_a_programming_error(auth: TokenAuth) -> None:
    with pytest.raises(ValueError, match="transport"):
        issue(auth, scope_of({}), "header")


def test_auth_login_is_the_same_answer_as_a_starlette_response(auth: TokenAuth) -> None:
    with TestClient(build_app(auth), base_url=ORIGIN) as client:
        login = client.post("/login", headers={"Origin": ORIGIN})
    assert login.status_code == 200
    assert set(login.json()) == {"access_token", "token_type", "expires_in"}
    assert login.headers["content-type"] == "application/json"
    assert login.headers["cache-control"] == "no-store"
    assert len(login.headers.get_list("set-cookie")) > 1  # deletions of planted cookies, then its own
    assert login.cookies["refresh_token"]


def test_a_login_answer_keeps_every_header_of_the_response_but_the_bodys_own() -> None:
    response = JSONResponse({"access_token": "a"}, headers={"Cache-Control": "no-store"})
    response.raw_headers += [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    assert LoginAnswer.of(response) == LoginAnswer(
        200,
        {"access_token": "a"},
        [("cache-control", "no-store"), ("set-cookie", "a=1"), ("set-cookie", "b=2")],
    )
