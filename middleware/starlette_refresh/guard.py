"""The frame around every store operation: a time bound, a fair turn, outages named, metrics.

Each operation gets ``store_timeout`` in all, its wait for a turn included; at most
``store_max_connections`` run at once, admitted first come, first served; an outage becomes
:class:`~starlette_refresh.errors.StoreUnavailable`; and the operation's duration and outcome go to
the observer.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

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

    def __call__(self, operation: str) -> GuardedOperation:
        """``async with guard(operation) as bound`` runs the body as ``operation``; ``bound`` is its
        time bound (an :class:`asyncio.Timeout`)."""
        return GuardedOperation(self, operation)

    def report(self, operation: str, started: float, outcome: StoreOutcome) -> None:
        """Tells the observer (and a debug log) how long ``operation`` took and how it ended."""
        elapsed = stopwatch() - started
        self._observer.store_operation(operation, elapsed, outcome)
        if outcome == "ok" and logger.isEnabledFor(logging.DEBUG):
            fields = log_fields("store", outcome="ok", operation=operation)
            logger.debug("store %s ok in %.2f ms", operation, elapsed * 1000, extra=fields)

    def turns(self) -> asyncio.Semaphore:
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


class GuardedOperation:
    """One operation inside its :class:`OperationGuard`: entered once, by ``async with``.

    A class rather than ``@asynccontextmanager`` generators: every store operation (a refresh's
    rotation among them) goes through here, and two nested generator managers took 9.4 µs to enter
    and leave, this 5.8 µs, most of it ``asyncio.timeout``'s timer.
    """

    __slots__ = ("_bound", "_guard", "_operation", "_started", "_turns")

    def __init__(self, guard: OperationGuard, operation: str) -> None:
        self._guard = guard
        self._operation = operation

    async def __aenter__(self) -> asyncio.Timeout:
        self._started = stopwatch()
        try:
            # Entered before the wait for a turn: the operation's one time bound covers both.
            bound = asyncio.timeout(self._guard.timeout)
            await bound.__aenter__()
        except Exception:  # not inside a task: a bug of ours
            self._guard.report(self._operation, self._started, "error")
            raise
        turns = self._guard.turns()
        try:
            await turns.acquire()
        except BaseException as exc:  # the bound ran out while waiting, or the task was cancelled
            await self._leave(bound, exc)
            raise
        self._bound, self._turns = bound, turns
        return bound

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._turns.release()
        await self._leave(self._bound, exc)

    async def _leave(self, bound: asyncio.Timeout, exc: BaseException | None) -> None:
        """Leaves the time bound and reports how the operation ended; raises what the caller sees
        instead of ``exc`` (StoreUnavailable for an outage), or returns to let ``exc`` stand."""
        try:
            await bound.__aexit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)
        except Exception as expired:  # TimeoutError: the bound ran out, and exc is the cancellation
            self._failed(expired)
            raise
        if exc is None:
            self._guard.report(self._operation, self._started, "ok")
        elif isinstance(exc, Exception):  # not BaseException: a cancellation says nothing about the store
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        """Reports a failure; raises StoreUnavailable for an outage, else returns to let ``exc`` surface."""
        operation, timeout = self._operation, self._guard.timeout
        outage = outage_of(exc, operation, timeout)
        if outage is None:
            # A bug of ours or a command Redis refuses: surface it, do not retry it.
            outcome: StoreOutcome = "unavailable" if isinstance(exc, StoreUnavailable) else "error"
            self._guard.report(operation, self._started, outcome)
            return
        fields = log_fields("store", outcome="unavailable", operation=operation)
        logger.warning("store %s %s", operation, outage.logged, extra=fields)
        self._guard.report(operation, self._started, "unavailable")
        raise StoreUnavailable(outage.reported) from exc
