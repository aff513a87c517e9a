"""replica_acks: a login or revocation is answered only once a replica holds it (Redis WAIT).

Real primary and replica processes. Pausing the replica (SIGSTOP) is what proves the wait: with
``replica_acks=1`` a login then answers 503 instead of promising a session a failover could lose,
while refreshes, which never wait, keep working.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
import pytest

from harness.processes import AppServer, RedisServer
from starlette_refresh import Settings
from starlette_refresh.scripts import ReplicasBehind
from starlette_refresh.store import RedisStore
from tests.integration.helpers import app_env, login, me, refresh
from tests.support.fixtures import AppServerFactory, RedisServerFactory
from tests.support.stored import stored_session

pytestmark = pytest.mark.integration

APP = "tests.apps:app_from_env"


@pytest.fixture
def primary_and_replica(redis_server_factory: RedisServerFactory) -> tuple[RedisServer, RedisServer]:
    # Redis's default repl-diskless-sync-delay holds the replica's initial full sync for 5 s, waiting
    # for more replicas to join; with one replica that is pure setup time, and no test here is about
    # the initial sync: they all start once the replica acknowledges writes.
    primary = redis_server_factory(extra_args=["--repl-diskless-sync-delay", "0"])
    replica = redis_server_factory(extra_args=["--replicaof", "127.0.0.1", str(primary.port)])
    wait_until_the_replica_acknowledges(primary)
    return primary, replica


def wait_until_the_replica_acknowledges(primary: RedisServer, timeout: float = 10.0) -> None:
    """Waits until ``WAIT 1`` really counts the replica: a write on the primary is acknowledged.

    The replica's state "online" in the primary's INFO is not enough: after a diskless sync the
    primary streams writes to it, and counts its acknowledgements, only from its first
    ``REPLCONF ACK`` on; that one is sometimes the periodic one, up to a second later, and a login
    in that second waits for a replica that cannot answer yet (503).
    """
    client = primary.client()
    deadline = time.monotonic() + timeout
    try:
        while True:
            # A write to acknowledge that leaves nothing behind (the DEL is acknowledged as well).
            client.set("replica-acks-probe", "1")
            client.delete("replica-acks-probe")
            if client.execute_command("WAIT", 1, 100) == 1:
                return
            assert time.monotonic() < deadline, f"the replica acknowledged no write within {timeout}s"
    finally:
        client.close()


def start_app(factory: AppServerFactory, primary: RedisServer, acks: int) -> AppServer:
    env = app_env(primary, SR_REPLICA_ACKS=str(acks), SR_REPLICA_ACK_TIMEOUT="0.3", SR_STORE_TIMEOUT="1")
    return factory(APP, env, factory=True)


@contextmanager
def paused(server: RedisServer) -> Iterator[None]:
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


def test_an_acknowledged_login_is_already_on_the_replica(
    primary_and_replica: tuple[RedisServer, RedisServer], app_server_factory: AppServerFactory
) -> None:
    primary, replica = primary_and_replica
    app = start_app(app_server_factory, primary, acks=1)

    for subject in ("1", "2", "3"):
        issued = login(app, subject)
        # No sleep: WAIT returned before the answer did.
        assert stored_session(replica.client(), issued["refresh_token"]) is not None


def test_with_the_replica_stalled_logins_answer_503_and_refreshes_still_work(
    primary_and_replica: tuple[RedisServer, RedisServer], app_server_factory: AppServerFactory
) -> None:
    primary, replica = primary_and_replica
    app = start_app(app_server_factory, primary, acks=1)
    issued = login(app)

    with paused(replica):
        started = time.monotonic()
        answer = httpx2.post(f"{app.url}/login", json={"subject": "7", "transport": "body"}, timeout=10)
        elapsed = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "temporarily_unavailable"
        assert answer.headers["retry-after"] == "2"
        assert elapsed < 2, f"the login waited {elapsed:.1f}s for a stalled replica"

        rotated = refresh(app, issued["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        assert me(app, rotated.json()["access_token"]).status_code == 200

    assert login(app, "7")["token_type"] == "Bearer"
    assert "acknowledged it within 300 ms" in app.log_text()


def test_without_replica_acks_a_stalled_replica_does_not_matter(
    primary_and_replica: tuple[RedisServer, RedisServer], app_server_factory: AppServerFactory
) -> None:
    primary, replica = primary_and_replica
    app = start_app(app_server_factory, primary, acks=0)

    with paused(replica):
        assert login(app)["token_type"] == "Bearer"


def test_a_logout_the_replica_did_not_take_answers_503_and_can_be_repeated(
    primary_and_replica: tuple[RedisServer, RedisServer], app_server_factory: AppServerFactory
) -> None:
    primary, replica = primary_and_replica
    app = start_app(app_server_factory, primary, acks=1)
    issued = login(app, transport="cookie")
    cookies = {"refresh_token": issued["cookie"]}

    with paused(replica):
        answer = httpx2.post(f"{app.url}/auth/logout", cookies=cookies, timeout=10)
        assert answer.status_code == 503, answer.text
        assert "set-cookie" not in answer.headers  # the cookie is kept for the retry

    again = httpx2.post(f"{app.url}/auth/logout", cookies=cookies, timeout=10)
    assert again.status_code == 204
    assert stored_session(replica.client(), issued["cookie"]) is None


def test_startup_warns_when_the_primary_has_fewer_replicas_than_asked(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    app = start_app(app_server_factory, redis_server, acks=1)

    assert "replica_acks=1 but the primary" in app.log_text()
    assert "has 0 replica(s) connected" in app.log_text()
    answer = httpx2.post(f"{app.url}/login", json={"subject": "1", "transport": "body"}, timeout=10)
    assert answer.status_code == 503


def test_a_login_that_waited_for_its_turn_waits_for_replicas_only_as_long_as_it_has_left(
    primary_and_replica: tuple[RedisServer, RedisServer],
) -> None:
    """With the replica stalled, two logins share one connection: the first holds it through its whole
    0.5 s WAIT, the second has 0.5 s of its 1 s left. Its WAIT is cut to what is left, so it answers
    "replicas behind" in time, rather than being given up on at 1 s (which drops the connection)."""
    primary, replica = primary_and_replica

    async def two_logins() -> list[BaseException | list[str]]:
        settings = Settings(
            store_timeout=1.0, store_max_connections=1, replica_acks=1, replica_ack_timeout=0.5
        )
        store = RedisStore(url=primary.url, settings=settings)
        await store.start()
        now_ms = int(time.time() * 1000)

        async def create(sid: str) -> list[str]:
            later = now_ms + 3_600_000
            return await store.create("0" * 20, sid * 22, "alice", "{}", "test", now_ms, later, later, 10)

        try:
            with paused(replica):
                return await asyncio.gather(create("a"), create("b"), return_exceptions=True)
        finally:
            await store.close()

    first, second = asyncio.run(two_logins())
    assert isinstance(first, ReplicasBehind), first
    assert "within 500 ms" in str(first)
    assert isinstance(second, ReplicasBehind), f"the second login was given up on instead: {second!r}"
    waited = re.search(r"within (\d+) ms", str(second))
    assert waited is not None, second
    assert int(waited[1]) < 500
