"""pytest fixtures that start real local Redis Cluster and Redis Sentinel topologies.

Register with ``pytest_plugins = ["tests.support.topology_fixtures"]`` in the rootdir
``tests/conftest.py`` (or star-import it into a sub-directory's ``conftest.py``).  Every
topology a fixture starts is stopped at the end of the test, even if the test fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from .fixtures import Launched
from .topologies import LocalCluster, SentinelGroup

__all__ = [
    "LocalClusterFactory",
    "SentinelGroupFactory",
    "redis_cluster",
    "redis_cluster_factory",
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


@pytest.fixture
def redis_cluster(redis_cluster_factory: LocalClusterFactory) -> LocalCluster:
    """A started 3-primary, 0-replica cluster (node timeout 2 s) under ``tmp_path``."""
    return redis_cluster_factory()


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
