"""The whole session model on a real Redis Cluster (three primaries on free ports, ``redis+cluster://``).

Every script touches the keys of one user, which share one hash tag and so one slot; sessions of
different users spread over every primary. A slot that migrates while its sessions are refreshed
costs nothing visible: redis-py follows ASK and MOVED and retries TRYAGAIN.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

import httpx2
import pytest
import redis
from redis.cluster import RedisCluster as SyncRedisCluster

from harness.processes import AppServer, RedisServer
from starlette_refresh.refresh_tokens import RefreshTokenCodec
from tests.apps import SECRET
from tests.faults.load import LoadConfig, LoadDriver
from tests.integration.helpers import login, me, refresh
from tests.integration.test_revocation import REVOCATIONS, seconds_until_refused
from tests.support.fixtures import AppServerFactory
from tests.support.stored import stored_session, user_key
from tests.support.topologies import LocalCluster
from tests.support.topology_fixtures import LocalClusterFactory

pytestmark = pytest.mark.integration

APP = "tests.apps:app_from_env"


def start_app(factory: AppServerFactory, cluster: LocalCluster, **env: str) -> AppServer:
    return factory(APP, {"SR_REDIS_URL": cluster.url, "SR_GRACE": "1", **env}, factory=True)


def cluster_client(cluster: LocalCluster) -> SyncRedisCluster:
    host, port = cluster.startup_nodes[0]
    return SyncRedisCluster(host=host, port=port, decode_responses=True)


def test_each_session_lives_in_one_slot_and_sessions_spread_over_every_primary(
    redis_cluster: LocalCluster, app_server_factory: AppServerFactory
) -> None:
    app = start_app(app_server_factory, redis_cluster)
    owners = Counter()
    for user in range(30):
        issued = login(app, f"user-{user}")
        owner = redis_cluster.node_for_key(user_key(issued["refresh_token"]))
        assert stored_session(owner.client(), issued["refresh_token"]) is not None  # really on that node
        owners[owner.port] += 1

    assert set(owners) == {node.port for node in redis_cluster.primaries}, owners


def test_rotation_grace_and_reuse(redis_cluster: LocalCluster, app_server_factory: AppServerFactory) -> None:
    app = start_app(app_server_factory, redis_cluster)
    issued = login(app)

    first = refresh(app, issued["refresh_token"])
    assert first.status_code == 200
    again = refresh(app, issued["refresh_token"])  # a second tab, within the grace window
    assert again.status_code == 200
    assert again.json()["refresh_token"] == first.json()["refresh_token"]
    assert me(app, again.json()["access_token"]).status_code == 200

    time.sleep(1.1)  # past the 1 s grace window: presenting the old token again is reuse
    reused = refresh(app, issued["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert refresh(app, first.json()["refresh_token"]).status_code == 400  # the family is revoked
    assert cluster_client(redis_cluster).exists(user_key(issued["refresh_token"])) == 0


def test_listing_and_logout_all_cover_every_session_of_the_user(
    redis_cluster: LocalCluster, app_server_factory: AppServerFactory
) -> None:
    app = start_app(app_server_factory, redis_cluster)
    devices = [login(app, "ana") for _ in range(3)]
    bystander = login(app, "bob")
    headers = {"Authorization": f"Bearer {devices[0]['access_token']}"}

    listed = httpx2.get(f"{app.url}/auth/sessions", headers=headers, timeout=10).json()["sessions"]
    assert len(listed) == 3
    assert [s["current"] for s in listed].count(True) == 1

    assert httpx2.post(f"{app.url}/auth/logout-all", headers=headers, timeout=10).status_code == 204
    for device in devices:
        assert refresh(app, device["refresh_token"]).status_code == 400
        assert me(app, device["access_token"]).status_code == 401
    assert refresh(app, bystander["refresh_token"]).status_code == 200


@pytest.mark.parametrize("revocation", sorted(REVOCATIONS))
def test_revocation_reaches_the_other_process_within_a_second(
    revocation: str, redis_cluster: LocalCluster, app_server_factory: AppServerFactory
) -> None:
    first = start_app(app_server_factory, redis_cluster)
    second = start_app(app_server_factory, redis_cluster)
    issued = login(first)
    assert me(second, issued["access_token"]).status_code == 200

    REVOCATIONS[revocation](first, issued)

    assert seconds_until_refused(second, issued["access_token"]) < 1.0


def refresh_loop(
    app: AppServer, tokens: list[str], stop: threading.Event, statuses: Counter[int]
) -> Callable[[], None]:
    """Refreshes every session over and over, always with its latest token."""

    def run() -> None:
        with httpx2.Client(timeout=10) as http:
            while not stop.is_set():
                for i, token in enumerate(tokens):
                    answer = http.post(f"{app.url}/auth/refresh", json={"refresh_token": token})
                    statuses[answer.status_code] += 1
                    if answer.status_code == 200:
                        tokens[i] = answer.json()["refresh_token"]

    return run


def subjects_in_one_slot(count: int) -> list[str]:
    """``count`` subjects whose sessions all live in one Cluster slot (each user has one key)."""
    codec = RefreshTokenCodec(SECRET.encode())
    by_slot: dict[int, list[str]] = {}
    for n in range(200_000):
        subject = f"migrating-user-{n}"
        same = by_slot.setdefault(redis.crc.key_slot(f"sr:{{{codec.user_tag(subject)}}}".encode()), [])
        same.append(subject)
        if len(same) == count:
            return same
    raise AssertionError(f"no slot with {count} subjects")


def test_refreshes_during_a_slot_migration_all_succeed(
    redis_cluster: LocalCluster, app_server_factory: AppServerFactory
) -> None:
    app = start_app(app_server_factory, redis_cluster)
    # Five users in one slot, two sessions each: the slot moves one user (key) at a time.
    sessions = [login(app, subject) for subject in subjects_in_one_slot(5) for _ in range(2)]
    tokens = [s["refresh_token"] for s in sessions]
    key = user_key(tokens[0])
    slot = redis.crc.key_slot(key.encode())
    source = redis_cluster.slot_owner(slot)
    target = next(node for node in redis_cluster.primaries if node is not source)
    assert len(redis_cluster.keys_in_slot(slot)) == 5  # one string per user, whatever its sessions

    stop, statuses = threading.Event(), Counter[int]()
    worker = threading.Thread(target=refresh_loop(app, tokens, stop, statuses))
    worker.start()
    try:
        time.sleep(0.3)
        source.client().config_resetstat()
        redis_cluster.begin_migration(slot, target)
        # One key at a time, as a resharding tool moves them, with refreshes running in between:
        # users whose key has moved get ASK, the others are still served by the source.
        while redis_cluster.migrate_keys(slot, count=1):
            time.sleep(0.05)
        during = sum(statuses.values())
        redis_cluster.finish_migration(slot)
        time.sleep(0.3)  # and some after: the client follows MOVED to the new owner
    finally:
        stop.set()
        worker.join(timeout=20)

    redirects = {k: v["count"] for k, v in source.client().info("errorstats").items()}
    print(f"\nslot {slot} migrated under load: {dict(statuses)}; source answered {redirects}")
    # The test did exercise the redirects it is about.
    assert redirects.get("errorstat_ASK", 0) > 0
    assert redirects.get("errorstat_MOVED", 0) > 0
    assert redis_cluster.slot_owner(slot) is target
    assert target.client().exists(key) == 1
    assert during > 10, f"only {during} refreshes ran during the migration"
    assert set(statuses) == {200}, statuses
    for token in tokens:
        answer = refresh(app, token)
        assert answer.status_code == 200
        assert me(app, answer.json()["access_token"]).status_code == 200
    assert login(app, "migrating-user")["token_type"] == "Bearer"


def replica_of(cluster: LocalCluster, primary: RedisServer) -> RedisServer:
    for node in cluster.replicas:
        if int(node.client().info("replication")["master_port"]) == primary.port:
            return node
    raise AssertionError(f"no replica follows {primary!r}")


def on_replica(replica: RedisServer, key: str) -> bool:
    """Whether ``replica`` holds ``key`` (READONLY: a cluster replica answers MOVED otherwise)."""
    client = replica.client(single_connection_client=True)
    try:
        client.execute_command("READONLY")
        return bool(client.exists(key))
    finally:
        client.close()


def test_replica_acks_wait_on_the_shard_that_owns_the_session(
    redis_cluster_factory: LocalClusterFactory, app_server_factory: AppServerFactory
) -> None:
    cluster = redis_cluster_factory(replicas_per_primary=1)
    app = start_app(app_server_factory, cluster, SR_REPLICA_ACKS="1", SR_REPLICA_ACK_TIMEOUT="0.3")
    by_shard: dict[int, str] = {}
    for user in range(20):
        issued = login(app, f"user-{user}")
        key = user_key(issued["refresh_token"])
        owner = cluster.node_for_key(key)
        # No sleep: the WAIT went to the owning primary and returned once its replica held the session.
        assert on_replica(replica_of(cluster, owner), key)
        by_shard.setdefault(owner.port, f"user-{user}")
    assert len(by_shard) == 3

    stalled_primary = cluster.primaries[0]
    stalled = replica_of(cluster, stalled_primary)
    assert stalled.pid is not None
    os.kill(stalled.pid, signal.SIGSTOP)
    try:
        for port, subject in by_shard.items():
            answer = httpx2.post(
                f"{app.url}/login", json={"subject": subject, "transport": "body"}, timeout=10
            )
            # Only the shard whose replica is stalled refuses; the others do not wait for it.
            assert answer.status_code == (503 if port == stalled_primary.port else 200), answer.text
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
    assert login(app, by_shard[stalled_primary.port])["token_type"] == "Bearer"


def test_a_primary_killed_under_load_fails_over_with_no_session_lost(
    redis_cluster_factory: LocalClusterFactory, app_server_factory: AppServerFactory
) -> None:
    cluster = redis_cluster_factory(replicas_per_primary=1)
    env = {"SR_ACCESS_TTL": "30", "SR_STORE_TIMEOUT": "1", "SR_REPLICA_ACKS": "1"}
    apps = [start_app(app_server_factory, cluster, **env) for _ in range(2)]
    driver = LoadDriver([a.url for a in apps], LoadConfig(clients=16, sticky=False, refresh_every=4))
    driver.start()
    try:
        time.sleep(1.5)
        killed = driver.mark("killed")
        victim = cluster.primaries[0]
        victim.kill()
        # Redis Cluster promotes the replica after cluster-node-timeout (2 s here) and an election.
        assert driver.wait_all_refreshed(after=killed + 2.0, timeout=20), "a client never refreshed again"
        time.sleep(1.0)
    finally:
        report = driver.stop()
    print(f"\n{report.summary()}")

    events = report.events
    assert [e for e in events if not e.answered] == []
    assert [e for e in report.of("me") if e.status != 200] == []  # access tokens need no Redis
    assert {e.status for e in events if e.kind != "me"} <= {200, 503}
    unavailable = [e for e in events if e.status == 503]
    assert unavailable, "the kill should have cost some 503s"
    assert all(e.error == "temporarily_unavailable" for e in unavailable)
    last_503 = max(e.finished for e in unavailable) - killed
    print(f"primary killed: {len(unavailable)} answers 503, the last {last_503:.1f}s after the kill")
    assert last_503 < 15
    assert report.lost == []
    assert report.final_failures() == {}
