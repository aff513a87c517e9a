"""FormatWatch: format 1 at once when a process of 0.1 appears, format 2 only after two readings
without one (or the first reading, at startup), format 2 with a warning when PUBSUB is refused."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis import exceptions as redis_errors

from starlette_refresh.format_watch import FormatWatch


class CountingStore:
    """Answers ``older_processes`` from a script of readings (an exception is raised)."""

    def __init__(self, *readings: int | Exception) -> None:
        self.readings = list(readings)
        self.write_format = 2

    async def older_processes(self) -> int:
        reading = self.readings.pop(0)
        if isinstance(reading, Exception):
            raise reading
        return reading


def formats_after(store: CountingStore, checks: int) -> list[int]:
    watch = FormatWatch(store)

    async def run() -> list[int]:
        seen = []
        for n in range(checks):
            await watch.check(first=n == 0)
            seen.append(store.write_format)
        return seen

    return asyncio.run(run())


def test_the_first_reading_decides_alone() -> None:
    assert formats_after(CountingStore(0, 0), 2) == [2, 2]
    assert formats_after(CountingStore(1, 1), 2) == [1, 1]


def test_format1_at_once_and_format2_after_two_clear_readings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "starlette_refresh.store")
    store = CountingStore(0, 2, 0, 1, 0, 0, 0)
    assert formats_after(store, 7) == [2, 1, 1, 1, 1, 2, 2]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "2 process(es) of starlette-refresh 0.1 share this store: writing sessions in format 1, which they "
        "read, until they are gone"
    ]
    assert any(
        "writing sessions in format 2" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO
    )


def test_a_refused_pubsub_writes_format2_and_says_what_to_allow(caplog: pytest.LogCaptureFixture) -> None:
    store = CountingStore(redis_errors.ResponseError("NOPERM this user has no permissions to run 'pubsub'"))
    store.write_format = 1
    assert formats_after(store, 1) == [2]
    assert "allow PUBSUB for a rolling upgrade from 0.1" in caplog.text
