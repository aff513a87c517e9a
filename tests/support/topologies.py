"""Real local Redis Cluster and Redis Sentinel topologies for integration tests.

Both topologies are built from :class:`~harness.processes.RedisServer` processes
bound to 127.0.0.1 on free ephemeral ports (never 6379), so they inherit its lifetime
management: every process is killed at interpreter exit and dies with the test process.

Usage::

    with LocalCluster(tmp_path / "cluster") as cluster:
        client = redis.cluster.RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in cluster.startup_nodes]
        )
        cluster.migrate_slot(key_slot(b"k"), cluster.primaries[1])

    with SentinelGroup(tmp_path / "sentinel") as group:
        new_primary = group.failover(kill=True)

Every wait raises :class:`~harness.processes.ProcessError` with the tails of the
involved logs when the topology does not reach the expected state in time.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from harness.processes import ProcessError, RedisServer, free_port, stop_quietly

__all__ = [
    "CLUSTER_SLOTS",
    "FAST_SENTINEL_TIMERS",
    "ClusterNodeServer",
    "LocalCluster",
    "SentinelDataServer",
    "SentinelGroup",
    "SentinelServer",
]

#: Number of hash slots in a Redis Cluster.
CLUSTER_SLOTS = 16384

_LOCALHOST = "127.0.0.1"
_POLL_INTERVAL = 0.05
_LOG_TAIL_LINES = 25
_MIGRATE_TIMEOUT_MS = 5000

# Redis 7 defaults to a diskless full sync that waits 5 s for more replicas to join
# before it starts; with one replica per primary that is pure startup latency.
_FAST_SYNC_ARGS = ("--repl-diskless-sync-delay", "0")

#: ``SENTINEL DEBUG`` timers applied by :class:`SentinelGroup` unless ``fast_timers=False``.
#: The stock 10 s INFO period and 2 s hello period make a restarted old primary wait
#: ~15 s to be demoted (Sentinel acts on a wrong role only in an INFO reply, and only
#: once the role has been reported for 4 hello periods); a 30 s TILT after one stalled
#: timer tick (a loaded CI box) would outlast any test timeout.
FAST_SENTINEL_TIMERS: Mapping[str, int] = {
    "info-period": 1000,
    "publish-period": 500,
    "tilt-period": 5000,
}


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _admin(node: RedisServer, *, decode: bool = True) -> Iterator[redis.Redis]:
    """A short-lived client for one admin exchange with ``node``.

    A fresh client per exchange, because nodes get killed and restarted under the
    harness and a pooled connection would fail once after every restart.  Retries are
    off: redis-py 8 otherwise retries with backoff, which hides a dead node for seconds.
    RESP2 is pinned because redis-py 8 defaults to RESP3, whose raw replies are maps
    where the parsers below expect RESP2's flat arrays.
    """
    client = node.client(
        protocol=2,
        decode_responses=decode,
        socket_timeout=2,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        yield client
    finally:
        client.close()


def _command(node: RedisServer, *args: Any) -> Any:
    """Run one raw command on ``node`` and return the unparsed (decoded) reply.

    ``execute_command`` keys redis-py's response callbacks on the first word only, so
    multi-word commands such as ``CLUSTER SLOTS`` come back as plain RESP2 values.
    """
    with _admin(node) as client:
        return client.execute_command(*args)


def _info(node: RedisServer, section: str) -> dict[str, Any]:
    """``INFO <section>`` of ``node`` parsed by redis-py."""
    with _admin(node) as client:
        info: dict[str, Any] = client.info(section)
        return info


def _parse_info_text(text: str) -> dict[str, str]:
    """Parse ``CLUSTER INFO``-style ``key:value`` lines."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _pairs(reply: Sequence[Any]) -> dict[str, str]:
    """Turn a flat ``[k1, v1, k2, v2, ...]`` reply into a dict."""
    return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}


def _log_tail(server: RedisServer, lines: int = _LOG_TAIL_LINES) -> str:
    text = server.log_text()
    tail = "\n".join(text.splitlines()[-lines:]) if text else "<empty log>"
    return f"--- {server!r}: tail of {server.log_path} ---\n{tail}"


def _wait_until(
    check: Callable[[], str | None],
    *,
    timeout: float,
    what: str,
    servers: Callable[[], Sequence[RedisServer]],
) -> None:
    """Poll ``check`` until it returns None (= condition met).

    ``check`` returns a short description of what is still wrong; Redis errors raised by
    it count as "not yet" because nodes are expected to be restarting or failing over.
    On timeout, raises :class:`ProcessError` with the last problem and the log tails of
    ``servers()``.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            problem = check()
        except redis.RedisError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            return
        if time.monotonic() >= deadline:
            logs = "\n".join(_log_tail(server) for server in servers())
            raise ProcessError(f"{what}: not reached after {timeout}s; last problem: {problem}\n{logs}")
        time.sleep(_POLL_INTERVAL)


def _replication_problem(node: RedisServer, primary_port: int) -> str | None:
    """Why ``node`` is not (yet) a linked replica of ``127.0.0.1:primary_port``, else None."""
    info = _info(node, "replication")
    if info.get("role") != "slave":
        return f"{node!r} has role {info.get('role')!r}, not slave"
    if int(info.get("master_port", -1)) != primary_port:
        return f"{node!r} replicates port {info.get('master_port')}, not {primary_port}"
    if info.get("master_link_status") != "up":
        return f"{node!r} master_link_status is {info.get('master_link_status')!r}"
    return None


# --------------------------------------------------------------------------------------
# Redis Cluster
# --------------------------------------------------------------------------------------


class ClusterNodeServer(RedisServer):
    """A :class:`RedisServer` in cluster mode, with an explicitly chosen cluster bus port.

    The bus port is picked with :func:`free_port` and passed as ``cluster-port``
    instead of relying on the default ``port + 10000``: ephemeral ports go up to 60999,
    so ``port + 10000`` is often beyond 65535 or owned by someone else.
    """

    _name = "redis-server (cluster)"

    def __init__(self, data_dir: Path, *, node_timeout_ms: int = 2000, port: int | None = None) -> None:
        """Prepare (but do not start) a cluster node with its state in ``data_dir``."""
        super().__init__(data_dir, port=port, appendonly=True)
        self.node_timeout_ms = node_timeout_ms
        self.bus_port = free_port()

    def argv(self) -> list[str]:
        """The command line: RedisServer's plus the cluster options."""
        return [
            *super().argv(),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-port", str(self.bus_port),
            "--cluster-announce-ip", _LOCALHOST,
            *_FAST_SYNC_ARGS,
            # CLUSTER SLOTS omits replicas whose gossiped replication offset is still 0,
            # and an idle primary only advances it with its replication PING (every 10 s
            # by default); pinging every second lists new replicas within ~1 s.
            "--repl-ping-replica-period", "1",
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> None:
        """Start like RedisServer; on a first start, also survive a stolen bus port."""
        first_start = not self.log_path.exists()
        for attempt in range(3):
            offset = len(self.log_text())
            try:
                super().start(timeout)
                return
            except ProcessError:
                # RedisServer only re-picks the client port; the bus port is ours to redo.
                lost_race = "Address already in use" in self.log_text()[offset:]
                if not (first_start and lost_race) or attempt == 2:
                    raise
                self.bus_port = free_port()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<ClusterNodeServer 127.0.0.1:{self.port} bus={self.bus_port} {state}>"


_SlotMapEntry = tuple[int, int, int, tuple[int, ...]]


class LocalCluster:
    """A Redis Cluster of real ``redis-server`` processes on 127.0.0.1.

    ``primaries`` nodes share the 16384 slots evenly; each gets ``replicas_per_primary``
    replicas.  Node ``i`` keeps its data and ``nodes.conf`` in ``base_dir / f"node-{i}"``,
    so a restarted node rejoins with its identity.  Use as a context manager or call
    :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        base_dir: Path,
        primaries: int = 3,
        replicas_per_primary: int = 0,
        node_timeout_ms: int = 2000,
    ) -> None:
        """Prepare (but do not start) the cluster's nodes on free ports."""
        if primaries < 1:
            raise ValueError("a cluster needs at least one primary")
        if replicas_per_primary < 0:
            raise ValueError("replicas_per_primary must be >= 0")
        self.base_dir = Path(base_dir)
        self.node_timeout_ms = node_timeout_ms
        count = primaries * (1 + replicas_per_primary)
        self._nodes: list[ClusterNodeServer] = [
            ClusterNodeServer(self.base_dir / f"node-{i}", node_timeout_ms=node_timeout_ms)
            for i in range(count)
        ]
        self._primaries = self._nodes[:primaries]
        # Replica k of primary p is node primaries + p * replicas_per_primary + k.
        self._replica_of: dict[ClusterNodeServer, ClusterNodeServer] = {
            self._nodes[primaries + p * replicas_per_primary + k]: self._primaries[p]
            for p in range(primaries)
            for k in range(replicas_per_primary)
        }
        self._ids: dict[RedisServer, str] = {}
        self._migrations: dict[int, tuple[RedisServer, RedisServer]] = {}
        self._formed = False

    # -- topology ---------------------------------------------------------------------
    @property
    def nodes(self) -> list[RedisServer]:
        """Every node, primaries first, then replicas (grouped by primary)."""
        return list(self._nodes)

    @property
    def primaries(self) -> list[RedisServer]:
        """The nodes started as primaries (not updated if a replica is promoted)."""
        return list(self._primaries)

    @property
    def replicas(self) -> list[RedisServer]:
        """The nodes started as replicas."""
        return list(self._replica_of)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every primary, for ``ClusterNode(host, port)``."""
        return [(_LOCALHOST, node.port) for node in self._primaries]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,...`` listing every primary."""
        return "redis+cluster://" + ",".join(f"{host}:{port}" for host, port in self.startup_nodes)

    def node_id(self, node: RedisServer) -> str:
        """The 40-character cluster node id of ``node``."""
        if node not in self._ids:
            self._ids[node] = str(_command(node, "CLUSTER", "MYID"))
        return self._ids[node]

    def node_by_port(self, port: int) -> RedisServer:
        """The node listening on ``port``."""
        for node in self._nodes:
            if node.port == port:
                return node
        raise KeyError(f"no node of this cluster listens on port {port}")

    # -- lifecycle --------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> None:
        """Start every node, form the cluster and wait until it is fully consistent.

        After a :meth:`stop`, starting again restarts the nodes, which rejoin from their
        ``nodes.conf``.  On failure every node is stopped again and :class:`ProcessError`
        is raised.
        """
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        for node in self._nodes:
            if not node.running:
                node.start()
        if self._formed:
            self.wait_ok(timeout)
            return
        for epoch, node in enumerate(self._nodes, start=1):
            # Distinct epochs up front, as redis-cli does: otherwise all nodes start at
            # epoch 0 and the collision resolution delays agreement on the slot map.
            _command(node, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        first = self._nodes[0]
        for node in self._nodes[1:]:
            _command(first, "CLUSTER", "MEET", _LOCALHOST, node.port, node.bus_port)
        count = len(self._primaries)
        for index, primary in enumerate(self._primaries):
            low = index * CLUSTER_SLOTS // count
            high = (index + 1) * CLUSTER_SLOTS // count - 1
            _command(primary, "CLUSTER", "ADDSLOTSRANGE", low, high)
        for replica, primary in self._replica_of.items():
            self._attach_replica(replica, primary, timeout)
        self._formed = True
        self.wait_ok(timeout)

    def _attach_replica(self, replica: RedisServer, primary: RedisServer, timeout: float) -> None:
        primary_id = self.node_id(primary)

        def replicate() -> str | None:
            # REPLICATE fails with "Unknown node" until gossip has introduced the primary.
            try:
                _command(replica, "CLUSTER", "REPLICATE", primary_id)
            except redis.ResponseError as exc:
                return f"CLUSTER REPLICATE on {replica!r}: {exc}"
            return None

        _wait_until(replicate, timeout=timeout, what="replica attached", servers=lambda: [replica, primary])

    def stop(self) -> None:
        """Stop every node (SIGTERM, escalating to SIGKILL); idempotent."""
        self._migrations.clear()
        stop_quietly(reversed(self._nodes))

    def kill_node(self, node: RedisServer) -> None:
        """SIGKILL one node (it can be brought back with ``node.restart()``)."""
        node.kill()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- consistency ------------------------------------------------------------------
    def _slot_map(self, node: RedisServer) -> list[_SlotMapEntry]:
        """``CLUSTER SLOTS`` of ``node`` as sorted ``(first, last, primary port, replica ports)``."""
        entries: list[_SlotMapEntry] = []
        for entry in _command(node, "CLUSTER", "SLOTS"):
            first, last, primary, *replicas = entry
            replica_ports = tuple(sorted(int(replica[1]) for replica in replicas))
            entries.append((int(first), int(last), int(primary[1]), replica_ports))
        return sorted(entries)

    def _consistency_problem(self) -> str | None:
        """What keeps the running nodes from being a healthy, agreeing cluster, else None."""
        running: list[RedisServer] = [node for node in self._nodes if node.running]
        if not running:
            return "no node is running"
        maps: dict[RedisServer, list[_SlotMapEntry]] = {}
        for node in running:
            cluster_info = _parse_info_text(str(_command(node, "CLUSTER", "INFO")))
            if cluster_info.get("cluster_state") != "ok":
                return f"{node!r} reports cluster_state:{cluster_info.get('cluster_state')}"
            if int(cluster_info.get("cluster_known_nodes", 0)) != len(self._nodes):
                return f"{node!r} knows {cluster_info.get('cluster_known_nodes')} of {len(self._nodes)} nodes"
            maps[node] = self._slot_map(node)
        reference_node, reference = next(iter(maps.items()))
        for node, slot_map in maps.items():
            if slot_map != reference:
                return f"CLUSTER SLOTS differs between {reference_node!r} and {node!r}"
        covered = sum(last - first + 1 for first, last, _, _ in reference)
        if covered != CLUSTER_SLOTS:
            return f"only {covered} of {CLUSTER_SLOTS} slots are served"
        listed = {port for _, _, _, replica_ports in reference for port in replica_ports}
        for node in running:
            # By current role, not by initial layout: a promoted replica is a primary now.
            replication = _info(node, "replication")
            if replication.get("role") != "slave":
                continue
            if replication.get("master_link_status") != "up":
                return f"{node!r} has master_link_status:{replication.get('master_link_status')}"
            if node.port not in listed:
                return f"{node!r} is not yet listed as a replica in CLUSTER SLOTS"
        return None

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Wait until every running node reports ``cluster_state:ok``, knows every node,
        returns the identical ``CLUSTER SLOTS`` covering all slots, and every running
        replica's link to its primary is up (and it is listed in ``CLUSTER SLOTS``).

        Only the running nodes' view counts: right after :meth:`kill_node` of a primary
        without replicas this can still pass, until ``node_timeout_ms`` marks it failed.
        """
        _wait_until(
            self._consistency_problem,
            timeout=timeout,
            what="cluster consistency",
            servers=lambda: self._nodes,
        )

    # -- slots and keys ---------------------------------------------------------------
    def _reference_node(self) -> RedisServer:
        for node in self._nodes:
            if node.running:
                return node
        raise ProcessError("no node of the cluster is running")

    def slot_owner(self, slot: int) -> RedisServer:
        """The primary that owns ``slot`` according to the cluster's slot map.

        During a migration started with :meth:`begin_migration` this is still the source.
        """
        for first, last, primary_port, _ in self._slot_map(self._reference_node()):
            if first <= slot <= last:
                return self.node_by_port(primary_port)
        raise ProcessError(f"slot {slot} is not served by any node")

    def node_for_key(self, key: str) -> RedisServer:
        """The primary owning the slot of ``key`` (hash tags honoured)."""
        return self.slot_owner(key_slot(key.encode()))

    def keys_in_slot(self, slot: int, node: RedisServer | None = None) -> list[str]:
        """Keys of ``slot`` stored on ``node`` (default: the slot's owner), decoded as UTF-8."""
        holder = node if node is not None else self.slot_owner(slot)
        count = int(_command(holder, "CLUSTER", "COUNTKEYSINSLOT", slot))
        if count == 0:
            return []
        return [str(key) for key in _command(holder, "CLUSTER", "GETKEYSINSLOT", slot, count)]

    # -- slot migration ---------------------------------------------------------------
    def begin_migration(self, slot: int, target: RedisServer) -> None:
        """Mark ``slot`` IMPORTING on ``target`` and MIGRATING on its current owner.

        From here on the source answers ``ASK`` for keys of the slot it no longer holds.
        """
        if slot in self._migrations:
            raise ValueError(f"slot {slot} is already being migrated")
        source = self.slot_owner(slot)
        if source is target:
            raise ValueError(f"{target!r} already owns slot {slot}")
        # Target first, as redis-cli does: an ASK from the source must never point at a
        # node that would still answer MOVED.
        _command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))
        _command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target))
        self._migrations[slot] = (source, target)

    def open_migrations(self) -> list[int]:
        """The slots whose migration :meth:`begin_migration` started and nothing finished yet."""
        return sorted(self._migrations)

    def _migration(self, slot: int) -> tuple[RedisServer, RedisServer]:
        try:
            return self._migrations[slot]
        except KeyError:
            raise ValueError(f"no migration of slot {slot} is in progress") from None

    def migrate_keys(self, slot: int, count: int | None = None) -> int:
        """MIGRATE up to ``count`` keys (all if None) of ``slot``, one key per MIGRATE.

        Returns how many keys moved.  One key per command so a test can interleave
        traffic between single key moves.
        """
        source, target = self._migration(slot)
        moved = 0
        with _admin(source, decode=False) as client:
            while count is None or moved < count:
                batch = 100 if count is None else min(100, count - moved)
                # Raw bytes keys: MIGRATE must get back exactly the key that is stored.
                keys: list[bytes] = client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
                if not keys:
                    break
                progress = 0
                for key in keys:
                    reply = client.execute_command(
                        "MIGRATE", _LOCALHOST, target.port, "", 0, _MIGRATE_TIMEOUT_MS, "KEYS", key
                    )
                    # NOKEY: the key expired or was deleted since GETKEYSINSLOT.
                    if reply in (b"OK", "OK", True):
                        progress += 1
                moved += progress
                if progress == 0:
                    break
        return moved

    def finish_migration(self, slot: int, timeout: float = 20.0) -> None:
        """Move the remaining keys, assign ``slot`` to the target everywhere, wait for agreement."""
        source, target = self._migration(slot)
        self.migrate_keys(slot)
        target_id = self.node_id(target)
        # Target first so it owns the slot (and bumps its epoch) before the source stops
        # answering ASK; then the source, then the other primaries, as in the Redis docs.
        others = [n for n in self._nodes if n.running and n not in (source, target) and self._is_primary(n)]
        for node in [target, source, *others]:
            _command(node, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        del self._migrations[slot]
        self.wait_ok(timeout)

    def migrate_slot(self, slot: int, target: RedisServer, timeout: float = 20.0) -> None:
        """Move ``slot`` and all its keys to ``target`` (begin + migrate + finish)."""
        self.begin_migration(slot, target)
        self.finish_migration(slot, timeout)

    def _is_primary(self, node: RedisServer) -> bool:
        return _info(node, "replication").get("role") == "master"

    def __repr__(self) -> str:
        return f"<LocalCluster {self.url} nodes={len(self._nodes)}>"


# --------------------------------------------------------------------------------------
# Redis Sentinel
# --------------------------------------------------------------------------------------


class SentinelDataServer(RedisServer):
    """A data node of a Sentinel group, started from a config file in its data dir.

    Sentinel persists role changes with ``CONFIG REWRITE``, which needs a config file;
    without one, a promoted replica restarted later would come back replicating its old
    primary (or an old primary as a primary).  The initial ``replicaof`` therefore lives
    in ``redis.conf``, not on the command line, where it would override the rewrite.
    """

    _name = "redis-server (sentinel data node)"

    def __init__(self, data_dir: Path, *, replica_of: int | None = None, port: int | None = None) -> None:
        """Prepare (but do not start) a node; ``replica_of`` is the primary's port."""
        super().__init__(data_dir, port=port, appendonly=True)
        self.replica_of = replica_of

    @property
    def config_path(self) -> Path:
        """The config file Sentinel rewrites on role changes."""
        return self.data_dir / "redis.conf"

    def argv(self) -> list[str]:
        """RedisServer's command line with the config file as first argument."""
        executable, *options = super().argv()
        return [executable, str(self.config_path), *options, *_FAST_SYNC_ARGS]

    def start(self, timeout: float = 10.0) -> None:
        """Write the initial config file (first start only), then start like RedisServer."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            lines = ["# Initial config; Sentinel rewrites it on role changes."]
            if self.replica_of is not None:
                lines.append(f"replicaof {_LOCALHOST} {self.replica_of}")
            self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        super().start(timeout)


class SentinelServer(RedisServer):
    """A ``redis-server <conf> --sentinel`` process monitoring one primary.

    Readiness is the same as for RedisServer (PING answers and INFO's ``process_id`` is
    this child's pid).  The config file is written on the first start only: Sentinel
    keeps its state (known replicas and sentinels, current primary) in it.
    """

    _name = "redis-sentinel"
    _url_path = ""  # a sentinel has no databases
    _log_name = "sentinel.log"  # ``logfile`` in its config
    _output_name = "sentinel.stdout.log"

    def __init__(
        self,
        data_dir: Path,
        *,
        service: str,
        primary_port: int,
        quorum: int,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        debug_timers: Mapping[str, int] | None = None,
        port: int | None = None,
    ) -> None:
        """Prepare (but do not start) a sentinel for ``service`` at 127.0.0.1:``primary_port``.

        ``debug_timers`` are ``SENTINEL DEBUG`` parameters (e.g. ``{"info-period": 1000}``)
        applied after every start; they live in memory only, not in the config file.
        """
        super().__init__(data_dir, port=port, appendonly=False)
        self.debug_timers: dict[str, int] = dict(debug_timers or {})
        self.service = service
        self.primary_port = primary_port
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    @property
    def config_path(self) -> Path:
        """The sentinel's own, writable config file."""
        return self.data_dir / "sentinel.conf"

    def config_text(self) -> str:
        """The initial config file contents."""
        service = self.service
        return "\n".join(
            [
                f"port {self.port}",
                f"bind {_LOCALHOST}",
                f'dir "{self.data_dir}"',
                f'logfile "{self.log_path}"',
                "daemonize no",
                "protected-mode no",
                f"sentinel monitor {service} {_LOCALHOST} {self.primary_port} {self.quorum}",
                f"sentinel down-after-milliseconds {service} {self.down_after_ms}",
                f"sentinel failover-timeout {service} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {service} 1",
                "",
            ]
        )

    def argv(self) -> list[str]:
        """``redis-server <conf> --sentinel --port <port>``.

        ``--port`` repeats the config's port so RedisServer's retry with a fresh port
        after a lost port race also applies to sentinels.
        """
        executable = shutil.which("redis-server")
        if executable is None:
            raise ProcessError("redis-server not found on PATH")
        return [executable, str(self.config_path), "--sentinel", "--port", str(self.port)]

    def start(self, timeout: float = 10.0) -> None:
        """Write the config file (first start only), then start and wait for PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            self.config_path.write_text(self.config_text(), encoding="utf-8")
        super().start(timeout)
        if self.debug_timers:
            arguments = [str(part) for item in self.debug_timers.items() for part in item]
            _command(self, "SENTINEL", "DEBUG", *arguments)

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<SentinelServer {self.url} service={self.service} {state}>"


#: How long a planned failover holds writes on the old primary: longer than a promotion takes.
FENCE_PAUSE_MS = 5_000


class SentinelGroup:
    """A primary, its replicas and a set of Sentinels watching them, all on 127.0.0.1.

    The data nodes live in ``base_dir / "primary"`` and ``base_dir / f"replica-{i}"``,
    the sentinels in ``base_dir / f"sentinel-{i}"``.  Use as a context manager or call
    :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        base_dir: Path,
        service: str = "sr-primary",
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        *,
        fast_timers: bool = True,
    ) -> None:
        """Prepare (but do not start) the data nodes and sentinels on free ports.

        ``fast_timers`` applies :data:`FAST_SENTINEL_TIMERS` to every sentinel.
        """
        if replicas < 0:
            raise ValueError("replicas must be >= 0")
        if sentinels < 1:
            raise ValueError("a sentinel group needs at least one sentinel")
        self.base_dir = Path(base_dir)
        self._service = service
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.quorum = sentinels // 2 + 1
        first_primary = SentinelDataServer(self.base_dir / "primary")
        self._data_nodes: list[SentinelDataServer] = [first_primary] + [
            SentinelDataServer(self.base_dir / f"replica-{i}", replica_of=first_primary.port)
            for i in range(1, replicas + 1)
        ]
        self._sentinels: list[SentinelServer] = [
            SentinelServer(
                self.base_dir / f"sentinel-{i}",
                service=service,
                primary_port=first_primary.port,
                quorum=self.quorum,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
                debug_timers=FAST_SENTINEL_TIMERS if fast_timers else None,
            )
            for i in range(1, sentinels + 1)
        ]
        self._formed = False

    # -- topology ---------------------------------------------------------------------
    @property
    def service(self) -> str:
        """The monitored service (master) name."""
        return self._service

    @property
    def data_nodes(self) -> list[RedisServer]:
        """Every data node; the first one is the initial primary."""
        return list(self._data_nodes)

    @property
    def sentinels(self) -> list[RedisServer]:
        """The sentinel processes."""
        return list(self._sentinels)

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every sentinel, e.g. for ``redis.sentinel.Sentinel``."""
        return [(_LOCALHOST, sentinel.port) for sentinel in self._sentinels]

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:<s1>,127.0.0.1:<s2>,.../<service>``."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)
        return f"redis+sentinel://{hosts}/{self._service}"

    def _all_servers(self) -> list[RedisServer]:
        return [*self._data_nodes, *self._sentinels]

    def _node_by_port(self, port: int) -> RedisServer:
        for node in self._data_nodes:
            if node.port == port:
                return node
        raise ProcessError(f"sentinels report port {port}, which is not a data node of this group")

    def _reported_primary_ports(self) -> list[int]:
        """``GET-MASTER-ADDR-BY-NAME`` port of every running sentinel that answers."""
        ports: list[int] = []
        for sentinel in self._sentinels:
            if not sentinel.running:
                continue
            with contextlib.suppress(redis.RedisError):
                reply = _command(sentinel, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self._service)
                if reply:
                    ports.append(int(reply[1]))
        return ports

    def primary(self) -> RedisServer:
        """The data node the sentinels currently report as primary (majority answer)."""
        ports = self._reported_primary_ports()
        if not ports:
            raise ProcessError(f"no sentinel answers GET-MASTER-ADDR-BY-NAME {self._service}")
        port, _ = collections.Counter(ports).most_common(1)[0]
        return self._node_by_port(port)

    def replicas(self) -> list[RedisServer]:
        """The data nodes other than the current :meth:`primary`."""
        current = self.primary()
        return [node for node in self._data_nodes if node is not current]

    def sentinel_master(self, sentinel: RedisServer) -> dict[str, str]:
        """``SENTINEL MASTER <service>`` of one sentinel as a dict of strings."""
        return _pairs(_command(sentinel, "SENTINEL", "MASTER", self._service))

    # -- lifecycle --------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> None:
        """Start the data nodes, wait for replication, start the sentinels, wait for discovery.

        After a :meth:`stop`, starting again restarts every process from its rewritten
        config and waits for :meth:`wait_settled`.  On failure every process is stopped
        again and :class:`ProcessError` is raised.
        """
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        if self._formed:
            # Restart after stop(): roles live in the rewritten config files, so the
            # first data node need not be the primary any more.
            for server in self._all_servers():
                if not server.running:
                    server.start()
            self.wait_settled(timeout)
            return
        primary, *replicas = self._data_nodes
        for node in self._data_nodes:
            node.start()
        for replica in replicas:
            self.wait_replica(replica, primary, timeout)
        # Sentinels learn the replicas from the primary's INFO, which lists only replicas
        # whose sync finished (state=online); starting them earlier would leave
        # num-slaves short until the next INFO refresh, ten seconds later.
        _wait_until(
            lambda: self._online_replicas_problem(primary, len(replicas)),
            timeout=timeout,
            what="replicas online on the primary",
            servers=lambda: self._data_nodes,
        )
        for sentinel in self._sentinels:
            sentinel.start()
        self._formed = True
        _wait_until(
            lambda: self._discovery_problem(primary),
            timeout=timeout,
            what="sentinel discovery",
            servers=self._all_servers,
        )

    def _online_replicas_problem(self, primary: RedisServer, expected: int) -> str | None:
        info = _info(primary, "replication")
        online = [
            value
            for key, value in info.items()
            if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
        ]
        if len(online) < expected:
            return f"{primary!r} lists {len(online)} of {expected} replicas online"
        return None

    def _discovery_problem(self, primary: RedisServer) -> str | None:
        """What a sentinel does not know yet about ``primary``, its replicas and its peers."""
        expected_replicas = len(self._data_nodes) - 1
        expected_peers = len(self._sentinels) - 1
        for sentinel in self._sentinels:
            state = self.sentinel_master(sentinel)
            if int(state.get("port", -1)) != primary.port:
                return f"{sentinel!r} reports the primary on port {state.get('port')}"
            if state.get("flags") != "master":
                return f"{sentinel!r} flags the primary {state.get('flags')!r}"
            if int(state.get("num-slaves", 0)) != expected_replicas:
                return f"{sentinel!r} knows {state.get('num-slaves')} of {expected_replicas} replicas"
            if int(state.get("num-other-sentinels", 0)) != expected_peers:
                return f"{sentinel!r} knows {state.get('num-other-sentinels')} of {expected_peers} sentinels"
        return None

    def stop(self) -> None:
        """Stop the sentinels first (so they cannot fail over a stopping primary), then the data."""
        stop_quietly(reversed(self._sentinels))
        stop_quietly(reversed(self._data_nodes))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- failover ---------------------------------------------------------------------
    def failover(self, kill: bool = True, timeout: float = 30.0, *, fence: bool = False) -> RedisServer:
        """Fail the current primary over and return the new one.

        ``kill=True`` SIGKILLs the primary and lets the sentinels detect it (after
        ``down_after_ms``) and elect a leader; ``kill=False`` asks one sentinel for a
        forced ``SENTINEL FAILOVER`` while the old primary keeps running (the sentinels
        demote it a few seconds later; see :meth:`wait_replica`).  Returns once every
        running sentinel reports the same new primary and that node says ``role:master``.

        ``fence=True`` (planned failovers only) follows the deployment guide's runbook. It sets
        ``min-replicas-to-write`` on the old primary to its number of replicas, so that once the
        promoted replica leaves, the old primary refuses writes (``NOREPLICAS``) until the sentinels
        demote it. It also pauses writes there (``CLIENT PAUSE 5000 WRITE``) across the promotion, so
        that no write is in flight to the replica being promoted while another replica acknowledges it.
        Lift the fence with :meth:`unfence` afterwards.
        """
        if len(self._data_nodes) < 2:
            raise ValueError("a failover needs at least one replica")
        # A failover started while the sentinels still disagree about a node's role
        # races their corrections (see wait_replica), so start from a settled group.
        self.wait_settled(timeout)
        old = self.primary()
        if kill:
            old.kill()
        else:
            if fence:
                replicas = int(_info(old, "replication").get("connected_slaves", 0))
                _command(old, "CONFIG", "SET", "min-replicas-to-write", str(replicas))
                _command(old, "CLIENT", "PAUSE", str(FENCE_PAUSE_MS), "WRITE")
            self._request_failover(timeout)

        def new_primary_problem() -> str | None:
            ports = self._reported_primary_ports()
            if not ports:
                return "no sentinel answers"
            if len(set(ports)) != 1:
                return f"sentinels disagree on the primary: ports {sorted(set(ports))}"
            if ports[0] == old.port:
                return f"sentinels still report the old primary on port {old.port}"
            new = self._node_by_port(ports[0])
            role = _info(new, "replication").get("role")
            if role != "master":
                return f"{new!r} (reported by sentinels) has role {role!r}"
            return next(
                (p for s in self._sentinels if s.running and (p := self._sentinel_link_problem(s))), None
            )

        _wait_until(new_primary_problem, timeout=timeout, what="failover", servers=self._all_servers)
        return self.primary()

    def unfence(self, node: RedisServer) -> None:
        """Lifts the ``min-replicas-to-write`` fence of :meth:`failover` from ``node``."""
        _command(node, "CONFIG", "SET", "min-replicas-to-write", "0")
        _command(node, "CLIENT", "UNPAUSE")

    def _request_failover(self, timeout: float) -> None:
        sentinel = next((s for s in self._sentinels if s.running), None)
        if sentinel is None:
            raise ProcessError("no sentinel is running")

        def request() -> str | None:
            # NOGOODSLAVE / INPROG are transient right after a previous failover.
            try:
                _command(sentinel, "SENTINEL", "FAILOVER", self._service)
            except redis.ResponseError as exc:
                return f"SENTINEL FAILOVER on {sentinel!r}: {exc}"
            return None

        _wait_until(request, timeout=timeout, what="failover accepted", servers=self._all_servers)

    def _sentinel_link_problem(self, sentinel: RedisServer) -> str | None:
        """Why ``sentinel`` has no live link yet to the primary it reports.

        A sentinel that switched to a new primary starts a new link to it and counts the node down
        once ``down_after_ms`` pass without a reply; if the first reply is late (a busy machine),
        it fails the new primary over again, straight back to whatever node has returned. So a
        failover is over only once every sentinel has heard the new primary: it knows its run id
        (an INFO reply came) and no PING is waiting for an answer.
        """
        state = _pairs(_command(sentinel, "SENTINEL", "MASTER", self._service))
        if state.get("flags") != "master":
            return f"{sentinel!r} flags the primary {state.get('flags')!r}"
        if not state.get("runid"):
            return f"{sentinel!r} has no INFO reply from the new primary yet"
        if int(state.get("last-ping-sent", 0)) != 0:
            return f"{sentinel!r} waits {state.get('last-ping-sent')} ms for a PING reply from the primary"
        return None

    def _sentinel_view_problem(
        self, sentinel: RedisServer, node: RedisServer, primary_port: int
    ) -> str | None:
        """Why ``sentinel`` does not (yet) see ``node`` as a healthy replica of ``primary_port``."""
        for reply in _command(sentinel, "SENTINEL", "REPLICAS", self._service):
            state = _pairs(reply)
            if int(state.get("port", -1)) == node.port:
                break
        else:
            return f"{sentinel!r} does not list {node!r} as a replica"
        if state.get("flags") != "slave":
            return f"{sentinel!r} flags {node!r} {state.get('flags')!r}"
        if state.get("role-reported") != "slave":
            return f"{sentinel!r} last saw {node!r} as {state.get('role-reported')!r}"
        if int(state.get("master-port", -1)) != primary_port:
            return f"{sentinel!r} sees {node!r} replicating port {state.get('master-port')}"
        if state.get("master-link-status") != "ok":
            return f"{sentinel!r} sees {node!r} with master-link-status {state.get('master-link-status')!r}"
        return None

    def _replica_problem(self, node: RedisServer, primary_port: int) -> str | None:
        problem = _replication_problem(node, primary_port)
        for sentinel in self._sentinels:
            if problem is not None:
                break
            if sentinel.running:
                problem = self._sentinel_view_problem(sentinel, node, primary_port)
        return problem

    def wait_replica(
        self, node: RedisServer, primary: RedisServer | None = None, timeout: float = 30.0
    ) -> None:
        """Wait until ``node`` is a linked replica of ``primary`` (default: the current one).

        Both the node itself (``INFO replication``) and every running sentinel
        (``SENTINEL REPLICAS``: flags and reported role ``slave``, link ``ok``) must agree.
        Waiting for the sentinels matters: one that never observed the node as a replica
        still holds the stale "reported as master" timestamp and would demote it again
        the moment a later failover promotes it.
        """

        def problem() -> str | None:
            target = primary if primary is not None else self.primary()
            return self._replica_problem(node, target.port)

        _wait_until(problem, timeout=timeout, what=f"{node!r} replicating", servers=self._all_servers)

    def _settled_problem(self) -> str | None:
        ports = self._reported_primary_ports()
        if not ports:
            return "no sentinel answers"
        if len(set(ports)) != 1:
            return f"sentinels disagree on the primary: ports {sorted(set(ports))}"
        current = self._node_by_port(ports[0])
        role = _info(current, "replication").get("role")
        if role != "master":
            return f"{current!r} (reported by sentinels) has role {role!r}"
        for node in self._data_nodes:
            if node is not current and node.running:
                problem = self._replica_problem(node, current.port)
                if problem is not None:
                    return problem
        return None

    def wait_settled(self, timeout: float = 30.0) -> None:
        """Wait until every running sentinel reports the same primary, which says ``role:master``,
        and every other running data node is a linked replica of it (see :meth:`wait_replica`).
        """
        _wait_until(
            self._settled_problem, timeout=timeout, what="sentinel group settled", servers=self._all_servers
        )

    def restart_old(self, node: RedisServer, timeout: float = 30.0) -> None:
        """Restart a former primary and wait until the sentinels have made it a linked replica.

        It restarts as a primary (it was killed before anything could rewrite its config);
        the sentinels demote a node reporting the wrong role only once it has done so for
        4 hello periods and only when handling an INFO reply: ~3 s with the fast timers,
        ~15 s with Redis' defaults.
        """
        if node not in self._data_nodes:
            raise ValueError(f"{node!r} is not a data node of this group")
        node.restart()
        self.wait_replica(node, timeout=timeout)

    def __repr__(self) -> str:
        return f"<SentinelGroup {self.url}>"
