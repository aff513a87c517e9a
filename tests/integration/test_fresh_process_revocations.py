"""A process started after a logout refuses that session's access token from its very first request.

Issue 14, finding 2: startup() only started the revocation feed and the durable record was loaded
later, inside the feed, so a fresh process answered 200 to a token revoked before it started, for its
first requests (for a whole second when Redis was slow). Here Redis is slow for real: every reply
reaches the fresh processes through a proxy that holds it 300 ms, and each process is asked the
moment its port accepts a connection. The revoked token must get 401 from every one of them, the
token of a session still open 200. And when the store cannot give the revoked sessions at all, the
process must not start.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest

from harness.latency_proxy import LatencyProxy
from harness.processes import AppServer, RedisServer, stop_quietly
from tests.integration.helpers import app_env, login
from tests.support.fixtures import AppServerFactory

pytestmark = pytest.mark.integration

APP = "tests.apps:app_from_env"
#: Each reply from Redis to a fresh process is held this long: its startup takes seconds.
DELAY_MS = 300
#: A store operation's time bound in the fresh processes: their first, connecting and loading the
#: scripts, takes some fifteen round trips (4.5 s), one bound for all of them.
STORE_TIMEOUT = "10"
FRESH_PROCESSES = 3
REQUESTS = 5
REVOKED = {"error": "invalid_token", "error_description": "token revoked"}


@dataclass
class FirstAnswers:
    """What a fresh process answered to its first requests, and when its port first accepted."""

    started_after: float
    revoked: list[tuple[int, Any]]
    kept: tuple[int, Any]


def wait_until_port_accepts(app: AppServer, limit: float = 30.0) -> float:
    """Connects to the app's port in a tight loop; returns the seconds it took once one succeeds."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if not app.running:
            raise AssertionError(f"the app exited during startup:\n{app.log_text()}")
        try:
            with socket.create_connection(("127.0.0.1", app.port), timeout=0.5):
                return time.monotonic() - started
        except OSError:
            time.sleep(0.001)
    raise AssertionError(f"the app did not listen within {limit}s:\n{app.log_text()}")


def first_answers(app: AppServer, revoked_token: str, kept_token: str) -> FirstAnswers:
    """The revoked token, REQUESTS times back to back, then the kept one, the moment the port accepts."""
    started_after = wait_until_port_accepts(app)

    def me(client: httpx2.Client, token: str) -> tuple[int, Any]:
        answer = client.get("/me", headers={"Authorization": f"Bearer {token}"})
        return answer.status_code, answer.json()

    with httpx2.Client(base_url=app.url, timeout=10) as client:
        revoked = [me(client, revoked_token) for _ in range(REQUESTS)]
        kept = me(client, kept_token)
    return FirstAnswers(started_after, revoked, kept)


def test_a_process_started_after_a_logout_refuses_the_token_from_its_first_request_on(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    first = app_server_factory(APP, app_env(redis_server), factory=True)
    ended, kept = login(first, subject="42"), login(first, subject="7")
    logout = httpx2.post(
        f"{first.url}/auth/logout", json={"refresh_token": ended["refresh_token"]}, timeout=10
    )
    assert logout.status_code == 204, logout.text

    with LatencyProxy(redis_server.port, delay_ms=DELAY_MS) as slow_redis:
        env = {"SR_REDIS_URL": slow_redis.url, "SR_STORE_TIMEOUT": STORE_TIMEOUT}
        fresh = [app_server_factory(APP, env, factory=True, wait=False) for _ in range(FRESH_PROCESSES)]
        with ThreadPoolExecutor(FRESH_PROCESSES) as pool:
            answers = list(
                pool.map(lambda app: first_answers(app, ended["access_token"], kept["access_token"]), fresh)
            )
        stop_quietly(fresh)  # before their Redis goes away

    assert slow_redis.connections >= 2 * FRESH_PROCESSES, "each process's store and feed go through the proxy"
    passed = sum(status == 200 for a in answers for status, _ in a.revoked)
    assert passed == 0, (
        f"{passed} of {FRESH_PROCESSES * REQUESTS} requests with a revoked token got 200: {answers}"
    )
    assert all(a.revoked == [(401, REVOKED)] * REQUESTS for a in answers), answers
    assert all(a.kept[0] == 200 and a.kept[1]["sub"] == "7" for a in answers), answers


def test_a_process_whose_store_cannot_give_the_revoked_sessions_in_time_does_not_start(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    """Startup runs its checks on the store's first connection; the second is opened by the
    revocation feed (for its subscription or its load, whichever finds the first one busy). From then
    on every reply takes 5 s, longer than the 5 store timeouts (2.5 s) startup waits for the revoked
    sessions: the process must exit, saying why, without ever listening. (A store timeout of 0.2 s
    once failed the startup checks themselves on a machine busy with the browser suite.)"""
    with LatencyProxy(redis_server.port) as slow_redis:

        def slow_from_the_second_connection(number: int) -> None:
            if number == 2:
                slow_redis.delay_ms = 5000

        slow_redis.on_connect = slow_from_the_second_connection
        env = {"SR_REDIS_URL": slow_redis.url, "SR_STORE_TIMEOUT": "0.5"}
        app = app_server_factory(APP, env, factory=True, wait=False)
        code = app.wait_exit(timeout=15)

    log = app.log_text()
    assert code != 0, log
    assert "could not load the revoked sessions from the store within 2.5s" in log, log
    assert "Application startup failed" in log, log
    assert "Uvicorn running" not in log, log
