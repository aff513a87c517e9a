"""Concurrency, reuse and store outages against real processes: two uvicorn apps, one redis-server."""

from __future__ import annotations

import asyncio
import time

import httpx2

from harness.processes import AppServer, RedisServer
from tests.integration.helpers import app_env, login, me, refresh
from tests.support.fixtures import AppServerFactory, RedisServerFactory
from tests.support.stored import stored_generation as generation_in

APP = "tests.apps:app_from_env"


def stored_generation(redis: RedisServer, refresh_token: str) -> int:
    return generation_in(redis.client(), refresh_token)


async def refresh_concurrently(apps: list[AppServer], token: str, count: int) -> list[httpx2.Response]:
    # One client per request: separate TCP connections, so the processes really see them at once.
    async def one(i: int) -> httpx2.Response:
        async with httpx2.AsyncClient(timeout=20) as client:
            app = apps[i % len(apps)]
            return await client.post(f"{app.url}/auth/refresh", json={"refresh_token": token})

    return await asyncio.gather(*(one(i) for i in range(count)))


def test_fifty_concurrent_refreshes_rotate_exactly_once(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    apps = [app_server_factory(APP, app_env(redis_server), factory=True) for _ in range(2)]
    issued = login(apps[0])
    answers = asyncio.run(refresh_concurrently(apps, issued["refresh_token"], 50))
    assert [a.status_code for a in answers] == [200] * 50, [a.text for a in answers if a.status_code != 200]
    children = {a.json()["refresh_token"] for a in answers}
    assert len(children) == 1
    assert len({a.json()["access_token"] for a in answers}) == 50
    child = children.pop()
    assert stored_generation(redis_server, child) == 1  # exactly one rotation happened
    # the family stays alive: the child rotates normally on either process
    next_answer = refresh(apps[1], child)
    assert next_answer.status_code == 200, next_answer.text
    assert stored_generation(redis_server, next_answer.json()["refresh_token"]) == 2


def test_reuse_after_grace_revokes_the_family(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    app = app_server_factory(APP, app_env(redis_server, SR_GRACE="1"), factory=True)
    issued = login(app)
    child = refresh(app, issued["refresh_token"])
    assert child.status_code == 200
    time.sleep(1.2)  # real time: the server's clock must pass the 1 s grace window
    stolen = refresh(app, issued["refresh_token"])
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"
    newest = refresh(app, child.json()["refresh_token"])
    assert newest.status_code == 400
    assert newest.json() == {
        "error": "invalid_grant",
        "error_description": "refresh token is invalid or revoked",
    }
    assert "SECURITY refresh token reuse detected" in app.log_text()


def test_redis_outage_answers_503_and_loses_no_session(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    app = app_server_factory(APP, app_env(redis_server), factory=True)
    by_body = login(app)
    by_cookie = login(app, transport="cookie")

    redis_server.kill()  # SIGKILL: no chance to save; append-only file (fsync always) is all we have
    started = time.monotonic()
    outage = refresh(app, by_body["refresh_token"])
    assert outage.status_code == 503
    assert time.monotonic() - started < 5
    assert outage.json()["error"] == "temporarily_unavailable"
    assert outage.headers["retry-after"] == "2"
    cookie_outage = httpx2.post(
        f"{app.url}/auth/refresh", cookies={"refresh_token": by_cookie["cookie"]}, timeout=10
    )
    assert cookie_outage.status_code == 503
    assert "set-cookie" not in cookie_outage.headers  # the browser keeps its cookie
    assert httpx2.post(f"{app.url}/login", json={}, timeout=10).status_code == 503
    # validating access tokens needs no Redis
    assert me(app, by_body["access_token"]).status_code == 200
    assert me(app, by_cookie["access_token"]).status_code == 200

    redis_server.restart()
    recovered = refresh(app, by_body["refresh_token"])
    assert recovered.status_code == 200, recovered.text
    assert me(app, recovered.json()["access_token"]).status_code == 200
    by_cookie_after = httpx2.post(
        f"{app.url}/auth/refresh", cookies={"refresh_token": by_cookie["cookie"]}, timeout=10
    )
    assert by_cookie_after.status_code == 200, by_cookie_after.text


def test_startup_fails_loudly_without_redis(
    app_server_factory: AppServerFactory, redis_server: RedisServer
) -> None:
    redis_server.stop()
    app = app_server_factory(APP, {"SR_REDIS_URL": redis_server.url}, factory=True, wait=False)
    code = app.wait_exit(timeout=20)
    assert code != 0
    log = app.log_text()
    assert "starlette-refresh cannot reach its session store" in log
    assert redis_server.url in log
    assert "Application startup failed" in log


def test_startup_warns_when_redis_keeps_nothing(
    redis_server_factory: RedisServerFactory, app_server_factory: AppServerFactory
) -> None:
    volatile = redis_server_factory(appendonly=False)
    app = app_server_factory(APP, app_env(volatile), factory=True)
    assert "persistence off" in app.log_text()
    durable = redis_server_factory(appendonly=True)
    other = app_server_factory(APP, app_env(durable), factory=True)
    assert "session store ready" in other.log_text()
    assert "persistence off" not in other.log_text()


def test_logs_never_carry_raw_tokens(redis_server: RedisServer, app_server_factory: AppServerFactory) -> None:
    app = app_server_factory(APP, app_env(redis_server), factory=True)
    issued = login(app)
    child = refresh(app, issued["refresh_token"]).json()
    refresh(app, issued["refresh_token"])  # a grace answer
    httpx2.post(f"{app.url}/auth/logout", json={"refresh_token": child["refresh_token"]}, timeout=10)
    log = app.log_text()
    for event in ("refresh rotated", "refresh within grace", "logout: session"):
        assert event in log
    for token in (issued["refresh_token"], child["refresh_token"]):
        assert token not in log
        assert token.rsplit(".", 1)[1] not in log  # the MAC: the part that makes it a credential
    for token in (issued["access_token"], child["access_token"]):
        assert token not in log
        assert token.rsplit(".", 1)[1] not in log  # the JWS signature
