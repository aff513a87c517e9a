"""pytest fixtures that start real local Redis Cluster and Redis Sentinel topologies.

Register with ``pytest_plugins = ["tests.support.topology_fixtures"]`` in the rootdir
``tests/conftest.py`` (or star-import it into a sub-directory's ``conftest.py``).  Every
topology a fixture starts is stopped at the end of the test, even if the test fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest

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


def _stop_all(topologies: Sequence[LocalCluster | SentinelGroup]) -> None:
    """Stop topologies in reverse start order; one failing must not leak the others."""
    for topology in reversed(topologies):
        with contextlib.suppress(Exception):
            topology.stop()


@pytest.fixture
def redis_cluster_factory(tmp_path: Path) -> Iterator[LocalClusterFactory]:
    """A callable that starts LocalClusters; all of them are stopped after the test."""
    clusters: list[LocalCluster] = []

    def make(
        *,
        primaries: int = 3,
        replicas_per_primary: int = 0,
        node_timeout_ms: int = 2000,
        base_dir: Path | None = None,
    ) -> LocalCluster:
        if base_dir is None:
            base_dir = tmp_path / f"cluster-{len(clusters) + 1}"
        cluster = LocalCluster(
            base_dir,
            primaries=primaries,
            replicas_per_primary=replicas_per_primary,
            node_timeout_ms=node_timeout_ms,
        )
        clusters.append(cluster)
        cluster.start()
        return cluster

    try:
        yield make
    finally:
        _stop_all(clusters)


@pytest.fixture
def redis_cluster(redis_cluster_factory: LocalClusterFactory) -> LocalCluster:
    """A started 3-primary, 0-replica cluster (node timeout 2 s) under ``tmp_path``."""
    return redis_cluster_factory()


@pytest.fixture
def sentinel_group_factory(tmp_path: Path) -> Iterator[SentinelGroupFactory]:
    """A callable that starts SentinelGroups; all of them are stopped after the test."""
    groups: list[SentinelGroup] = []

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
        if base_dir is None:
            base_dir = tmp_path / f"sentinel-group-{len(groups) + 1}"
        group = SentinelGroup(
            base_dir,
            service=service,
            replicas=replicas,
            sentinels=sentinels,
            down_after_ms=down_after_ms,
            failover_timeout_ms=failover_timeout_ms,
            fast_timers=fast_timers,
        )
        groups.append(group)
        group.start()
        return group

    try:
        yield make
    finally:
        _stop_all(groups)


@pytest.fixture
def sentinel_group(sentinel_group_factory: SentinelGroupFactory) -> SentinelGroup:
    """A started group: primary + 1 replica, 3 sentinels (quorum 2), down-after 1 s."""
    return sentinel_group_factory()
