"""The session store: Redis (standalone or Cluster), one script call per session change.

Every Redis failure that a retry can cure (refused or dropped connections, timeouts, a server that is
loading, read-only, busy or out of memory, a cluster that is down) becomes :class:`StoreUnavailable`,
which the endpoints answer with 503; it is never mistaken for an expired session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import traceback
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import redis
from redis import exceptions as redis_errors

from .clock import real_time, stopwatch
from .errors import StoreUnavailable
from .lua import SCRIPTS
from .observe import NullObserver, Observer, log_fields
from .redis_urls import client_from_target, parse_redis_url

logger = logging.getLogger("starlette_refresh.store")

Outcome = Literal["rotated", "grace", "reused", "expired", "revoked", "missing"]

# How long before our own timeout a rotation must have run, so that its answer can still reach us.
_DEADLINE_MARGIN = 0.1
# How late a WAIT may answer after its timeout: Redis times blocked clients out on its event loop's
# ticks, 1/hz apart (hz 10 by default). Measured: WAIT 1 350 answered after 400 ms, WAIT 1 400 after
# up to 499 ms.
_WAIT_OVERSHOOT = 0.1

# ResponseError prefixes that mean "not now" rather than "this command is wrong".
_TRANSIENT_PREFIXES = (
    "BUSY",
    "LOADING",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "READONLY",
    "OOM",
    "NOREPLICAS",  # min-replicas-to-write not met: a fenced primary during a planned failover
)


@dataclass(frozen=True, slots=True)
class Rotation:
    """What the rotate script decided. ``generation`` is the current generation after the call."""

    outcome: Outcome
    generation: int = 0
    idle_expires_at_ms: int = 0
    subject: str = ""
    claims_json: str = "{}"
    stored_generation: int = 0


@dataclass(frozen=True, slots=True)
class StoredSession:
    """One live session as listed for its user."""

    session_id: str
    created_at_ms: int
    last_used_at_ms: int
    user_agent: str


class SessionStore(Protocol):
    """What the session service needs from a store; :class:`RedisStore` is the implementation."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def create(
        self,
        user_tag: str,
        session_id: str,
        subject: str,
        claims_json: str,
        user_agent: str,
        now_ms: int,
        idle_expires_at_ms: int,
        absolute_expires_at_ms: int,
        max_sessions: int,
    ) -> list[str]: ...
    async def rotate(
        self,
        user_tag: str,
        session_id: str,
        generation: int,
        now_ms: int,
        grace_ms: int,
        idle_ttl_ms: int,
    ) -> Rotation: ...
    async def revoke(self, user_tag: str, session_id: str, subject: str | None, now_ms: int) -> bool: ...
    async def revoke_all(self, user_tag: str, now_ms: int) -> list[str]: ...
    async def list_sessions(self, user_tag: str, subject: str, now_ms: int) -> list[StoredSession]: ...
    async def publish_revocations(self, entries: Sequence[str], until_ms: int, now_ms: int) -> None: ...
    async def load_revocations(self, now_ms: int) -> dict[str, int]: ...
    def subscription(self) -> AbstractAsyncContextManager[Any]: ...


class _Script:
    """EVALSHA with the SHA computed locally, loading the script again after a NOSCRIPT."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(
        self, redis: Any, keys: Sequence[str], args: Sequence[object], *, replicas: int = 0, wait_ms: int = 0
    ) -> Any:
        """Runs the script; with ``replicas``, also waits (``WAIT``) until that many replicas hold its
        writes, in the same round trip, and raises :class:`ReplicasBehind` when fewer do in time."""
        if replicas:
            return await self._call_and_wait(redis, keys, args, replicas, wait_ms)
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            # The script cache is empty after a Redis restart, failover or SCRIPT FLUSH. EVAL runs
            # the source and caches it again in one round trip, whatever happens to the cache next.
            logger.info("script %s not cached on the server (NOSCRIPT); sending its source", self.name)
            return await redis.eval(self.source, len(keys), *keys, *args)

    async def _call_and_wait(
        self, redis: Any, keys: Sequence[str], args: Sequence[object], replicas: int, wait_ms: int
    ) -> Any:
        # WAIT counts the replicas that hold this connection's writes, so it must follow the script
        # on the same connection: a pipeline gives that, and keeps it to one round trip. On Cluster
        # it must also go to the node that owns the keys, which a keyless WAIT would not.
        node = {"target_nodes": redis.get_node_from_key(keys[0])} if _is_cluster(redis) else {}
        for command, script in (("EVALSHA", self.sha), ("EVAL", self.source)):
            async with redis.pipeline(transaction=False) as pipe:
                # execute_command, not pipe.evalsha: redis-py's Cluster pipeline refuses the named
                # script methods but routes the raw command by its keys like any other.
                pipe.execute_command(command, script, len(keys), *keys, *args)
                pipe.execute_command("WAIT", replicas, wait_ms, **node)
                reply, acks = await pipe.execute(raise_on_error=False)
            if not isinstance(reply, redis_errors.NoScriptError):
                break
            logger.info("script %s not cached on the server (NOSCRIPT); sending its source", self.name)
        for result in (reply, acks):
            if isinstance(result, Exception):
                raise result
        if int(acks) < replicas:
            raise ReplicasBehind(
                f"Redis applied {self.name} but only {int(acks)} of {replicas} replicas acknowledged it "
                f"within {wait_ms} ms"
            )
        return reply


class ReplicasBehind(StoreUnavailable):
    """A write reached the primary but not ``replica_acks`` replicas in time: a failover could lose it."""


def _is_cluster(redis: Any) -> bool:
    return hasattr(redis, "get_node_from_key")


def _pubsub_for(client: Any) -> tuple[Any, Any]:
    """A PubSub on ``client``, and the pool made for it (None when the client's own pool serves).

    On Cluster a classic PUBLISH reaches every node over the cluster bus, so a subscription to any
    one node hears every revocation. It gets its own one-connection pool to a random node, with the
    cluster's credentials and TLS settings: redis-py's async RedisCluster has no pubsub() before
    8.0. When that node fails, the feed reconnects and draws a node again.
    """
    if not _is_cluster(client):
        return client.pubsub(), None
    from redis.asyncio.client import PubSub
    from redis.asyncio.connection import ConnectionPool

    node = client.get_random_node()
    pool = ConnectionPool(connection_class=node.connection_class, max_connections=1, **node.connection_kwargs)
    return PubSub(connection_pool=pool), pool


class RedisStore:
    """Sessions in Redis: pass a redis-py asyncio client (``Redis`` or ``RedisCluster``) or a URL.

    A client built from ``url`` belongs to the store: it is created on first use inside the running
    event loop and closed by :meth:`close`. A client the application passes in stays the
    application's to close. Every operation's duration and outcome goes to ``observer``.
    """

    def __init__(
        self,
        redis: Any = None,
        *,
        url: str | None = None,
        key_prefix: str = "sr:",
        timeout: float = 2.0,
        max_connections: int = 100,
        replica_acks: int = 0,
        replica_ack_timeout: float = 0.5,
        observer: Observer | None = None,
    ) -> None:
        if (redis is None) == (url is None):
            raise TypeError("RedisStore needs exactly one of a redis-py asyncio client or a url")
        self._client: Any = redis
        self._target = parse_redis_url(url) if url is not None else None
        self._prefix = key_prefix
        self._timeout = timeout
        self._scripts = {name: _Script(name, source) for name, source in SCRIPTS.items()}
        self._max_connections = max_connections
        self._turns: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None
        self._replicas = replica_acks
        self._wait_ms = max(1, int(replica_ack_timeout * 1000))
        self._redis_clock_offset: float | None = None  # Redis TIME minus our real time, seconds
        self._observer: Observer = observer if observer is not None else NullObserver()

    @property
    def redis(self) -> Any:
        """The client, created from the URL on first use."""
        if self._client is None:
            assert self._target is not None
            self._client = client_from_target(self._target, self._timeout, self._max_connections)
        return self._client

    def session_key(self, user_tag: str, session_id: str) -> str:
        """The hash of one session; ``{user_tag}`` keeps every key of a user in one cluster slot."""
        return f"{self._prefix}{{{user_tag}}}:s:{session_id}"

    def index_key(self, user_tag: str) -> str:
        """The sorted set of a user's live sessions, scored by idle expiry (ms)."""
        return f"{self._prefix}{{{user_tag}}}:u"

    async def start(self) -> None:
        """Pings the server and loads every script, so the first refresh needs one round trip."""
        async with self._guard("start"):
            await self.redis.ping()
            for script in self._scripts.values():
                await self.redis.script_load(script.source)
            await self._calibrate()

    async def _calibrate(self) -> None:
        """Measures how far Redis's clock is from ours, so rotation deadlines mean the same on both."""
        sent = real_time()
        seconds, micros = await self.redis.time()
        received = real_time()
        self._redis_clock_offset = seconds + micros / 1e6 - (sent + received) / 2

    async def close(self) -> None:
        """Closes the client when this store created it (a later use creates a new one)."""
        if self._target is not None and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def ping(self) -> None:
        """Raises :class:`StoreUnavailable` unless the server answers."""
        async with self._guard("ping"):
            await self.redis.ping()

    async def persistence(self) -> dict[str, str] | None:
        """The server settings the app checks at startup (``appendonly``, ``save``,
        ``maxmemory-policy``, ``hash-max-listpack-value``), or None where CONFIG is not allowed."""
        merged: dict[str, str] = {}
        try:
            async with self._guard("config"):
                for name in ("appendonly", "save", "maxmemory-policy", "hash-max-listpack-value"):
                    merged.update(_as_text_dict(await self.redis.config_get(name)))
        except redis_errors.ResponseError:
            return None
        return merged

    async def create(
        self,
        user_tag: str,
        session_id: str,
        subject: str,
        claims_json: str,
        user_agent: str,
        now_ms: int,
        idle_expires_at_ms: int,
        absolute_expires_at_ms: int,
        max_sessions: int,
    ) -> list[str]:
        """Stores a new session at generation 0; returns ids evicted over ``max_sessions``."""
        keys = [self.session_key(user_tag, session_id), self.index_key(user_tag)]
        args = [
            session_id,
            subject,
            claims_json,
            user_agent,
            now_ms,
            idle_expires_at_ms,
            absolute_expires_at_ms,
            max_sessions,
        ]
        async with self._guard("create") as bound:
            created = await self._scripts["create"](self.redis, keys, args, **self._durably(bound))
            evicted = [_text(x) for x in created]
            if evicted:
                # Already dead (gone from the index); delete their records to free the memory now.
                await self.redis.delete(*(self.session_key(user_tag, sid) for sid in evicted))
        return evicted

    async def rotate(
        self,
        user_tag: str,
        session_id: str,
        generation: int,
        now_ms: int,
        grace_ms: int,
        idle_ttl_ms: int,
    ) -> Rotation:
        """Runs the one atomic refresh step; see :mod:`starlette_refresh.lua`.

        Raises :class:`StoreUnavailable` when Redis ran it too late to answer in time; it then
        changed nothing, so the client's retry presents a token that is still current.

        A rotation does not wait for replicas, even with ``replica_acks``: if a failover loses it, the
        client presents a token one generation ahead of the store, which the script accepts and
        rotates (``ahead``), so no one is logged out and the refresh stays one round trip.
        """
        keys = [self.session_key(user_tag, session_id), self.index_key(user_tag)]
        async with self._guard("rotate") as bound:
            if self._redis_clock_offset is None:
                await self._calibrate()
            args = [session_id, generation, now_ms, grace_ms, idle_ttl_ms, self._redis_deadline_ms(bound)]
            reply = await self._scripts["rotate"](self.redis, keys, args)
        outcome = _text(reply[0])
        if outcome == "late":
            self._redis_clock_offset = None  # measure again: the clocks may have moved apart
            logger.warning("store rotate ran after its deadline; nothing changed", extra=_outage("rotate"))
            raise StoreUnavailable("Redis ran the refresh after its deadline; nothing changed")
        if len(reply) == 1:
            return Rotation(outcome=outcome)  # type: ignore[arg-type]
        if len(reply) == 2:
            return Rotation(outcome=outcome, generation=int(reply[1]))  # type: ignore[arg-type]
        return Rotation(
            outcome=outcome,  # type: ignore[arg-type]
            generation=int(reply[1]),
            idle_expires_at_ms=int(reply[2]),
            subject=_text(reply[3]),
            claims_json=_text(reply[4]),
            stored_generation=int(reply[5]),
        )

    async def revoke(self, user_tag: str, session_id: str, subject: str | None, now_ms: int) -> bool:
        """Ends one session; with ``subject``, only if it is that subject's. True if it was alive."""
        keys = [self.session_key(user_tag, session_id), self.index_key(user_tag)]
        async with self._guard("revoke") as bound:
            removed = await self._scripts["revoke"](
                self.redis, keys, [session_id, subject or "", now_ms], **self._durably(bound)
            )
        return bool(removed)

    async def revoke_all(self, user_tag: str, now_ms: int) -> list[str]:
        """Ends every session of a user atomically; returns the ids of those that were alive."""
        index = self.index_key(user_tag)
        async with self._guard("revoke_all") as bound:
            members = await self.redis.zrange(index, 0, -1)
            keys = [index, *(self.session_key(user_tag, _text(m)) for m in members)]
            ended = await self._scripts["revoke_all"](self.redis, keys, [now_ms], **self._durably(bound))
        return [_text(sid) for sid in ended]

    def _durably(self, bound: asyncio.Timeout) -> dict[str, int]:
        """How a login or revocation waits for replicas: ``replica_ack_timeout`` at most, and never
        past the operation's own timeout (``bound``), so that a WAIT which finds the replicas behind
        answers "replicas behind" before we give up on it. A command we give up on costs its
        connection, which redis-py drops. A rotation never waits (see ``rotate``)."""
        wait_ms = min(self._wait_ms, int((self._seconds_left(bound) - _WAIT_OVERSHOOT) * 1000))
        return {"replicas": self._replicas, "wait_ms": max(1, wait_ms)}  # WAIT 0 would never time out

    async def replication(self) -> int | None:
        """How many replicas the primary has now, or None where that cannot be asked (Cluster)."""
        if _is_cluster(self.redis):
            return None
        async with self._guard("replication"):
            info = await self.redis.info("replication")
        return int(info.get("connected_slaves", 0))

    @property
    def revocations_key(self) -> str:
        """Sorted set of recently revoked sessions (``<user tag>.<session id>``), scored by expiry."""
        return f"{self._prefix}{{revocations}}"

    @property
    def revocations_channel(self) -> str:
        """The pub/sub channel that tells every app process about a revocation at once."""
        return f"{self._prefix}revocations"

    async def publish_revocations(self, entries: Sequence[str], until_ms: int, now_ms: int) -> None:
        """Records revoked sessions until ``until_ms`` and announces them to every process.

        One round trip. The record lets a process that was disconnected catch up when it
        reconnects; entries are kept only as long as the access tokens they could stop.
        """
        if not entries:
            return
        message = json.dumps({"revoked": list(entries), "until": until_ms})
        args = [self.revocations_channel, until_ms, now_ms, message, *entries]
        async with self._guard("publish_revocations"):
            await self._scripts["publish_revocations"](self.redis, [self.revocations_key], args)

    async def load_revocations(self, now_ms: int) -> dict[str, int]:
        """Every revocation still in force: entry -> until (ms)."""
        async with self._guard("load_revocations"):
            rows = await self.redis.zrangebyscore(self.revocations_key, f"({now_ms}", "+inf", withscores=True)
        return {_text(member): int(score) for member, score in rows}

    @asynccontextmanager
    async def subscription(self) -> AsyncIterator[Any]:
        """A pub/sub connection subscribed to the revocations channel (closed on exit)."""
        pubsub, own_pool = _pubsub_for(self.redis)
        try:
            async with self._guard("subscribe"):
                await pubsub.subscribe(self.revocations_channel)
            yield pubsub
        finally:
            with contextlib.suppress(Exception):  # the connection may already be dead
                await pubsub.aclose()
            if own_pool is not None:
                with contextlib.suppress(Exception):
                    await own_pool.disconnect()

    async def list_sessions(self, user_tag: str, subject: str, now_ms: int) -> list[StoredSession]:
        """The user's live sessions, oldest first."""
        async with self._guard("list_sessions"):
            members = await self.redis.zrangebyscore(self.index_key(user_tag), f"({now_ms}", "+inf")
            ids = [_text(m) for m in members]
            if not ids:
                return []
            async with self.redis.pipeline(transaction=False) as pipe:
                for sid in ids:
                    pipe.hmget(self.session_key(user_tag, sid), "sub", "ca", "lu", "ua", "exp", "abs")
                rows = await pipe.execute()
        sessions = []
        for sid, row in zip(ids, rows, strict=True):
            sub, created, used, agent, exp, absolute = (None if v is None else _text(v) for v in row)
            if sub != subject or exp is None or absolute is None:
                continue
            if int(exp) <= now_ms or int(absolute) <= now_ms:
                continue
            sessions.append(StoredSession(sid, int(created or 0), int(used or 0), agent or ""))
        sessions.sort(key=lambda s: s.created_at_ms)
        return sessions

    def _redis_deadline_ms(self, bound: asyncio.Timeout) -> int:
        """The last moment, on Redis's clock, at which a command may still run and its answer reach us
        before ``bound`` (the operation's timeout) gives up on it.

        Counted from the timeout itself, not from now: an operation may already have spent most of
        its time waiting for a connection, and a rotation Redis ran after we had answered 503 would
        leave the client holding a token one generation behind.
        """
        assert self._redis_clock_offset is not None
        return int((real_time() + self._redis_clock_offset + self._seconds_left(bound)) * 1000)

    def _seconds_left(self, bound: asyncio.Timeout) -> float:
        """How long Redis may still take over a command before ``bound`` expires, keeping the margin
        its answer needs to reach us (negative once too little is left)."""
        expires_at = bound.when()
        assert expires_at is not None
        margin = min(_DEADLINE_MARGIN, self._timeout / 2)
        return expires_at - asyncio.get_running_loop().time() - margin

    def _admission(self) -> asyncio.Semaphore:
        """Admits at most ``max_connections`` operations at once, in arrival order.

        redis-py's blocking pool is not fair: a task that has just released a connection can take it
        straight back before a waiting task wakes, so under a burst some requests waited out the whole
        timeout (503) while Redis was idle. asyncio's semaphore queues waiters first in, first out.
        One per event loop, because a semaphore belongs to the loop it first waited in.
        """
        loop = asyncio.get_running_loop()
        if self._turns is None or self._turns[0] is not loop:
            self._turns = (loop, asyncio.Semaphore(self._max_connections))
        return self._turns[1]

    @asynccontextmanager
    async def _guard(self, operation: str) -> AsyncIterator[asyncio.Timeout]:
        """Bounds the time of one store operation (yielding that bound), maps transient failures to
        StoreUnavailable and reports the operation's duration and outcome to the observer."""
        started = stopwatch()
        try:
            async with self._mapped_failures(operation) as bound:
                yield bound
        except StoreUnavailable:
            self._observer.store_operation(operation, stopwatch() - started, "unavailable")
            raise
        except Exception:  # not BaseException: a cancelled operation says nothing about the store
            self._observer.store_operation(operation, stopwatch() - started, "error")
            raise
        elapsed = stopwatch() - started
        self._observer.store_operation(operation, elapsed, "ok")
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "store %s ok in %.2f ms",
                operation,
                elapsed * 1000,
                extra=log_fields("store", outcome="ok", operation=operation),
            )

    @asynccontextmanager
    async def _mapped_failures(self, operation: str) -> AsyncIterator[asyncio.Timeout]:
        """Bounds the time of one store operation, the wait for a turn included, and maps transient
        failures to StoreUnavailable."""
        try:
            async with asyncio.timeout(self._timeout) as bound, self._admission():
                yield bound
        except Exception as exc:
            outage = self._outage_of(exc, operation)
            if outage is None:
                raise  # a bug of ours or a command Redis refuses: surface it, do not retry it
            logged, reported = outage
            logger.warning("store %s %s", operation, logged, extra=_outage(operation))
            raise StoreUnavailable(reported) from exc

    def _outage_of(self, exc: Exception, operation: str) -> tuple[str, str] | None:
        """(log text, error text) when ``exc`` is an outage a retry can cure; None for anything else."""
        described = _describe(exc)
        if isinstance(exc, TimeoutError | redis_errors.TimeoutError):
            return (
                f"timed out after {self._timeout:.1f}s",
                f"Redis did not answer {operation} within {self._timeout}s",
            )
        if isinstance(exc, redis_errors.ConnectionError | OSError):
            return f"failed: {described}", f"Redis is unreachable: {described}"
        refused = (f"refused: {described}", f"Redis cannot serve now: {described}")
        if isinstance(exc, _TRANSIENT_ERRORS):
            return refused
        if isinstance(exc, redis_errors.ResponseError):
            return refused if str(exc).upper().startswith(_TRANSIENT_PREFIXES) else None
        if isinstance(exc, redis_errors.CrossSlotTransactionError | redis_errors.InvalidPipelineStack):
            return None
        if isinstance(exc, redis_errors.RedisClusterException):
            if "blocked when running redis in cluster mode" in str(exc):
                return None  # a command redis-py refuses on Cluster: our mistake
            return f"failed: {described}", f"Redis Cluster is unavailable: {described}"
        if isinstance(exc, AttributeError | RuntimeError | TypeError) and _raised_inside_the_client(exc):
            # redis-py's Cluster client can trip over a connection that a concurrent command tore
            # down while a node died (a None writer, a closed transport): an outage, not a 500.
            return f"failed inside the Redis client: {described}", f"the Redis client failed: {described}"
        return None


# Redis errors that always mean "not now", whatever their text.
_TRANSIENT_ERRORS = (
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.MasterDownError,
    redis_errors.OutOfMemoryError,
    redis_errors.ReadOnlyError,
)

_CLIENT_PACKAGE = os.path.dirname(redis.__file__) + os.sep
_OUR_PACKAGE = os.path.dirname(__file__) + os.sep


def _raised_inside_the_client(exc: BaseException) -> bool:
    """True when ``exc`` came from inside redis-py: raised below its first redis-py frame, with none
    of our code in between (what lies below is redis-py's, or the event loop's it drives)."""
    files = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(exc.__traceback__)]
    entry = next((i for i, name in enumerate(files) if name.startswith(_CLIENT_PACKAGE)), None)
    return entry is not None and not any(name.startswith(_OUR_PACKAGE) for name in files[entry:])


def _outage(operation: str) -> dict[str, object]:
    return log_fields("store", outcome="unavailable", operation=operation)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _as_text_dict(value: Any) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in dict(value).items()}


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
