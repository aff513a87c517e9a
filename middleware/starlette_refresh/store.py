"""The session store: Redis (standalone or Cluster), one script call per session change.

:class:`RedisStore` says what each operation does; the modules beside it say how: the keys
(:mod:`.store_keys`), the scripts and their runner (:mod:`.lua`, :mod:`.scripts`), the frame around
every operation (:mod:`.guard`: time bound, fair admission, outages, metrics), which failures are
outages (:mod:`.outages`) and deadlines on Redis's clock (:mod:`.deadlines`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from redis import exceptions as redis_errors

from . import session_records
from .deadlines import Deadlines
from .devices import device_label
from .errors import StoreUnavailable
from .guard import OperationGuard
from .observe import NullObserver, Observer, log_fields
from .redis_urls import client_from_target, parse_redis_url
from .scripts import is_cluster, load_scripts
from .settings import Settings
from .store_keys import KeyLayout

logger = logging.getLogger("starlette_refresh.store")

Outcome = Literal["rotated", "grace", "reused", "expired", "revoked", "missing"]


@dataclass(frozen=True, slots=True)
class Rotation:
    """What the rotate script decided. ``generation`` is the current generation after the call."""

    outcome: Outcome
    generation: int = 0
    idle_expires_at_ms: int = 0
    subject: str = ""
    claims_json: str = "{}"
    stored_generation: int = 0

    @classmethod
    def from_reply(cls, reply: Sequence[Any]) -> Rotation:
        """Reads the rotate script's reply: the outcome, then as many fields as that outcome has."""
        outcome: Any = _text(reply[0])
        if len(reply) == 1:
            return cls(outcome)
        if len(reply) == 2:
            return cls(outcome, generation=int(reply[1]))
        return cls(
            outcome,
            generation=int(reply[1]),
            idle_expires_at_ms=int(reply[2]),
            subject=_text(reply[3]),
            claims_json=_text(reply[4]),
            stored_generation=int(reply[5]),
        )


@dataclass(frozen=True, slots=True)
class StoredSession:
    """One live session as listed for its user."""

    session_id: str
    created_at_ms: int
    last_used_at_ms: int
    device: str


class SessionStore(Protocol):
    """What the session service needs from a store; :class:`RedisStore` is the implementation."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def time(self) -> float: ...
    async def create(
        self,
        user_tag: str,
        session_id: str,
        subject: str,
        claims_json: str,
        device: str,
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


def _pubsub_for(client: Any) -> tuple[Any, Any]:
    """A PubSub on ``client``, and the pool made for it (None when the client's own pool serves).

    On Cluster a classic PUBLISH reaches every node over the cluster bus, so a subscription to any
    one node hears every revocation. It gets its own one-connection pool to a random node, with the
    cluster's credentials and TLS settings: redis-py's async RedisCluster has no pubsub() before
    8.0. When that node fails, the feed reconnects and draws a node again.
    """
    if not is_cluster(client):
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
    application's to close. The store reads ``key_prefix``, ``store_timeout``,
    ``store_max_connections``, ``replica_acks`` and ``replica_ack_timeout`` from ``settings``. Every
    operation's duration and outcome goes to ``observer``.
    """

    def __init__(
        self,
        redis: Any = None,
        *,
        url: str | None = None,
        settings: Settings | None = None,
        observer: Observer | None = None,
    ) -> None:
        if (redis is None) == (url is None):
            raise TypeError("RedisStore needs exactly one of a redis-py asyncio client or a url")
        settings = settings if settings is not None else Settings()
        self._client: Any = redis
        self._target = parse_redis_url(url) if url is not None else None
        self._settings = settings
        self.layout = KeyLayout(settings.key_prefix)
        self._scripts = load_scripts()
        self._guard = OperationGuard(
            settings.store_timeout,
            settings.store_max_connections,
            observer if observer is not None else NullObserver(),
        )
        self._deadlines = Deadlines(settings.store_timeout, settings.replica_ack_timeout)
        #: The stored format logins and rotations write: 2, or 1 while processes of 0.1 serve too
        #: (set by :class:`.format_watch.FormatWatch`).
        self.write_format = 2

    @property
    def redis(self) -> Any:
        """The client, created from the URL on first use."""
        if self._client is None:
            assert self._target is not None
            s = self._settings
            self._client = client_from_target(self._target, s.store_timeout, s.store_max_connections)
        return self._client

    async def start(self) -> None:
        """Pings the server and loads every script, so the first refresh needs one round trip."""
        async with self._guard("start"):
            await self.redis.ping()
            for script in self._scripts.values():
                await self.redis.script_load(script.source)
            await self._deadlines.calibrate(self.redis)

    async def close(self) -> None:
        """Closes the client when this store created it (a later use creates a new one)."""
        if self._target is not None and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def ping(self) -> None:
        """Raises :class:`StoreUnavailable` unless the server answers."""
        async with self._guard("ping"):
            await self.redis.ping()

    async def time(self) -> float:
        """Redis's own clock (``TIME``) in POSIX seconds: the one time every process sets its clock to."""
        async with self._guard("time"):
            seconds, micros = await self.redis.time()
        return int(seconds) + int(micros) / 1_000_000

    async def persistence(self) -> dict[str, str] | None:
        """The server settings the app checks at startup (``appendonly``, ``save``,
        ``maxmemory-policy``), or None where CONFIG is not allowed."""
        merged: dict[str, str] = {}
        try:
            async with self._guard("config"):
                for name in ("appendonly", "save", "maxmemory-policy"):
                    merged.update(_as_text_dict(await self.redis.config_get(name)))
        except redis_errors.ResponseError:
            return None
        return merged

    async def replication(self) -> int | None:
        """How many replicas the primary has now, or None where that cannot be asked (Cluster)."""
        if is_cluster(self.redis):
            return None
        async with self._guard("replication"):
            info = await self.redis.info("replication")
        return int(info.get("connected_slaves", 0))

    async def create(
        self,
        user_tag: str,
        session_id: str,
        subject: str,
        claims_json: str,
        device: str,
        now_ms: int,
        idle_expires_at_ms: int,
        absolute_expires_at_ms: int,
        max_sessions: int,
    ) -> list[str]:
        """Stores a new session at generation 0; returns ids evicted over ``max_sessions``.

        ``device`` is the short label the session list shows (:func:`.devices.device_label`)."""
        keys = [
            self.layout.user(user_tag),
            self.layout.index(user_tag),
            self.layout.session(user_tag, session_id),
        ]
        args = [session_id, subject, claims_json, device, now_ms]
        args += [idle_expires_at_ms, absolute_expires_at_ms, max_sessions, self.write_format]
        async with self._guard("create") as bound:
            created = await self._scripts["create"](self.redis, keys, args, **self._durably(bound))
            evicted = [_text(x) for x in created]
            if evicted:
                # Already dead; a format-1 session's record outlives its index entry, so free it now.
                await self.redis.delete(*(self.layout.session(user_tag, sid) for sid in evicted))
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
        async with self._guard("rotate") as bound:
            if not self._deadlines.calibrated:
                await self._deadlines.calibrate(self.redis)
            deadline = self._deadlines.redis_deadline_ms(bound)
            # Encoded here: redis-py's encoder takes several type checks for each str or int, and a
            # refresh sends nine arguments; bytes pass it at once.
            args = [session_id.encode(), b"%d" % generation, b"%d" % now_ms]
            args += [b"%d" % grace_ms, b"%d" % idle_ttl_ms, b"%d" % deadline]
            target = self.write_format
            reply = ["absent"]
            if target == 2:
                user = self.layout.user(user_tag).encode()
                reply = await self._scripts["rotate"](self.redis, [user], args)
            if _text(reply[0]) == "absent":
                # Not in the user's string (a session stored in format 1, or none at all), or format 1
                # is to be written: the script that reads and writes either.
                keys = self.layout.for_session(user_tag, session_id)
                reply = await self._scripts["rotate_any"](self.redis, keys, [*args, target])
        if _text(reply[0]) == "late":
            self._deadlines.forget()
            fields = log_fields("store", outcome="unavailable", operation="rotate")
            logger.warning("store rotate ran after its deadline; nothing changed", extra=fields)
            raise StoreUnavailable("Redis ran the refresh after its deadline; nothing changed")
        return Rotation.from_reply(reply)

    async def revoke(self, user_tag: str, session_id: str, subject: str | None, now_ms: int) -> bool:
        """Ends one session; with ``subject``, only if it is that subject's. True if it was alive."""
        args = [session_id, subject or "", now_ms]
        async with self._guard("revoke") as bound:
            durably = self._durably(bound)
            removed = await self._scripts["revoke"](self.redis, [self.layout.user(user_tag)], args, **durably)
            if removed == -1:  # not in the user's string: maybe stored by release 0.1
                keys = [self.layout.session(user_tag, session_id), self.layout.index(user_tag)]
                removed = await self._scripts["revoke_format1"](self.redis, keys, args, **durably)
        return bool(removed)

    async def revoke_all(self, user_tag: str, now_ms: int) -> list[str]:
        """Ends every session of a user atomically; returns the ids of those that were alive."""
        index = self.layout.index(user_tag)
        async with self._guard("revoke_all") as bound:
            members = await self.redis.zrange(index, 0, -1)
            keys = [self.layout.user(user_tag)]
            if members:  # sessions stored by release 0.1
                keys += [index, *(self.layout.session(user_tag, _text(m)) for m in members)]
            ended = await self._scripts["revoke_all"](self.redis, keys, [now_ms], **self._durably(bound))
        return [_text(sid) for sid in ended]

    def _durably(self, bound: Any) -> dict[str, int]:
        """How a login or revocation waits for replicas (a rotation never waits; see ``rotate``)."""
        return {"replicas": self._settings.replica_acks, "wait_ms": self._deadlines.wait_ms(bound)}

    async def list_sessions(self, user_tag: str, subject: str, now_ms: int) -> list[StoredSession]:
        """The user's live sessions, oldest first."""
        async with self._guard("list_sessions"):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(self.layout.user(user_tag))
                pipe.zrangebyscore(self.layout.index(user_tag), f"({now_ms}", "+inf")
                value, members = await pipe.execute()
            user = session_records.decode(value) if value is not None else None
            stored = list(user.sessions) if user is not None and user.subject == subject else []
            format1_ids = [_text(m) for m in members]
            if format1_ids:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for sid in format1_ids:
                        pipe.hmget(self.layout.session(user_tag, sid), *_FORMAT1_FIELDS)
                    rows = await pipe.execute()
                for sid, row in zip(format1_ids, rows, strict=True):
                    found = _format1_record(sid, row, subject)
                    stored += [found] if found is not None else []
        live = [
            StoredSession(s.session_id, s.created_at_ms, s.rotated_at_ms, device_label(s.label))
            for s in stored
            if now_ms < s.idle_expires_at_ms and now_ms < s.absolute_expires_at_ms
        ]
        return sorted(live, key=lambda s: s.created_at_ms)

    async def older_processes(self) -> int:
        """How many processes of release 0.1 share this store: subscribers of the revocation channel
        that are not subscribed to the format-2 marker too (on every node of a Cluster)."""
        async with self._guard("older_processes"):
            counts = dict(await self.redis.pubsub_numsub(self.layout.channel, self.layout.format_marker))
        numbers = {_text(channel): int(n) for channel, n in counts.items()}
        return max(0, numbers.get(self.layout.channel, 0) - numbers.get(self.layout.format_marker, 0))

    async def stored_session(self, user_tag: str, session_id: str) -> session_records.SessionRecord | None:
        """The session's stored state in either format, ended or not, or None when nothing is stored
        (for tests, benchmarks and an operator's questions; the scripts make every decision)."""
        async with self._guard("stored_session"):
            value = await self.redis.get(self.layout.user(user_tag))
            if value is not None and (found := session_records.decode(value).find(session_id)):
                return found
            row = await self.redis.hmget(self.layout.session(user_tag, session_id), *_FORMAT1_FIELDS)
        return _format1_record(session_id, row)

    async def publish_revocations(self, entries: Sequence[str], until_ms: int, now_ms: int) -> None:
        """Records revoked sessions until ``until_ms`` and announces them to every process.

        One round trip. The record lets a process that was disconnected catch up when it
        reconnects; entries are kept only as long as the access tokens they could stop.
        """
        if not entries:
            return
        message = json.dumps({"revoked": list(entries), "until": until_ms})
        args = [self.layout.channel, until_ms, now_ms, message, *entries]
        async with self._guard("publish_revocations"):
            await self._scripts["publish_revocations"](self.redis, [self.layout.revocations], args)

    async def load_revocations(self, now_ms: int) -> dict[str, int]:
        """Every revocation still in force: entry -> until (ms)."""
        async with self._guard("load_revocations"):
            rows = await self.redis.zrangebyscore(
                self.layout.revocations, f"({now_ms}", "+inf", withscores=True
            )
        return {_text(member): int(score) for member, score in rows}

    @asynccontextmanager
    async def subscription(self) -> AsyncIterator[Any]:
        """A pub/sub connection subscribed to the revocations channel (closed on exit)."""
        pubsub, own_pool = _pubsub_for(self.redis)
        try:
            async with self._guard("subscribe"):
                # One command, so the two counts PUBSUB NUMSUB reads move together (format_watch).
                await pubsub.subscribe(self.layout.channel, self.layout.format_marker)
            yield pubsub
        finally:
            with contextlib.suppress(Exception):  # the connection may already be dead
                await pubsub.aclose()
            if own_pool is not None:
                with contextlib.suppress(Exception):
                    await own_pool.disconnect()


# What is read of a format-1 session hash.
_FORMAT1_FIELDS = ("gen", "ca", "rot", "exp", "abs", "ua", "cl", "sub")


def _format1_record(
    session_id: str, row: Sequence[Any], subject: str | None = None
) -> session_records.SessionRecord | None:
    """A format-1 session hash as a format-2 record; None when it is missing, or ``subject``'s not."""
    gen, created, rotated, exp, absolute, agent, claims, sub = (None if v is None else _text(v) for v in row)
    if gen is None or rotated is None or exp is None or absolute is None:
        return None
    if subject is not None and sub != subject:
        return None
    return session_records.SessionRecord(
        session_id, int(gen), int(created or rotated), int(rotated), int(exp), int(absolute),
        agent or "", claims or "{}",
    )  # fmt: skip


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _as_text_dict(value: Any) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in dict(value).items()}
