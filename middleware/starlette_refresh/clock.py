"""The one place server code reads the time from.

Every component takes a :data:`Clock` (a zero-argument callable returning POSIX seconds) so tests
can drive token lifetimes, grace windows and expiries without sleeping. Code that must wait for a
moment on that clock (an open WebSocket ending with its token) calls :func:`sleep_until`, which a
:class:`ManualClock` ends when it is advanced past the moment.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Returns the current time as POSIX seconds (like :func:`time.time`)."""

system_clock: Clock = time.time

#: The longest single sleep on a real clock: the wall clock can jump (NTP, a suspended host), so a
#: long wait re-reads it now and then instead of trusting one timer.
MAX_SLEEP_SECONDS = 30.0


async def sleep_until(clock: Clock, moment: float) -> None:
    """Returns once ``clock()`` has reached ``moment``.

    A :class:`ManualClock` wakes the sleeper when advanced; any other clock is polled with timers of
    at most :data:`MAX_SLEEP_SECONDS`.
    """
    if isinstance(clock, ManualClock):
        await clock.wait_until(moment)
        return
    # Polling is the point: nothing signals the wall clock reaching a moment.
    while (left := moment - clock()) > 0:  # noqa: ASYNC110
        await asyncio.sleep(min(left, MAX_SLEEP_SECONDS))


class ManualClock:
    """A clock that only moves when told to; handy in tests and simulations.

    ``advance`` may be called from any thread (a test drives the clock while the app runs in the
    TestClient's event loop thread); tasks waiting in :meth:`wait_until` are woken in their own loop.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = float(start)
        self._lock = threading.Lock()
        self._sleepers: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``, waking the tasks waiting in :meth:`wait_until`."""
        with self._lock:
            self.now += seconds
            sleepers, self._sleepers = self._sleepers, []
        for loop, sleeper in sleepers:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_wake, sleeper)

    async def wait_until(self, moment: float) -> None:
        """Returns once the clock has been advanced to ``moment`` or beyond."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self.now >= moment:
                    return
                sleeper: asyncio.Future[None] = loop.create_future()
                self._sleepers.append((loop, sleeper))
            await sleeper


def _wake(sleeper: asyncio.Future[None]) -> None:
    if not sleeper.done():
        sleeper.set_result(None)
