"""Self-tests of the Redis Cluster / Sentinel harness in tests/support/topologies.py.

Every assertion is checked against the real servers with real commands, so a later
failure of a cluster/sentinel test of the middleware can be trusted not to be the
harness's fault.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from harness.processes import RedisServer
from tests.support.topologies import CLUSTER_SLOTS, LocalCluster, SentinelGroup
from tests.support.topology_fixtures import LocalClusterFactory

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


@pytest.fixture
def cluster_client(redis_cluster: LocalCluster) -> Iterator[RedisCluster]:
    """A redis-py cluster client bootstrapped from the harness's startup nodes."""
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in redis_cluster.startup_nodes],
        socket_timeout=5,
    )
    try:
        yield client
    finally:
        client.close()


def raw_error_line(exc: redis.exceptions.ResponseError) -> str:
    """The server's error line as sent (redis-py strips the code, e.g. ``ASK``, into status_code)."""
    return f"{exc.status_code} {exc}" if exc.status_code else str(exc)


def raw_get_error(node: RedisServer, key: str) -> str:
    """GET ``key`` on ``node`` with a plain (non-cluster) client; return the error line."""
    with node.client() as client, pytest.raises(redis.exceptions.ResponseError) as caught:
        client.get(key)
    return raw_error_line(caught.value)


def keys_on_distinct_primaries(cluster: LocalCluster) -> dict[int, str]:
    """One key per primary, by port: proof that traffic really spans the nodes."""
    found: dict[int, str] = {}
    index = 0
    while len(found) < len(cluster.primaries):
        key = f"spread:{index}"
        found.setdefault(cluster.node_for_key(key).port, key)
        index += 1
    return found


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``check`` until it returns True (replication is asynchronous)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


# --------------------------------------------------------------------------------------
# cluster
# --------------------------------------------------------------------------------------


def test_cluster_has_three_primaries_covering_every_slot(redis_cluster: LocalCluster) -> None:
    assert len(redis_cluster.primaries) == 3
    assert redis_cluster.nodes == redis_cluster.primaries
    ports = [node.port for node in redis_cluster.primaries]
    assert 6379 not in ports
    assert redis_cluster.url == "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
    assert redis_cluster.startup_nodes == [("127.0.0.1", port) for port in ports]

    for node in redis_cluster.nodes:
        with node.client(decode_responses=True) as client:
            info = client.execute_command("CLUSTER", "INFO")
            slots = client.execute_command("CLUSTER", "SLOTS")
        assert "cluster_state:ok" in info
        assert "cluster_slots_assigned:16384" in info
        assert "cluster_size:3" in info
        assert "cluster_known_nodes:3" in info
        covered = sorted((int(entry[0]), int(entry[1])) for entry in slots)
        assert covered[0][0] == 0
        assert covered[-1][1] == CLUSTER_SLOTS - 1
        assert sum(last - first + 1 for first, last in covered) == CLUSTER_SLOTS
        assert {int(entry[2][1]) for entry in slots} == set(ports)


def test_cluster_client_reads_and_writes_on_every_primary(
    redis_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    spread = keys_on_distinct_primaries(redis_cluster)
    assert len(spread) == 3

    for port, key in spread.items():
        assert cluster_client.set(key, f"value-of-{key}")
        assert cluster_client.get(key) == f"value-of-{key}".encode()
        owner = redis_cluster.node_for_key(key)
        assert owner.port == port
        with owner.client() as direct:
            assert direct.get(key) == f"value-of-{key}".encode()
        assert key in redis_cluster.keys_in_slot(key_slot(key.encode()))

    for node in redis_cluster.primaries:
        with node.client() as direct:
            assert direct.dbsize() == 1


def test_migrate_slot_moves_the_key_and_the_source_answers_moved(
    redis_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    key = "session:{migrate}:1"
    cluster_client.set(key, "payload")
    slot = key_slot(key.encode())
    source = redis_cluster.node_for_key(key)
    target = next(node for node in redis_cluster.primaries if node is not source)

    redis_cluster.migrate_slot(slot, target)

    assert redis_cluster.node_for_key(key) is target
    with target.client() as direct:
        assert direct.exists(key) == 1
        assert direct.dbsize() == 1
        assert direct.get(key) == b"payload"
    with source.client() as direct:
        assert direct.dbsize() == 0
    moved = raw_get_error(source, key)
    assert moved.startswith(f"MOVED {slot} 127.0.0.1:{target.port}"), moved
    # The long-lived client still has the old slot map and must follow the MOVED.
    assert cluster_client.get(key) == b"payload"
    with RedisCluster(startup_nodes=[ClusterNode(*redis_cluster.startup_nodes[0])]) as fresh:
        assert fresh.get(key) == b"payload"


def test_interleaved_migration_answers_ask_for_keys_already_moved(
    redis_cluster: LocalCluster, cluster_client: RedisCluster
) -> None:
    first, second = "user:{ask}:a", "user:{ask}:b"
    slot = key_slot(first.encode())
    assert key_slot(second.encode()) == slot
    cluster_client.set(first, "1")
    cluster_client.set(second, "2")
    source = redis_cluster.node_for_key(first)
    target = next(node for node in redis_cluster.primaries if node is not source)

    redis_cluster.begin_migration(slot, target)
    assert redis_cluster.migrate_keys(slot, 1) == 1

    moved_keys = redis_cluster.keys_in_slot(slot, target)
    assert len(moved_keys) == 1
    (moved_key,) = moved_keys
    (staying_key,) = redis_cluster.keys_in_slot(slot, source)
    assert {moved_key, staying_key} == {first, second}

    ask = raw_get_error(source, moved_key)
    assert ask.startswith(f"ASK {slot} 127.0.0.1:{target.port}"), ask
    with source.client() as direct:
        assert direct.get(staying_key) is not None  # the source still serves what it holds
    # The cluster client follows ASK (with ASKING) and reaches both halves of the slot.
    assert cluster_client.get(first) == b"1"
    assert cluster_client.get(second) == b"2"

    assert redis_cluster.migrate_keys(slot) == 1
    redis_cluster.finish_migration(slot)
    assert redis_cluster.node_for_key(first) is target
    assert sorted(redis_cluster.keys_in_slot(slot)) == [first, second]
    assert raw_get_error(source, staying_key).startswith("MOVED ")
    assert cluster_client.get(second) == b"2"


def test_cluster_factory_attaches_linked_replicas(redis_cluster_factory: LocalClusterFactory) -> None:
    cluster = redis_cluster_factory(primaries=3, replicas_per_primary=1)

    assert len(cluster.nodes) == 6
    assert len(cluster.replicas) == 3
    with cluster.primaries[0].client(decode_responses=True) as client:
        slots = client.execute_command("CLUSTER", "SLOTS")
    replicas_by_primary = {int(entry[2][1]): [int(r[1]) for r in entry[3:]] for entry in slots}
    assert sorted(replicas_by_primary) == sorted(node.port for node in cluster.primaries)
    assert sorted(p for ports in replicas_by_primary.values() for p in ports) == sorted(
        node.port for node in cluster.replicas
    )
    for replica in cluster.replicas:
        with replica.client() as client:
            replication = client.info("replication")
        assert replication["role"] == "slave"
        assert replication["master_link_status"] == "up"
        assert int(replication["master_port"]) in replicas_by_primary
        assert replica.port in replicas_by_primary[int(replication["master_port"])]


# --------------------------------------------------------------------------------------
# sentinel
# --------------------------------------------------------------------------------------


def test_sentinels_report_the_primary_and_replication_works(sentinel_group: SentinelGroup) -> None:
    primary = sentinel_group.primary()
    (replica,) = sentinel_group.replicas()
    assert primary is sentinel_group.data_nodes[0]
    assert sentinel_group.service == "sr-primary"
    ports = [port for _, port in sentinel_group.sentinel_addresses]
    assert len(ports) == 3
    assert 6379 not in ports
    assert sentinel_group.url == (
        "redis+sentinel://" + ",".join(f"127.0.0.1:{port}" for port in ports) + "/sr-primary"
    )

    for sentinel in sentinel_group.sentinels:
        with sentinel.client(decode_responses=True) as client:
            assert client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "sr-primary") == [
                "127.0.0.1",
                str(primary.port),
            ]
        state = sentinel_group.sentinel_master(sentinel)
        assert state["num-slaves"] == "1"
        assert state["num-other-sentinels"] == "2"
        assert state["quorum"] == "2"

    with primary.client() as client:
        client.set("replicated", "yes")
        assert client.wait(1, 1000) == 1
    with replica.client() as client:
        assert client.info("replication")["role"] == "slave"
        assert eventually(lambda: client.get("replicated") == b"yes")


async def _write_through_sentinel(group: SentinelGroup, key: str, value: str) -> tuple[int, bytes | None]:
    """Write and read back via redis-py's asyncio Sentinel client; return the server's port too."""
    from redis.asyncio.sentinel import Sentinel

    sentinel = Sentinel(group.sentinel_addresses, socket_timeout=2)
    client = sentinel.master_for(group.service, socket_timeout=2)
    try:
        await client.set(key, value)
        info = await client.info("server")
        return int(info["tcp_port"]), await client.get(key)
    finally:
        await client.aclose()
        for sentinel_client in sentinel.sentinels:
            await sentinel_client.aclose()


def test_kill_failover_promotes_the_replica_and_the_old_primary_rejoins(
    sentinel_group: SentinelGroup,
) -> None:
    old = sentinel_group.primary()
    with old.client() as client:
        client.set("before-failover", "kept")
        assert client.wait(1, 1000) == 1

    new = sentinel_group.failover(kill=True)

    assert new is not old
    assert not old.running
    assert sentinel_group.primary() is new
    with new.client() as client:
        assert client.info("replication")["role"] == "master"
        assert client.get("before-failover") == b"kept"
        assert client.set("after-failover", "accepted")
    port, value = asyncio.run(_write_through_sentinel(sentinel_group, "via-sentinel", "ok"))
    assert port == new.port
    assert value == b"ok"

    sentinel_group.restart_old(old)

    assert sentinel_group.primary() is new
    assert sentinel_group.replicas() == [old]
    with old.client() as client:
        replication = client.info("replication")
        assert replication["role"] == "slave"
        assert int(replication["master_port"]) == new.port
        assert replication["master_link_status"] == "up"
        assert eventually(lambda: client.get("after-failover") == b"accepted")
        assert client.get("via-sentinel") == b"ok"


def test_forced_failover_keeps_the_old_primary_running_and_demotes_it(
    sentinel_group: SentinelGroup,
) -> None:
    old = sentinel_group.primary()

    new = sentinel_group.failover(kill=False)

    assert new is not old
    assert old.running
    sentinel_group.wait_replica(old)
    sentinel_group.wait_settled()
    with new.client() as client:
        client.set("after-forced-failover", "1")
        assert client.wait(1, 1000) == 1
    with old.client() as client:
        assert client.get("after-forced-failover") == b"1"
