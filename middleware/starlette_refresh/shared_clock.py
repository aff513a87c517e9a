"""One time for every process of an app: each process's clock, set to Redis's.

Several decisions compare times written by different processes: a refresh's grace window is measured
from a rotation another process made, a session's idle expiry is written by one process and checked by
another, and an access token minted on one process is checked (and revoked) on another. A process
whose clock is behind by d would widen the grace window and every lifetime by d; one ahead by d would
let a token outlive its revocation by d. So every process reads its clock corrected by its offset from
Redis's ``TIME``, which every process reaches: the offset is measured at startup and again every
:data:`CHECK_INTERVAL_SECONDS`, from the best (shortest) of :data:`SAMPLES` round trips, so it is
right to within half that round trip plus what the host clock drifts between two checks.

A clock that every process already shares (``shared = True``, as on
:class:`starlette_refresh.testing.ManualClock`, which a test drives for every process at once) is used
as it is: measuring it against Redis would undo the test's moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from .clock import Clock
from .errors import StoreUnavailable

logger = logging.getLogger("starlette_refresh.clock")

#: Round trips per measurement; the shortest one bounds the error best.
SAMPLES = 5
#: How often a running process measures its offset again (real seconds).
CHECK_INTERVAL_SECONDS = 60.0
#: An offset this large (seconds) means the host's clock is not synchronised: said when first seen.
WARN_OFFSET_SECONDS = 1.0
#: How far apart two processes' clocks may be, once set, with no token outliving its revocation: a
#: revocation is kept this much longer than the tokens it stops. Setting leaves them within the sum of
#: their measurement errors (well under a millisecond on a LAN); this covers drift between checks.
CLOCK_AGREEMENT_SECONDS = 1.0
#: A change of the offset this large between two measurements means the host clock stepped.
WARN_STEP_SECONDS = 0.25


class TimeSource(Protocol):
    """What the clock needs of the store: Redis's own clock."""

    async def time(self) -> float: ...


def is_shared(clock: Clock) -> bool:
    """True for a clock every process of the app reads (a test's manual clock): it needs no setting."""
    return bool(getattr(clock, "shared", False))


class SharedClock:
    """The host clock ``local`` plus its measured offset from Redis's clock; a :data:`Clock`.

    Until :meth:`calibrate` has run it reads ``local`` unchanged.
    """

    def __init__(self, local: Clock) -> None:
        self._local = local
        self.offset = 0.0
        #: Half the round trip of the measurement in force: the most the offset can be wrong by
        #: (plus drift since). None until measured.
        self.error: float | None = None

    def __call__(self) -> float:
        return self._local() + self.offset

    async def calibrate(self, store: TimeSource) -> None:
        """Measures the offset from Redis's clock (:data:`SAMPLES` round trips, keeping the shortest);
        raises :class:`StoreUnavailable` when Redis does not answer."""
        best: tuple[float, float] | None = None  # (round trip, offset)
        for _ in range(SAMPLES):
            sent = self._local()
            server = await store.time()
            received = self._local()
            round_trip = max(0.0, received - sent)
            if best is None or round_trip < best[0]:
                best = (round_trip, server - (sent + received) / 2)
        assert best is not None
        round_trip, offset = best
        self._report(offset)
        self.offset, self.error = offset, round_trip / 2

    async def keep_calibrated(self, store: TimeSource, interval: float = CHECK_INTERVAL_SECONDS) -> None:
        """Measures again every ``interval`` seconds, until cancelled. A failed measurement keeps the
        offset in force: the store is down, and the next check measures again."""
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(StoreUnavailable):
                await self.calibrate(store)

    def _report(self, offset: float) -> None:
        if self.error is not None and abs(offset - self.offset) >= WARN_STEP_SECONDS:
            logger.warning(
                "this host's clock moved %+.3f s against Redis's since the last check (an NTP step, "
                "a suspended VM?); corrected from now on",
                self.offset - offset,
            )
        elif abs(offset) >= WARN_OFFSET_SECONDS > abs(self.offset):  # said once, when it gets that large
            logger.warning(
                "this host's clock is %+.3f s off Redis's; starlette-refresh corrects for it, but "
                "synchronise this host (NTP): other software on it trusts its clock",
                -offset,
            )
