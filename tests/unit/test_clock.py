"""sleep_until on the manual clock (woken by advance, from any thread) and on a real clock."""

from __future__ import annotations

import asyncio
import threading
import time

from starlette_refresh.clock import sleep_until
from starlette_refresh.testing import ManualClock


def test_a_manual_clock_wakes_sleepers_when_advanced_past_their_moment() -> None:
    clock = ManualClock(100.0)

    async def scenario() -> list[str]:
        woke: list[str] = []

        async def sleeper(name: str, moment: float) -> None:
            await sleep_until(clock, moment)
            woke.append(name)

        tasks = [asyncio.create_task(sleeper("at 110", 110.0)), asyncio.create_task(sleeper("at 120", 120.0))]
        await asyncio.sleep(0)
        clock.advance(9)
        await asyncio.sleep(0.01)
        assert woke == []
        clock.advance(1)
        await asyncio.sleep(0.01)
        assert woke == ["at 110"]
        clock.advance(30)
        await asyncio.gather(*tasks)
        return woke

    assert asyncio.run(scenario()) == ["at 110", "at 120"]


def test_a_manual_clock_advanced_from_another_thread_wakes_the_loop() -> None:
    clock = ManualClock(0.0)

    async def scenario() -> None:
        threading.Timer(0.05, clock.advance, args=(5.0,)).start()
        await asyncio.wait_for(sleep_until(clock, 5.0), timeout=5)

    asyncio.run(scenario())
    assert clock() == 5.0


def test_a_moment_already_past_returns_at_once() -> None:
    clock = ManualClock(10.0)
    asyncio.run(asyncio.wait_for(sleep_until(clock, 9.0), timeout=1))
    asyncio.run(asyncio.wait_for(sleep_until(time.time, time.time() - 1), timeout=1))


def test_a_real_clock_sleeps_until_the_moment() -> None:
    async def scenario() -> float:
        moment = time.time() + 0.05
        await sleep_until(time.time, moment)
        return time.time() - moment

    assert asyncio.run(scenario()) >= 0
