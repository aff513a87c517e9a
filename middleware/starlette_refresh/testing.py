"""Helpers for testing an app that uses starlette-refresh.

:class:`ManualClock` drives token lifetimes, grace windows and session expiries without sleeping::

    from starlette_refresh import TokenAuth
    from starlette_refresh.testing import ManualClock

    clock = ManualClock()
    auth = TokenAuth(secret_key=SECRET, redis_url=REDIS_URL, clock=clock)
    ...
    clock.advance(auth.settings.access_ttl)   # every access token issued so far has now expired

:func:`fingerprint` gives the short tag that the library's log lines carry instead of a token, so a
test can find a token's traces in the logs (and check that the token itself never appears).

Nothing in the library imports this module.
"""

from __future__ import annotations

import asyncio
import threading

from .refresh_tokens import fingerprint

__all__ = ["ManualClock", "fingerprint"]


class ManualClock:
    """A clock that only moves when told to; handy in tests and simulations.

    ``advance`` may be called from any thread (a test drives the clock while the app runs in the
    TestClient's event loop thread); tasks waiting in :meth:`wait_until` are woken in their own loop.
    """

    #: Every process of a test reads this one clock, so the app uses it as it is and does not set it
    #: to Redis's (see :mod:`starlette_refresh.shared_clock`): that would undo the test's moves.
    shared = True

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
