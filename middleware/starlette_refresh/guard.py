"""The frame around every store operation: a time bound, a fair turn, outages named, metrics.

Each operation gets ``store_timeout`` in all, its wait for a turn included; at most
``store_max_connections`` run at once, admitted first come, first served; an outage becomes
:class:`~starlette_refresh.errors.StoreUnavailable`; and the operation's duration and outcome go to
the observer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .clock import stopwatch
from .errors import StoreUnavailable
from .observe import Observer, StoreOutcome, log_fields
from .outages import outage_of

logger = logging.getLogger("starlette_refresh.store")


class OperationGuard:
    """Bounds, admits, classifies and measures store operations (see the module's docstring)."""

    def __init__(self, timeout: float, max_connections: int, observer: Observer) -> None:
        self.timeout = timeout
        self._max_connections = max_connections
        self._observer = observer
        self._turns: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    @asynccontextmanager
    async def __call__(self, operation: str) -> AsyncIterator[asyncio.Timeout]:
        """Runs the body as ``operation``, yielding its time bound."""
        started = stopwatch()
        try:
            async with self._bounded(operation) as bound:
                yield bound
        except StoreUnavailable:
            self._report(operation, started, "unavailable")
            raise
        except Exception:  # not BaseException: a cancelled operation says nothing about the store
            self._report(operation, started, "error")
            raise
        self._report(operation, started, "ok")

    def _report(self, operation: str, started: float, outcome: StoreOutcome) -> None:
        elapsed = stopwatch() - started
        self._observer.store_operation(operation, elapsed, outcome)
        if outcome == "ok" and logger.isEnabledFor(logging.DEBUG):
            fields = log_fields("store", outcome="ok", operation=operation)
            logger.debug("store %s ok in %.2f ms", operation, elapsed * 1000, extra=fields)

    @asynccontextmanager
    async def _bounded(self, operation: str) -> AsyncIterator[asyncio.Timeout]:
        try:
            async with asyncio.timeout(self.timeout) as bound, self._admission():
                yield bound
        except Exception as exc:
            outage = outage_of(exc, operation, self.timeout)
            if outage is None:
                raise  # a bug of ours or a command Redis refuses: surface it, do not retry it
            fields = log_fields("store", outcome="unavailable", operation=operation)
            logger.warning("store %s %s", operation, outage.logged, extra=fields)
            raise StoreUnavailable(outage.reported) from exc

    def _admission(self) -> asyncio.Semaphore:
        """Admits at most ``max_connections`` operations at once, in arrival order.

        redis-py's blocking pool is not fair: a task that has just released a connection can take it
        straight back before a waiting task wakes, so under a burst some requests waited out the whole
        timeout (503) while Redis was idle. asyncio's semaphore queues waiters first in, first out.
        One per event loop, because a semaphore belongs to the loop it first waited in.
        """
        loop = asyncio.get_running_loop()
        if self._turns is None or self._turns[0] is not loop:
            self._turns = (loop, asyncio.Semaphore(self._max_connections))
        return self._turns[1]
