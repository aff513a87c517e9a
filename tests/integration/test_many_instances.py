"""Four app processes on one Redis Cluster behave as one service.

Real processes: a 3-primary Redis Cluster (the ``redis_cluster`` fixture) and four uvicorn apps on its
``redis+cluster://`` URL. Clients spread their calls round-robin over the four, so every token is
minted by one process and used on the others. Nothing may answer 401 or 500 under load, a revocation
made through any one process stops the session's access tokens on all the others within a second,
and 20 concurrent refreshes of one token spread over the four processes rotate the session exactly
once, every one of them getting the same new refresh token (the grace answer).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator, Sequence

import httpx2
import pytest
from redis.cluster import ClusterNode, RedisCluster

from harness.processes import AppServer
from tests.faults.load import KINDS, SHARED_TLS, Event, LoadConfig, LoadDriver
from tests.integration.helpers import login, me, refresh
from tests.support.fixtures import Launched
from tests.support.stored import stored_generation
from tests.support.topologies import LocalCluster
from tests.support.topology_fixtures import ClusterPool

pytestmark = pytest.mark.integration

APP = "tests.apps:app_from_env"
INSTANCES = 4
CLIENTS = 16
LOAD_SECONDS = 5.0
CONCURRENT_REFRESHES = 20


# The cluster and the four apps serve every test of this module: starting them took ~4 s a test.
# No test here disturbs them (no restart, no fault), and each uses its own subjects and sessions
# (the load's, "everywhere", "bystander", "one-of-two", "racer"), so none sees another's data.


@pytest.fixture(scope="module")
def module_cluster(redis_cluster_pool: ClusterPool, request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """The session's pooled 3-primary cluster, held by this module for all its tests."""
    with redis_cluster_pool.held_by(request) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(module_cluster: LocalCluster) -> LocalCluster:
    """This module's cluster (not emptied between its tests, whose apps keep running)."""
    return module_cluster


@pytest.fixture(scope="module")
def apps(module_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AppServer]]:
    """Four app processes on the same 3-primary cluster."""
    env = {"SR_REDIS_URL": module_cluster.url, "SR_ACCESS_TTL": "30", "SR_STORE_TIMEOUT": "1"}
    servers: Launched[AppServer] = Launched(tmp_path_factory.mktemp("many-instances"), "app")
    with servers:
        started = []
        for _ in range(INSTANCES):
            app = servers.add(AppServer(APP, env, factory=True, log_dir=servers.next_dir()))
            app.start()
            started.append(app)
        yield started


@pytest.fixture
def cluster_client(redis_cluster: LocalCluster) -> Iterator[RedisCluster]:
    """A synchronous redis-py cluster client, to look at what the apps stored."""
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in redis_cluster.startup_nodes],
        decode_responses=True,
        socket_timeout=5,
    )
    try:
        yield client
    finally:
        client.close()


def token_parts(refresh_token: str) -> tuple[str, str, int]:
    """``(user tag, session id, generation)`` of ``srt1.<user tag>.<session id>.<gen>.<mac>``."""
    prefix, user_tag, session_id, generation, _ = refresh_token.split(".")
    assert prefix == "srt1"
    return user_tag, session_id, int(generation)


def session_key(refresh_token: str) -> str:
    user_tag, session_id, _ = token_parts(refresh_token)
    return f"sr:{{{user_tag}}}:s:{session_id}"


def describe(events: Sequence[Event], limit: int = 10) -> str:
    return "; ".join(
        f"{e.kind} client {e.client} app {e.app} @{e.started:.2f}s -> {e.status or e.error} {e.error}"
        for e in events[:limit]
    )


def seconds_until_all_refused(
    apps: Sequence[AppServer], access_tokens: Sequence[str], since: float, limit: float = 3.0
) -> dict[tuple[int, int], float]:
    """Polls every (app, token) pair until each is refused as revoked.

    Returns, per ``(app index in apps, token index)``, the seconds from ``since`` (``time.monotonic``)
    to the first refusal; every answer before it must be a 200. One keep-alive client, so that a
    poll costs a millisecond or two and the times measure the propagation, not the polling.
    """
    pending = {(a, t) for a in range(len(apps)) for t in range(len(access_tokens))}
    refused_at: dict[tuple[int, int], float] = {}
    with httpx2.Client(timeout=10, verify=SHARED_TLS) as client:
        while pending:
            for a, t in sorted(pending):
                headers = {"Authorization": f"Bearer {access_tokens[t]}"}
                answer = client.get(f"{apps[a].url}/me", headers=headers)
                if answer.status_code == 401:
                    assert answer.json() == {"error": "invalid_token", "error_description": "token revoked"}
                    refused_at[(a, t)] = time.monotonic() - since
                    pending.discard((a, t))
                else:
                    assert answer.status_code == 200, answer.text
            if pending and time.monotonic() - since > limit:
                raise AssertionError(f"still accepted {limit}s after the revocation: {sorted(pending)}")
            time.sleep(0.005)
    return refused_at


def assert_refresh_refused_everywhere(apps: Sequence[AppServer], refresh_token: str) -> None:
    for app in apps:
        answer = refresh(app, refresh_token)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_grant"


def assert_session_works_everywhere(apps: Sequence[AppServer], issued: dict[str, str]) -> dict[str, str]:
    """The session's access token works on every app, and it refreshes on each in turn."""
    current = dict(issued)
    for app in apps:
        assert me(app, current["access_token"]).status_code == 200
        answer = refresh(app, current["refresh_token"])
        assert answer.status_code == 200, answer.text
        current = answer.json()
    return current


def test_round_robin_load_over_four_instances(apps: list[AppServer], redis_cluster: LocalCluster) -> None:
    """~5 s of load with every client rotating over the four apps: everything answers 200."""
    driver = LoadDriver([a.url for a in apps], LoadConfig(clients=CLIENTS, sticky=False, refresh_every=4))
    driver.start()
    try:
        time.sleep(LOAD_SECONDS)
    finally:
        report = driver.stop()
    print(f"\n{report.summary()}")

    events = report.events
    # Nothing was broken, so every request was answered, and answered 200: no 401, 500 or even 503.
    assert [e for e in events if not e.answered] == [], describe([e for e in events if not e.answered])
    assert [e for e in events if e.status != 200] == [], describe([e for e in events if e.status != 200])

    # Every instance took part in every kind of call.
    per_app = {
        app: Counter(e.kind for e in events if e.app == app and e.status == 200) for app in range(INSTANCES)
    }
    print("per app: " + "; ".join(f"app {a}: {dict(c)}" for a, c in per_app.items()))
    for app, counts in per_app.items():
        assert min(counts[kind] for kind in KINDS) > 0, f"app {app} served {dict(counts)}"
    # ... and the clients' refreshes really crossed instances: a token minted by one app was rotated
    # by another (sticky=False sends consecutive calls of a client to different apps).
    assert len({e.app for e in report.of("refresh") if e.client == 0}) == INSTANCES

    # No session lost: every session any client ever held refreshes at the end.
    assert report.lost == [], f"sessions lost: {report.lost[:5]}"
    logins_ok = [e for e in report.of("login") if e.status == 200]
    assert len(report.final) == len(logins_ok) >= CLIENTS
    assert report.final_failures() == {}, f"final refresh failed: {report.final_failures()}"

    # The users' sessions really live on all three shards.
    owners = {
        redis_cluster.node_for_key(f"sr:{{{tag}}}").port
        for tag in {token_parts(login(apps[0], f"load-{i}")["refresh_token"])[0] for i in range(CLIENTS)}
    }
    assert owners == {node.port for node in redis_cluster.primaries}


def test_revocations_reach_every_instance_within_a_second(apps: list[AppServer]) -> None:
    """logout-all through app 0, and a single-session revoke through app 2, reach the other apps."""
    # One subject with a session on each instance, and a bystander who must not be affected.
    sessions = [login(app, "everywhere") for app in apps]
    bystander = login(apps[1], "bystander")
    for app in apps:
        for issued in sessions:
            assert me(app, issued["access_token"]).status_code == 200

    headers = {"Authorization": f"Bearer {sessions[0]['access_token']}"}
    answer = httpx2.post(f"{apps[0].url}/auth/logout-all", headers=headers, timeout=10)
    assert answer.status_code == 204, answer.text
    logged_out = time.monotonic()
    access_tokens = [s["access_token"] for s in sessions]
    elapsed = seconds_until_all_refused(apps[1:], access_tokens, logged_out)
    for token in access_tokens:  # and on the process that did it
        assert me(apps[0], token).status_code == 401
    print(
        f"\nlogout-all via app 0: all 4 access tokens refused on apps 1-3 within {max(elapsed.values()):.3f}s"
    )
    assert max(elapsed.values()) < 1.0, elapsed
    for issued in sessions:
        assert_refresh_refused_everywhere(apps, issued["refresh_token"])

    # A single-session revoke through app 2, made from another session of the same subject.
    doomed, survivor = login(apps[1], "one-of-two"), login(apps[3], "one-of-two")
    _, doomed_sid, _ = token_parts(doomed["refresh_token"])
    headers = {"Authorization": f"Bearer {survivor['access_token']}"}
    answer = httpx2.delete(f"{apps[2].url}/auth/sessions/{doomed_sid}", headers=headers, timeout=10)
    assert answer.status_code == 204, answer.text
    revoked = time.monotonic()
    others = [apps[0], apps[1], apps[3]]
    elapsed = seconds_until_all_refused(others, [doomed["access_token"]], revoked)
    assert me(apps[2], doomed["access_token"]).status_code == 401
    print(f"session revoke via app 2: refused on apps 0, 1, 3 within {max(elapsed.values()):.3f}s")
    assert max(elapsed.values()) < 1.0, elapsed
    assert_refresh_refused_everywhere(apps, doomed["refresh_token"])

    # The other session of that subject, and the bystander, carry on everywhere.
    assert_session_works_everywhere(apps, survivor)
    assert_session_works_everywhere(apps, bystander)


async def refresh_concurrently(apps: Sequence[AppServer], refresh_token: str) -> list[httpx2.Response]:
    """``CONCURRENT_REFRESHES`` refreshes of one token at once, request ``i`` to app ``i % 4``."""
    async with httpx2.AsyncClient(timeout=10) as client:
        # Open a connection to each app first, so that the burst is not spread by connection setup.
        await asyncio.gather(*(client.get(f"{app.url}/health") for app in apps))
        return await asyncio.gather(
            *(
                client.post(f"{apps[i % len(apps)].url}/auth/refresh", json={"refresh_token": refresh_token})
                for i in range(CONCURRENT_REFRESHES)
            )
        )


def test_concurrent_refreshes_of_one_token_over_four_instances_rotate_once(
    apps: list[AppServer], cluster_client: RedisCluster
) -> None:
    """20 refreshes of the same token at once, spread over the four apps: one rotation, 20 x 200."""
    issued = login(apps[0], "racer")
    assert stored_generation(cluster_client, issued["refresh_token"]) == 0
    _, session_id, _ = token_parts(issued["refresh_token"])

    answers = asyncio.run(refresh_concurrently(apps, issued["refresh_token"]))

    assert [a.status_code for a in answers] == [200] * CONCURRENT_REFRESHES, [a.text for a in answers]
    new_tokens = {a.json()["refresh_token"] for a in answers}
    assert len(new_tokens) == 1, "the concurrent refreshes got different refresh tokens"
    (new_token,) = new_tokens
    assert token_parts(new_token)[1:] == (session_id, 1)
    assert stored_generation(cluster_client, issued["refresh_token"]) == 1, "more than one rotation happened"
    # Every instance answered some of them, and the logs agree: one rotation, 19 grace answers.
    logs = "".join(app.log_text() for app in apps)
    rotated = logs.count(f"refresh rotated: session {session_id} gen 0 ")
    graced = logs.count(f"refresh within grace: session {session_id} gen 0 ")
    print(
        f"\n{CONCURRENT_REFRESHES} concurrent refreshes over {INSTANCES} apps: "
        f"{rotated} rotation, {graced} grace answers"
    )
    assert (rotated, graced) == (1, CONCURRENT_REFRESHES - 1)
    for app in apps:
        assert f"session {session_id} gen 0 " in app.log_text()

    # Every access token handed out works on every instance, and the session carries on.
    for answer in answers:
        assert me(apps[1], answer.json()["access_token"]).status_code == 200
    carried_on = refresh(apps[3], new_token)
    assert carried_on.status_code == 200, carried_on.text
    assert stored_generation(cluster_client, issued["refresh_token"]) == 2
