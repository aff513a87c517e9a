"""The one place server code reads the time from.

Every component takes a :data:`Clock` (a zero-argument callable returning POSIX seconds) so tests
can drive token lifetimes, grace windows and expiries without sleeping. Code that must wait for a
moment on that clock (an open WebSocket ending with its token) calls :func:`sleep_until`, which a
clock with a ``wait_until`` method (:class:`starlette_refresh.testing.ManualClock`) ends when it is
advanced past the moment. Two other clocks live here too, for what an injected clock must not
drive: :data:`real_time` to compare with Redis's own clock, and :data:`stopwatch` to time store
operations.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
"""Returns the current time as POSIX seconds (like :func:`time.time`)."""

system_clock: Clock = time.time

#: The host's real wall clock, whatever clock the app injected: only for comparing with another real
#: clock (Redis ``TIME``, which decides when a rotation arrives too late).
real_time: Clock = time.time

#: Seconds on a clock that never jumps, for durations (how long a store operation took).
stopwatch: Callable[[], float] = time.perf_counter

#: The longest single sleep on a real clock: the wall clock can jump (NTP, a suspended host), so a
#: long wait re-reads it now and then instead of trusting one timer.
MAX_SLEEP_SECONDS = 30.0


async def sleep_until(clock: Clock, moment: float) -> None:
    """Returns once ``clock()`` has reached ``moment``.

    A clock with a ``wait_until(moment)`` coroutine method (a manual clock in tests) is asked to wake
    the sleeper itself; any other clock is polled with timers of at most :data:`MAX_SLEEP_SECONDS`.
    """
    wait_until: Callable[[float], Awaitable[None]] | None = getattr(clock, "wait_until", None)
    if wait_until is not None:
        await wait_until(moment)
        return
    # Polling is the point: nothing signals the wall clock reaching a moment.
    while (left := moment - clock()) > 0:  # noqa: ASYNC110
        await asyncio.sleep(min(left, MAX_SLEEP_SECONDS))
