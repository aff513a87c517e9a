"""A refresh answered 503 changed nothing, even when it waited for its turn first.

The store bounds each operation with one timeout that covers the wait for a free connection and the
call itself, and tells the rotation script a deadline on Redis's clock: past it, the script changes
nothing. That deadline must end with the operation's own timeout. Counted from the moment the script
is sent, a rotation that had waited for its turn could still run in Redis after the client had been
answered 503; the client then retries with a token that is one generation behind.

fakeredis (with Lua) runs the real script; a client wrapper delays the call on its way to "Redis"
and lets it finish after the caller gave up, as a command already on the wire does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import fakeredis
import pytest

from starlette_refresh import Settings, StoreUnavailable, session_records
from starlette_refresh.store import RedisStore

TAG, SID = "0" * 20, "s" * 22
TIMEOUT = 1.0
HOUR_MS = 3_600_000


class DelayedRedis:
    """fakeredis whose EVALSHA reaches the server ``delay`` seconds after it is sent and then runs
    to the end even if the caller gave up meanwhile; every other command passes straight through."""

    def __init__(self, inner: fakeredis.aioredis.FakeRedis, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.in_flight: list[asyncio.Task[Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def evalsha(self, *args: Any) -> Any:
        async def on_the_wire() -> Any:
            await asyncio.sleep(self.delay)
            return await self.inner.evalsha(*args)

        task = asyncio.ensure_future(on_the_wire())
        self.in_flight.append(task)
        return await asyncio.shield(task)


class HeldTurn:
    """A PING that holds the store's only connection for ``hold`` seconds."""

    def __init__(self, hold: float) -> None:
        self.hold = hold

    async def __call__(self) -> None:
        await asyncio.sleep(self.hold)


async def generation_after_rotation(waited: float, delay: float) -> tuple[str, int]:
    """Creates a session, then rotates it after waiting ``waited`` seconds for the store's only turn,
    with the script reaching Redis ``delay`` seconds after it is sent. Returns what the caller was
    answered and the generation Redis holds once the script has run."""
    redis = DelayedRedis(fakeredis.aioredis.FakeRedis(), delay=0.0)
    store = RedisStore(redis, settings=Settings(store_timeout=TIMEOUT, store_max_connections=1))
    await store.start()  # loads the scripts, so the rotation goes through EVALSHA
    now_ms = int(time.time() * 1000)
    await store.create(TAG, SID, "alice", "{}", "test", now_ms, now_ms + HOUR_MS, now_ms + HOUR_MS, 10)
    redis.delay = delay  # only the rotation is slow
    redis.ping = HeldTurn(waited)
    holder = asyncio.create_task(store.ping())
    await asyncio.sleep(0)  # the ping takes the only turn first
    try:
        rotation = await store.rotate(TAG, SID, 0, now_ms, 10_000, HOUR_MS)
        answered = rotation.outcome
    except StoreUnavailable:
        answered = "503"
    await holder
    await asyncio.gather(*redis.in_flight)  # the script has run in Redis, whatever we answered
    stored = session_records.decode(await redis.inner.get(store.layout.user(TAG))).find(SID)
    assert stored is not None
    generation = stored.generation
    return answered, generation


def test_a_rotation_that_waited_for_its_turn_and_ran_too_late_changed_nothing() -> None:
    # 0.6 s waiting for the connection + 0.5 s on the wire: Redis runs the script at 1.1 s, after
    # the 1 s timeout answered 503. The deadline (0.9 s) has passed by then, so nothing changed.
    answered, generation = asyncio.run(generation_after_rotation(waited=0.6, delay=0.5))
    assert answered == "503"
    assert generation == 0, "Redis rotated a session whose refresh was answered 503"


def test_a_rotation_that_waited_for_its_turn_but_ran_in_time_rotated() -> None:
    # The same wait, a fast wire: the script runs at 0.6 s, well before the deadline.
    answered, generation = asyncio.run(generation_after_rotation(waited=0.6, delay=0.0))
    assert (answered, generation) == ("rotated", 1)


@pytest.mark.parametrize("waited", [0.0, 0.6])
def test_the_deadline_ends_with_the_operations_own_timeout(waited: float) -> None:
    """The deadline sent to Redis is the operation's start plus its timeout less the margin the
    answer needs, however long the operation waited for its turn."""
    sent: list[int] = []

    class RecordingRedis:
        async def ping(self) -> None:
            await asyncio.sleep(waited)

        async def time(self) -> tuple[int, int]:
            now = time.time()
            return int(now), int(now % 1 * 1_000_000)

        async def evalsha(self, *args: Any) -> Any:
            sent.append(int(args[-1]))  # the deadline is the script's last argument
            return [b"late"]

    async def scenario() -> float:
        settings = Settings(store_timeout=TIMEOUT, store_max_connections=1)
        store = RedisStore(RecordingRedis(), settings=settings)
        started = time.time()
        holder = asyncio.create_task(store.ping())
        await asyncio.sleep(0)
        with pytest.raises(StoreUnavailable, match="after its deadline"):
            await store.rotate(TAG, SID, 0, 0, 10_000, HOUR_MS)
        await holder
        return started

    started = asyncio.run(scenario())
    expected = started + TIMEOUT - 0.1
    # Scheduling may start the operation a little after `started`, never before it.
    assert expected <= sent[0] / 1000 + 0.002 < expected + 0.15


@pytest.mark.parametrize(("waited", "expected_ms"), [(0.0, 500), (0.6, 200)])
def test_a_logins_wait_for_replicas_ends_before_the_operations_own_timeout(
    waited: float, expected_ms: int
) -> None:
    """``WAIT`` gets ``replica_ack_timeout`` (0.5 s), cut to what the operation has left less the
    answer's margin (0.1 s) and Redis's late timeouts (0.1 s): after 0.6 s for its turn, 0.2 s."""
    waits: list[int] = []

    class Pipeline:
        def __init__(self) -> None:
            self.commands: list[tuple[Any, ...]] = []

        async def __aenter__(self) -> Pipeline:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

        def execute_command(self, *args: Any, **options: Any) -> None:
            self.commands.append(args)

        async def execute(self, raise_on_error: bool = True) -> list[Any]:
            (wait,) = [c for c in self.commands if c[0] == "WAIT"]
            waits.append(int(wait[2]))
            return [[], 1]  # nothing evicted; one replica acknowledged

    class RecordingRedis:
        async def ping(self) -> None:
            await asyncio.sleep(waited)

        def pipeline(self, transaction: bool = True) -> Pipeline:
            return Pipeline()

    async def scenario() -> None:
        store = RedisStore(
            RecordingRedis(),
            settings=Settings(store_timeout=TIMEOUT, store_max_connections=1, replica_acks=1),
        )
        holder = asyncio.create_task(store.ping())
        await asyncio.sleep(0)
        await store.create(TAG, SID, "alice", "{}", "test", 0, HOUR_MS, HOUR_MS, 10)
        await holder

    asyncio.run(scenario())
    # Scheduling may only shorten what is left, and by a few milliseconds.
    assert expected_ms - 50 < waits[0] <= expected_ms
