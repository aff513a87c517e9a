"""How long Redis may still take over a command, on our clock and on Redis's own.

A store operation has one time bound (``store_timeout``), its wait for a turn included. Two things
must end inside it: a rotation, which carries its deadline on Redis's clock so that a call Redis
runs too late changes nothing (the client, already answered 503, retries with the same token); and
a login's or revocation's ``WAIT`` for replicas, which must answer "replicas behind" before we give
up on the command (a command we give up on costs its connection).
"""

from __future__ import annotations

import asyncio
from typing import Any

from .clock import real_time

# How long before our own timeout a rotation must have run, so that its answer can still reach us.
_DEADLINE_MARGIN = 0.1
# How late a WAIT may answer after its timeout: Redis times blocked clients out on its event loop's
# ticks, 1/hz apart (hz 10 by default). Measured: WAIT 1 350 answered after 400 ms, WAIT 1 400 after
# up to 499 ms.
_WAIT_OVERSHOOT = 0.1


class Deadlines:
    """Turns an operation's time bound into a deadline on Redis's clock and a ``WAIT`` budget."""

    def __init__(self, timeout: float, replica_ack_timeout: float) -> None:
        self._timeout = timeout
        self._wait_ms = max(1, int(replica_ack_timeout * 1000))
        self._redis_clock_offset: float | None = None  # Redis TIME minus our real time, seconds

    @property
    def calibrated(self) -> bool:
        """True once Redis's clock has been measured (and not forgotten since)."""
        return self._redis_clock_offset is not None

    async def calibrate(self, redis: Any) -> None:
        """Measures how far Redis's clock is from ours, so rotation deadlines mean the same on both."""
        sent = real_time()
        seconds, micros = await redis.time()
        received = real_time()
        self._redis_clock_offset = seconds + micros / 1e6 - (sent + received) / 2

    def forget(self) -> None:
        """Measure again before the next rotation: the clocks may have moved apart."""
        self._redis_clock_offset = None

    def redis_deadline_ms(self, bound: asyncio.Timeout) -> int:
        """The last moment, on Redis's clock, at which a command may still run and its answer reach us
        before ``bound`` (the operation's timeout) gives up on it.

        Counted from the timeout itself, not from now: an operation may already have spent most of
        its time waiting for a connection, and a rotation Redis ran after we had answered 503 would
        leave the client holding a token one generation behind.
        """
        assert self._redis_clock_offset is not None
        return int((real_time() + self._redis_clock_offset + self._seconds_left(bound)) * 1000)

    def wait_ms(self, bound: asyncio.Timeout) -> int:
        """How long a login's or revocation's ``WAIT`` may last: ``replica_ack_timeout`` at most, and
        never past ``bound``, less the time Redis may answer a WAIT late (never 0, which waits forever)."""
        left_ms = int((self._seconds_left(bound) - _WAIT_OVERSHOOT) * 1000)
        return max(1, min(self._wait_ms, left_ms))

    def _seconds_left(self, bound: asyncio.Timeout) -> float:
        """How long Redis may still take over a command before ``bound`` expires, keeping the margin
        its answer needs to reach us (negative once too little is left)."""
        expires_at = bound.when()
        assert expires_at is not None
        margin = min(_DEADLINE_MARGIN, self._timeout / 2)
        return expires_at - asyncio.get_running_loop().time() - margin
