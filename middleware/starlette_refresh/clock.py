"""The one place server code reads the time from.

Every component takes a :data:`Clock` (a zero-argument callable returning POSIX seconds) so tests
can drive token lifetimes, grace windows and expiries without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Returns the current time as POSIX seconds (like :func:`time.time`)."""

system_clock: Clock = time.time


class ManualClock:
    """A clock that only moves when told to; handy in tests and simulations."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds
