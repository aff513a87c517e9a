"""The examples for Django, Litestar and Quart (examples/*_app.py), each run as two uvicorn processes
on one real redis-server: a login on one, protected requests on both, a refresh on the other, and a
logout on the first that the second refuses within a second (issue 15).

Django's ASGI handler refuses the lifespan, so its processes start the library on their first
request; with Redis down at boot they answer 503 and log why, and work once Redis is up. Litestar
and Quart deliver the lifespan through ``auth.wrap``. And inside Litestar's own middleware list the
endpoints would answer Litestar's 404, which is why the example wraps the app from outside.
"""

from __future__ import annotations

import asyncio
import time
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import httpx2
import pytest

from harness.processes import AppServer, RedisServer, stop_quietly
from starlette_refresh import TokenAuth
from starlette_refresh.startup import FIRST_REQUEST_START
from tests.support.fixtures import AppServerFactory

pytestmark = pytest.mark.integration

SECRET = "examples-frameworks-secret-0123456789-0123456789"
ANA = {"email": "ana@example.com", "password": "correct horse"}
EXAMPLES = {
    "django": "examples.django_app:application",
    "litestar": "examples.litestar_app:application",
    "quart": "examples.quart_app:application",
}
REVOKED = {"error": "invalid_token", "error_description": "token revoked"}


def example_env(redis_url: str) -> dict[str, str]:
    # COOKIE_SECURE=0: the processes speak plain http on 127.0.0.1.
    return {"JWT_SECRET": SECRET, "REDIS_URL": redis_url, "COOKIE_SECURE": "0"}


def refresh_cookie(answer: httpx2.Response) -> str:
    """The value of the refresh cookie the answer sets (the last one: deletions come first)."""
    values = []
    for header in answer.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        values.append(cookie["refresh_token"].value)
    assert values, f"no Set-Cookie in {answer.headers}"
    assert values[-1], "the last refresh cookie is a deletion"
    return values[-1]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"refresh_token={value}"}


def seconds_until_refused(client: httpx2.Client, app: AppServer, access_token: str, since: float) -> float:
    """Polls a protected route until it refuses ``access_token`` as revoked (200 until then)."""
    while True:
        answer = client.get(f"{app.url}/api/notes", headers=bearer(access_token))
        if answer.status_code == 401:
            assert answer.json() == REVOKED
            return time.monotonic() - since
        assert answer.status_code == 200, answer.text
        if time.monotonic() - since > 3:
            raise AssertionError(f"{app} still accepts the token 3 s after the logout")
        time.sleep(0.005)


def assert_session_lifecycle(one: AppServer, two: AppServer) -> float:
    """Login on ``one``, protected requests on both, a refresh on ``two``, a logout on ``one``;
    returns how long ``two`` took to refuse the logged-out session's access token."""
    with httpx2.Client(timeout=10) as client:
        wrong = client.post(f"{one.url}/login", json={**ANA, "password": "nope"})
        assert wrong.status_code == 401
        login = client.post(f"{one.url}/login", json=ANA)
        assert login.status_code == 200, login.text
        assert set(login.json()) == {"access_token", "token_type", "expires_in"}
        assert login.headers["cache-control"] == "no-store"
        access = login.json()["access_token"]
        for app in (one, two):
            assert client.get(f"{app.url}/api/notes").status_code == 401
            notes = client.get(f"{app.url}/api/notes", headers=bearer(access))
            assert notes.json() == {"owner": ANA["email"], "notes": ["buy milk"]}

        refreshed = client.post(f"{two.url}/auth/refresh", headers=cookie(refresh_cookie(login)))
        assert refreshed.status_code == 200, refreshed.text
        access = refreshed.json()["access_token"]
        current = refresh_cookie(refreshed)
        assert client.get(f"{one.url}/api/notes", headers=bearer(access)).status_code == 200

        logout = client.post(f"{one.url}/auth/logout", headers=cookie(current))
        assert logout.status_code == 204
        took = seconds_until_refused(client, two, access, time.monotonic())
        again = client.post(f"{two.url}/auth/refresh", headers=cookie(current))
        assert again.json()["error"] == "invalid_grant"
    return took


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_two_processes_of_the_example_share_sessions_and_revocations(
    example: str, redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    one, two = (app_server_factory(EXAMPLES[example], example_env(redis_server.url)) for _ in range(2))

    took = assert_session_lifecycle(one, two)

    assert took < 1.0, f"the logout reached the other process after {took:.3f} s"
    for app in (one, two):
        # Django gets no lifespan: it says, once, that it started on the first request. The others
        # start with the app, through the lifespan auth.wrap passes on.
        assert app.log_text().count(FIRST_REQUEST_START) == (1 if example == "django" else 0)
        app.stop()
        # Without a lifespan there is no shutdown, and nothing goes wrong at exit either.
        assert "Finished server process" in app.log_text()
        assert "Traceback" not in app.log_text()
        assert "Task was destroyed" not in app.log_text()


def test_the_django_example_with_redis_down_at_boot_answers_503_and_says_why_until_redis_is_up(
    tmp_path: Path, app_server_factory: AppServerFactory
) -> None:
    redis = RedisServer(tmp_path / "redis-later")  # its port, not yet listening
    try:
        app = app_server_factory(EXAMPLES["django"], example_env(redis.url))  # boots: no lifespan to fail
        with httpx2.Client(timeout=10) as client:
            for method, path in [("GET", "/api/notes"), ("POST", "/login"), ("POST", "/auth/refresh")]:
                answer = client.request(method, f"{app.url}{path}", json=ANA if path == "/login" else None)
                assert answer.status_code == 503, answer.text  # never a 200 without the store
                assert answer.json()["error"] == "temporarily_unavailable"
                assert answer.headers["retry-after"]
            log = app.log_text()
            assert "could not start on the first request" in log
            assert f"cannot reach its session store ({redis.url})" in log
            assert "Start Redis or fix redis_url" in log

            redis.start()

            login = client.post(f"{app.url}/login", json=ANA)
            assert login.status_code == 200, login.text
            notes = client.get(f"{app.url}/api/notes", headers=bearer(login.json()["access_token"]))
            assert notes.status_code == 200
        assert app.log_text().count(FIRST_REQUEST_START) == 1
    finally:
        stop_quietly([redis])


# -- Why the Litestar example wraps the app from outside ---------------------------------------


def test_inside_litestars_middleware_list_the_endpoints_answer_litestars_404() -> None:
    from litestar import Litestar, Request, get

    auth = TokenAuth(secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer()))

    @get("/api/notes")
    async def notes(request: Request[Any, Any, Any]) -> dict[str, Any]:
        return {"owner": request.scope["user"].identity}

    async def answers(app: Any) -> dict[str, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            return {
                path: (await client.post(path)).status_code
                for path in ("/auth/refresh", "/auth/logout", "/auth/revoke")
            } | {"/api/notes": (await client.get("/api/notes")).status_code}

    inside = asyncio.run(answers(Litestar(route_handlers=[notes], middleware=[auth.wrap])))
    outside = asyncio.run(answers(auth.wrap(Litestar(route_handlers=[notes]))))

    # Inside, only a path that matches a route of the app reaches the middleware.
    assert inside == {"/auth/refresh": 404, "/auth/logout": 404, "/auth/revoke": 404, "/api/notes": 401}
    # Outside, the middleware answers its endpoints: 400 (no refresh token), 204, 400 (no token).
    assert outside == {"/auth/refresh": 400, "/auth/logout": 204, "/auth/revoke": 400, "/api/notes": 401}
