"""Which Redis errors mean "retry later" (503) and which are bugs that must surface.

These drive RedisStore with a client that raises the exact redis-py exceptions a real server or
connection produces; the integration suite produces the same failures with a real redis-server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis import exceptions as redis_errors

from starlette_refresh import StoreUnavailable
from starlette_refresh.store import RedisStore


class FailingClient:
    """Raises ``error`` from every command a store operation sends."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def evalsha(self, *args: Any) -> Any:
        raise self.error

    async def ping(self) -> Any:
        raise self.error

    async def time(self) -> Any:
        raise self.error


class CalibratedFailingClient(FailingClient):
    """Answers TIME (the store measures clock offset first), then fails the script call."""

    async def time(self) -> Any:
        return (1_800_000_000, 0)


class SlowClient:
    async def ping(self) -> Any:
        await asyncio.sleep(5)


TRANSIENT = [
    redis_errors.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    redis_errors.TimeoutError("Timeout reading from socket"),
    redis_errors.BusyLoadingError("Redis is loading the dataset in memory"),
    redis_errors.ReadOnlyError("You can't write against a read only replica."),
    redis_errors.ResponseError("BUSY Redis is busy running a script."),
    redis_errors.MasterDownError("Link with MASTER is down"),
    redis_errors.TryAgainError("Multiple keys request during rehashing of slot"),
    redis_errors.ClusterDownError("The cluster is down"),
    redis_errors.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    redis_errors.ResponseError("NOREPLICAS Not enough good replicas to write."),
    ConnectionResetError(104, "Connection reset by peer"),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__ + ":" + str(e)[:12])
def test_transient_failures_become_store_unavailable(error: BaseException) -> None:
    for client in (FailingClient(error), CalibratedFailingClient(error)):
        with pytest.raises(StoreUnavailable):
            asyncio.run(RedisStore(client).rotate("0" * 20, "s" * 22, 0, 0, 10_000, 60_000))
    store = RedisStore(FailingClient(error))
    with pytest.raises(StoreUnavailable):
        asyncio.run(store.ping())


def test_a_script_bug_is_not_disguised_as_an_outage() -> None:
    store = RedisStore(
        FailingClient(redis_errors.ResponseError("ERR user_script:3: Script attempted to access"))
    )
    with pytest.raises(redis_errors.ResponseError):
        asyncio.run(store.rotate("0" * 20, "s" * 22, 0, 0, 10_000, 60_000))


def test_a_hung_store_is_bounded_by_the_timeout() -> None:
    store = RedisStore(SlowClient(), timeout=0.05)
    with pytest.raises(StoreUnavailable, match=r"within 0.05s"):
        asyncio.run(store.ping())
