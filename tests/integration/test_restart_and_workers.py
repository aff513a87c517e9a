"""The bug that started the project, as tests: sessions must survive restarts and other workers.

A per-process token store loses every session when the process restarts or when a second worker
answers. Here the store is a real redis-server, and each "restart" is a brand new TokenAuth and app
(in process) or a brand new uvicorn process.
"""

from __future__ import annotations

import httpx2
from starlette.testclient import TestClient

from harness.processes import RedisServer
from starlette_refresh import TokenAuth
from tests.apps import SECRET, build_app
from tests.integration.helpers import app_env, login, me, refresh
from tests.support.fixtures import AppServerFactory

APP = "tests.apps:app_from_env"


def fresh_app(redis: RedisServer) -> TestClient:
    auth = TokenAuth(secret_key=SECRET, redis_url=redis.url, exclude=["/login"])
    return TestClient(build_app(auth), base_url="https://testserver")


def test_refresh_works_after_the_api_is_rebuilt(redis_server: RedisServer) -> None:
    with fresh_app(redis_server) as first:
        cookie_login = first.post("/login")
        body_login = first.post("/login", json={"transport": "body"})
    assert cookie_login.status_code == body_login.status_code == 200
    cookie = cookie_login.cookies["refresh_token"]

    # A brand new TokenAuth and app: a simulated API restart.
    with fresh_app(redis_server) as second:
        by_body = second.post("/auth/refresh", json={"refresh_token": body_login.json()["refresh_token"]})
        by_cookie = second.post("/auth/refresh", headers={"Cookie": f"refresh_token={cookie}"})
        assert by_cookie.status_code == 200, by_cookie.text
        assert by_body.status_code == 200, by_body.text
        access = by_cookie.json()["access_token"]
        assert second.get("/me", headers={"Authorization": f"Bearer {access}"}).status_code == 200


def test_refresh_works_in_a_second_process(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    with fresh_app(redis_server) as in_process:
        issued = in_process.post("/login", json={"transport": "body"}).json()
    other_process = app_server_factory(APP, app_env(redis_server), factory=True)
    answer = refresh(other_process, issued["refresh_token"])
    assert answer.status_code == 200, answer.text
    assert me(other_process, answer.json()["access_token"]).json()["sub"] == "42"


def test_two_uvicorn_processes_share_sessions(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    one = app_server_factory(APP, app_env(redis_server), factory=True)
    two = app_server_factory(APP, app_env(redis_server), factory=True)

    issued = login(one, transport="cookie")
    assert me(two, issued["access_token"]).status_code == 200
    # cookie transport across processes: send the cookie the first process set
    answer = httpx2.post(f"{two.url}/auth/refresh", cookies={"refresh_token": issued["cookie"]}, timeout=10)
    assert answer.status_code == 200, answer.text
    new_cookie = answer.cookies["refresh_token"]
    assert new_cookie != issued["cookie"]
    assert me(two, answer.json()["access_token"]).json()["sub"] == "42"
    # and back on the first process with the rotated token
    again = httpx2.post(f"{one.url}/auth/refresh", cookies={"refresh_token": new_cookie}, timeout=10)
    assert again.status_code == 200, again.text
    assert me(one, again.json()["access_token"]).status_code == 200


def test_api_process_restart_keeps_sessions(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    app = app_server_factory(APP, app_env(redis_server), factory=True)
    issued = login(app)
    app.restart()
    answer = refresh(app, issued["refresh_token"])
    assert answer.status_code == 200, answer.text
    assert me(app, answer.json()["access_token"]).status_code == 200
