"""The frame around every store operation (:class:`~starlette_refresh.guard.OperationGuard`).

Driven directly, with bodies that succeed, fail, hang or are cancelled: what the caller sees, what
the observer is told, and how operations take their turns.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis import exceptions as redis_errors

from starlette_refresh import StoreUnavailable
from starlette_refresh.guard import OperationGuard
from starlette_refresh.observe import NullObserver, StoreOutcome


class Recorder(NullObserver):
    """Keeps every store operation it is told about."""

    def __init__(self) -> None:
        self.operations: list[tuple[str, StoreOutcome]] = []

    def store_operation(self, operation: str, seconds: float, outcome: StoreOutcome) -> None:
        assert seconds >= 0
        self.operations.append((operation, outcome))


def guard_and_recorder(timeout: float = 1.0, max_connections: int = 10) -> tuple[OperationGuard, Recorder]:
    recorder = Recorder()
    return OperationGuard(timeout, max_connections, recorder), recorder


def test_an_operation_that_succeeds_is_reported_ok_and_gets_its_time_bound() -> None:
    guard, recorder = guard_and_recorder(timeout=2.0)

    async def run() -> None:
        async with guard("rotate") as bound:
            assert isinstance(bound, asyncio.Timeout)
            when = bound.when()
            assert when is not None
            assert 1.5 < when - asyncio.get_running_loop().time() <= 2.0

    asyncio.run(run())
    assert recorder.operations == [("rotate", "ok")]


def test_an_error_that_is_not_an_outage_surfaces_unchanged_and_is_reported_error() -> None:
    guard, recorder = guard_and_recorder()
    bug = ValueError("a bug of ours")

    async def run() -> None:
        async with guard("rotate"):
            raise bug

    with pytest.raises(ValueError, match="a bug of ours") as raised:
        asyncio.run(run())
    assert raised.value is bug
    assert recorder.operations == [("rotate", "error")]


def test_an_outage_becomes_store_unavailable_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    guard, recorder = guard_and_recorder()
    refused = redis_errors.ConnectionError("Connection refused")

    async def run() -> None:
        async with guard("create"):
            raise refused

    with (
        caplog.at_level(logging.WARNING, logger="starlette_refresh.store"),
        pytest.raises(StoreUnavailable) as raised,
    ):
        asyncio.run(run())
    assert raised.value.__cause__ is refused
    assert "Connection refused" in str(raised.value)
    assert recorder.operations == [("create", "unavailable")]
    logged = [r.getMessage() for r in caplog.records]
    assert logged == ["store create failed: ConnectionError: Connection refused"]


def test_store_unavailable_from_the_body_passes_through_as_unavailable() -> None:
    guard, recorder = guard_and_recorder()
    behind = StoreUnavailable("replicas behind")

    async def run() -> None:
        async with guard("revoke"):
            raise behind

    with pytest.raises(StoreUnavailable) as raised:
        asyncio.run(run())
    assert raised.value is behind
    assert recorder.operations == [("revoke", "unavailable")]


def test_a_body_that_outlasts_the_timeout_becomes_store_unavailable() -> None:
    guard, recorder = guard_and_recorder(timeout=0.05)

    async def run() -> None:
        async with guard("ping"):
            await asyncio.sleep(5)

    with pytest.raises(StoreUnavailable, match=r"did not answer ping within 0\.05s") as raised:
        asyncio.run(run())
    assert isinstance(raised.value.__cause__, TimeoutError)
    assert recorder.operations == [("ping", "unavailable")]


def test_a_cancelled_operation_is_not_reported() -> None:
    guard, recorder = guard_and_recorder()

    async def run() -> None:
        entered = asyncio.Event()

        async def operation() -> None:
            async with guard("rotate"):
                entered.set()
                await asyncio.sleep(5)

        task = asyncio.create_task(operation())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The cancelled operation gave its turn back.
        async with guard("ping"):
            pass

    asyncio.run(run())
    assert recorder.operations == [("ping", "ok")]


def test_the_wait_for_a_turn_counts_toward_the_timeout() -> None:
    guard, recorder = guard_and_recorder(timeout=0.1, max_connections=1)

    async def run() -> None:
        holding = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with guard("ping") as bound:
                bound.reschedule(None)  # holds the only turn for as long as the test needs
                holding.set()
                await release.wait()

        held = asyncio.create_task(holder())
        await holding.wait()

        async def attempt() -> None:
            async with guard("rotate"):
                raise AssertionError("entered while the only turn was taken")

        with pytest.raises(StoreUnavailable, match=r"did not answer rotate within 0\.1s"):
            await asyncio.wait_for(attempt(), 5)  # a wait the bound does not cover would end here
        release.set()
        await held
        # The timed-out waiter took no turn: exactly one operation is admitted at a time again.
        inside = 0

        async def counted() -> None:
            nonlocal inside
            async with guard("time"):
                inside += 1
                assert inside == 1
                await asyncio.sleep(0.001)
                inside -= 1

        await asyncio.gather(counted(), counted(), counted())

    asyncio.run(run())
    assert recorder.operations == [("rotate", "unavailable"), ("ping", "ok"), *[("time", "ok")] * 3]


def test_a_cancelled_wait_for_a_turn_is_not_reported_and_takes_no_turn() -> None:
    guard, recorder = guard_and_recorder(max_connections=1)

    async def run() -> None:
        release = asyncio.Event()

        async def holder() -> None:
            async with guard("ping"):
                await release.wait()

        held = asyncio.create_task(holder())
        await asyncio.sleep(0)
        waiting = asyncio.create_task(guard("rotate").__aenter__())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        await held
        async with guard("time"):
            pass

    asyncio.run(run())
    assert recorder.operations == [("ping", "ok"), ("time", "ok")]


def test_turns_are_taken_first_come_first_served() -> None:
    guard, _ = guard_and_recorder(max_connections=1)
    order: list[int] = []

    async def run() -> None:
        async def operation(number: int) -> None:
            async with guard("rotate"):
                order.append(number)
                await asyncio.sleep(0)

        tasks = []
        for number in range(5):
            tasks.append(asyncio.create_task(operation(number)))
            await asyncio.sleep(0)  # each has queued before the next one arrives
        await asyncio.gather(*tasks)

    asyncio.run(run())
    assert order == [0, 1, 2, 3, 4]


def test_each_event_loop_gets_its_own_turns() -> None:
    guard, recorder = guard_and_recorder(max_connections=1)

    async def operation() -> None:
        async with guard("ping"):
            await asyncio.sleep(0)

    async def run() -> None:
        await asyncio.gather(operation(), operation())  # the second waits for its turn

    # A semaphore that waited in one loop cannot serve another: two runs, two loops, both fine.
    asyncio.run(run())
    asyncio.run(run())
    assert recorder.operations == [("ping", "ok")] * 4
