"""pytest fixtures that start real local Redis Cluster and Redis Sentinel topologies.

Register with ``pytest_plugins = ["tests.support.topology_fixtures"]`` in the rootdir
``tests/conftest.py`` (or star-import it into a sub-directory's ``conftest.py``).  Every
topology a factory fixture starts is stopped at the end of the test, even if the test fails.

The plain ``redis_cluster`` is the exception: forming a cluster takes 2-3 s (Redis holds a new
primary's ``cluster_state`` at ``fail`` for 2 s after its start), so the session keeps one idle
3-primary cluster in a :class:`ClusterPool` and hands it to the next test that asks, emptied
(``FLUSHALL``, ``SCRIPT FLUSH``, ``CONFIG RESETSTAT`` on every node) and checked healthy first. A
test that fails, or leaves the cluster in any other state than healthy and settled, gets it
thrown away and the next test gets a new one. A test that must reconfigure, kill or otherwise
change a cluster's nodes beyond its data and slot layout uses ``redis_cluster_factory``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import pytest
import redis

from harness.processes import ProcessError

from .fixtures import Launched
from .topologies import LocalCluster, SentinelGroup

__all__ = [
    "ClusterPool",
    "LocalClusterFactory",
    "SentinelGroupFactory",
    "redis_cluster",
    "redis_cluster_factory",
    "redis_cluster_pool",
    "sentinel_group",
    "sentinel_group_factory",
]


class LocalClusterFactory(Protocol):
    """Signature of the callable returned by the ``redis_cluster_factory`` fixture."""

    def __call__(
        self,
        *,
        primaries: int = 3,
        replicas_per_primary: int = 0,
        node_timeout_ms: int = 2000,
        base_dir: Path | None = None,
    ) -> LocalCluster:
        """Start and return a new LocalCluster (in a fresh dir under tmp_path by default)."""
        ...


class SentinelGroupFactory(Protocol):
    """Signature of the callable returned by the ``sentinel_group_factory`` fixture."""

    def __call__(
        self,
        *,
        service: str = "sr-primary",
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        fast_timers: bool = True,
        base_dir: Path | None = None,
    ) -> SentinelGroup:
        """Start and return a new SentinelGroup (in a fresh dir under tmp_path by default)."""
        ...


@pytest.fixture
def redis_cluster_factory(tmp_path: Path) -> Iterator[LocalClusterFactory]:
    """A callable that starts LocalClusters; all of them are stopped after the test."""
    clusters: Launched[LocalCluster] = Launched(tmp_path, "cluster")

    def make(
        *,
        primaries: int = 3,
        replicas_per_primary: int = 0,
        node_timeout_ms: int = 2000,
        base_dir: Path | None = None,
    ) -> LocalCluster:
        cluster = clusters.add(
            LocalCluster(
                base_dir if base_dir is not None else clusters.next_dir(),
                primaries=primaries,
                replicas_per_primary=replicas_per_primary,
                node_timeout_ms=node_timeout_ms,
            )
        )
        cluster.start()
        return cluster

    with clusters:
        yield make


class ClusterPool:
    """Keeps one idle 3-primary, 0-replica cluster (node timeout 2 s) between the tests that use one.

    :meth:`checkout` hands out the idle cluster, emptied, if it is still healthy (else a new one);
    :meth:`checkin` takes it back after a test that passed, and stops it after one that failed.
    """

    def __init__(self, root: Path) -> None:
        self._root = root
        self._started = 0
        self._idle: LocalCluster | None = None

    def checkout(self) -> LocalCluster:
        """A healthy cluster with no key, no script and fresh statistics on any node."""
        cluster, self._idle = self._idle, None
        if cluster is not None:
            try:
                self._reset(cluster)
            except (ProcessError, redis.RedisError):
                cluster.stop()  # not reusable: the caller gets a new one
            else:
                return cluster
        self._started += 1
        cluster = LocalCluster(self._root / f"cluster-{self._started}")
        cluster.start()
        return cluster

    def checkin(self, cluster: LocalCluster, *, reusable: bool) -> None:
        """Keeps ``cluster`` for the next test if ``reusable`` and none is kept yet, else stops it."""
        if reusable and self._idle is None:
            self._idle = cluster
        else:
            cluster.stop()

    @contextmanager
    def held_by(self, request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
        """A checked-out cluster for the fixture of ``request``, checked in when it ends: kept for
        the next user if no test failed meanwhile, else stopped."""
        failed_before = request.session.testsfailed
        cluster = self.checkout()
        try:
            yield cluster
        finally:
            self.checkin(cluster, reusable=request.session.testsfailed == failed_before)

    def close(self) -> None:
        """Stops the idle cluster, if any."""
        if self._idle is not None:
            self._idle.stop()
            self._idle = None

    @staticmethod
    def _reset(cluster: LocalCluster) -> None:
        """Empties ``cluster``, after checking it is as a fresh one would be apart from its slot layout:
        every node running and a primary, no slot half-migrated, and the cluster consistent.
        Raises :class:`ProcessError` if it is not."""
        if not all(node.running for node in cluster.nodes):
            raise ProcessError("a node is not running")
        if cluster.open_migrations():
            raise ProcessError(f"slot migrations still open: {cluster.open_migrations()}")
        for node in cluster.nodes:
            with node.client(decode_responses=True) as client:
                if client.info("replication")["role"] != "master":
                    raise ProcessError(f"{node!r} is no primary")
                # A slot IMPORTING or MIGRATING shows as "[slot-<-id]" or "[slot->-id]" on its node.
                if "[" in client.execute_command("CLUSTER", "NODES"):
                    raise ProcessError(f"{node!r} has a slot importing or migrating")
        cluster.wait_ok(timeout=10)
        for node in cluster.nodes:
            with node.client() as client:
                client.flushall()
                client.script_flush()
                client.config_resetstat()


@pytest.fixture(scope="session")
def redis_cluster_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterPool]:
    """The session's :class:`ClusterPool`; for a module-scoped cluster use ``held_by(request)``."""
    pool = ClusterPool(tmp_path_factory.mktemp("pooled-clusters"))
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def redis_cluster(redis_cluster_pool: ClusterPool, request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """A started 3-primary, 0-replica cluster (node timeout 2 s), holding no data and no script.

    Shared with earlier tests through :class:`ClusterPool` (see the module docstring): the slot
    layout may differ from a new cluster's if an earlier test migrated a slot.
    """
    with redis_cluster_pool.held_by(request) as cluster:
        yield cluster


@pytest.fixture
def sentinel_group_factory(tmp_path: Path) -> Iterator[SentinelGroupFactory]:
    """A callable that starts SentinelGroups; all of them are stopped after the test."""
    groups: Launched[SentinelGroup] = Launched(tmp_path, "sentinel-group")

    def make(
        *,
        service: str = "sr-primary",
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        fast_timers: bool = True,
        base_dir: Path | None = None,
    ) -> SentinelGroup:
        group = groups.add(
            SentinelGroup(
                base_dir if base_dir is not None else groups.next_dir(),
                service=service,
                replicas=replicas,
                sentinels=sentinels,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
                fast_timers=fast_timers,
            )
        )
        group.start()
        return group

    with groups:
        yield make


@pytest.fixture
def sentinel_group(sentinel_group_factory: SentinelGroupFactory) -> SentinelGroup:
    """A started group: primary + 1 replica, 3 sentinels (quorum 2), down-after 1 s."""
    return sentinel_group_factory()
