"""Which Redis errors mean "retry later" (503) and which are bugs that must surface.

These drive RedisStore with a client that raises the exact redis-py exceptions a real server or
connection produces; the integration suite produces the same failures with a real redis-server.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
import redis
from redis import exceptions as redis_errors

from starlette_refresh import Settings, StoreUnavailable
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
    store = RedisStore(SlowClient(), settings=Settings(store_timeout=0.05))
    with pytest.raises(StoreUnavailable, match=r"within 0.05s"):
        asyncio.run(store.ping())


def _raising_in(filename: str, error: BaseException) -> Any:
    """A function whose code claims to live in ``filename``, raising ``error`` when called."""
    namespace: dict[str, Any] = {"error": error}
    exec(compile("def fail():\n    raise error\n", filename, "exec"), namespace)  # noqa: S102
    return namespace["fail"]


class ClientWithInternalFailure:
    """Fails the way redis-py's Cluster client did while a node died: an error from its own code."""

    def __init__(self, filename: str, error: BaseException) -> None:
        self.fail = _raising_in(filename, error)

    async def ping(self) -> Any:
        self.fail()


REDIS_PACKAGE = os.path.dirname(redis.__file__)


@pytest.mark.parametrize(
    "error",
    [
        AttributeError("'NoneType' object has no attribute 'writelines'"),
        RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed"),
    ],
)
def test_an_error_inside_the_redis_client_is_an_outage(error: BaseException) -> None:
    store = RedisStore(
        ClientWithInternalFailure(os.path.join(REDIS_PACKAGE, "asyncio", "connection.py"), error)
    )

    with pytest.raises(StoreUnavailable, match="the Redis client failed"):
        asyncio.run(store.ping())


@pytest.mark.parametrize("error", [AttributeError("x"), RuntimeError("y"), TypeError("z")])
def test_the_same_error_from_our_own_code_is_a_bug_and_surfaces(error: BaseException) -> None:
    store = RedisStore(ClientWithInternalFailure(__file__, error))

    with pytest.raises(type(error)):
        asyncio.run(store.ping())


def test_an_error_of_ours_called_from_inside_the_client_still_surfaces() -> None:
    import starlette_refresh

    ours = _raising_in(
        os.path.join(os.path.dirname(starlette_refresh.__file__), "sessions.py"), TypeError("bug")
    )
    client = ClientWithInternalFailure(os.path.join(REDIS_PACKAGE, "client.py"), TypeError("unused"))
    client.fail = _calling_in(os.path.join(REDIS_PACKAGE, "client.py"), ours)

    with pytest.raises(TypeError, match="bug"):
        asyncio.run(RedisStore(client).ping())


def _calling_in(filename: str, callee: Any) -> Any:
    """A function whose code claims to live in ``filename``, calling ``callee``."""
    namespace: dict[str, Any] = {"callee": callee}
    exec(compile("def call():\n    callee()\n", filename, "exec"), namespace)  # noqa: S102
    return namespace["call"]


def test_an_error_raised_by_the_event_loop_under_the_client_is_an_outage() -> None:
    # The real one: uvloop refusing to write to a transport redis-py had already closed.
    closed = _raising_in("uvloop/handles/handle.pyx", RuntimeError("unable to perform operation"))
    client = ClientWithInternalFailure(os.path.join(REDIS_PACKAGE, "client.py"), TypeError("unused"))
    client.fail = _calling_in(os.path.join(REDIS_PACKAGE, "asyncio", "connection.py"), closed)

    with pytest.raises(StoreUnavailable, match="the Redis client failed: RuntimeError"):
        asyncio.run(RedisStore(client).ping())
