"""Running the Lua scripts of :mod:`starlette_refresh.lua`: EVALSHA, NOSCRIPT and replica acks.

A script runs as EVALSHA with its SHA computed here, so a call is one round trip; when the server's
script cache has lost it (a restart, a failover, ``SCRIPT FLUSH``) the source goes instead, which runs
it and caches it again in the same round trip. With ``replicas``, a ``WAIT`` follows the script on
the same connection, so a login or a revocation is answered only once replicas hold it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors

from .errors import StoreUnavailable
from .lua import SCRIPTS

logger = logging.getLogger("starlette_refresh.store")


class ReplicasBehind(StoreUnavailable):
    """A write reached the primary but not ``replica_acks`` replicas in time: a failover could lose it."""


class Script:
    """One Lua script, called by its SHA and loaded again after a NOSCRIPT."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        self._encoded_sha = self.sha.encode()  # bytes pass redis-py's encoder at once

    async def __call__(
        self,
        redis: Any,
        keys: Sequence[str | bytes],
        args: Sequence[object],
        *,
        replicas: int = 0,
        wait_ms: int = 0,
    ) -> Any:
        """Runs the script; with ``replicas``, also waits (``WAIT``) until that many replicas hold its
        writes, in the same round trip, and raises :class:`ReplicasBehind` when fewer do in time."""
        if replicas:
            return await self._call_and_wait(redis, keys, args, replicas, wait_ms)
        try:
            return await redis.evalsha(self._encoded_sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            self._log_reload()
            return await redis.eval(self.source, len(keys), *keys, *args)

    async def _call_and_wait(
        self, redis: Any, keys: Sequence[str | bytes], args: Sequence[object], replicas: int, wait_ms: int
    ) -> Any:
        # WAIT counts the replicas that hold this connection's writes, so it must follow the script
        # on the same connection: a pipeline gives that, and keeps it to one round trip. On Cluster
        # it must also go to the node that owns the keys, which a keyless WAIT would not.
        node = {"target_nodes": redis.get_node_from_key(keys[0])} if is_cluster(redis) else {}
        for command, script in (("EVALSHA", self.sha), ("EVAL", self.source)):
            async with redis.pipeline(transaction=False) as pipe:
                # execute_command, not pipe.evalsha: redis-py's Cluster pipeline refuses the named
                # script methods but routes the raw command by its keys like any other.
                pipe.execute_command(command, script, len(keys), *keys, *args)
                pipe.execute_command("WAIT", replicas, wait_ms, **node)
                reply, acks = await pipe.execute(raise_on_error=False)
            if not isinstance(reply, redis_errors.NoScriptError):
                break
            self._log_reload()
        for result in (reply, acks):
            if isinstance(result, Exception):
                raise result
        if int(acks) < replicas:
            raise ReplicasBehind(
                f"Redis applied {self.name} but only {int(acks)} of {replicas} replicas acknowledged it "
                f"within {wait_ms} ms"
            )
        return reply

    def _log_reload(self) -> None:
        logger.info("script %s not cached on the server (NOSCRIPT); sending its source", self.name)


def load_scripts() -> dict[str, Script]:
    """Every script the store runs, by name."""
    return {name: Script(name, source) for name, source in SCRIPTS.items()}


def is_cluster(redis: Any) -> bool:
    """True for a redis-py ``RedisCluster`` client."""
    return hasattr(redis, "get_node_from_key")
