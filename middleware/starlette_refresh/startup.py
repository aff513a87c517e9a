"""When the library starts: on the ASGI ``lifespan`` startup, or on the first request when none comes.

Starlette, Litestar and Quart send ``lifespan``; Django's ASGI handler refuses it, and many plain ASGI
apps and some servers never see one. Without a start the app would serve with a store nobody checked
and no revocation feed, so a logout on one process would never reach another. So a process that gets
a request before any start starts itself then, with the same checks, and until it has started it
answers every request ``503``: never a silent downgrade.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .errors import ConfigurationError, StoreUnavailable

logger = logging.getLogger("starlette_refresh.startup")

Hook = Callable[[], Awaitable[None]]

# Failures whose message says what to do (Redis down, a store the checks refused); anything else is
# a bug, logged with its traceback.
_EXPECTED = (StoreUnavailable, ConfigurationError)

# WARNING, not INFO: it is said once per process, and it must be seen where nobody configured logging
# (Python then prints WARNING and above only). It is no fault, but it changes what an operator can
# rely on: a store down at boot shows as 503 answers instead of a failed deploy, and no shutdown
# closes the store's connections.
FIRST_REQUEST_START = (
    "starlette-refresh started on the first request: no ASGI lifespan startup reached it (Django's "
    "ASGI handler and some servers send none). It ran the startup checks then; it has no shutdown "
    "hook, so its background tasks and store connections end with the event loop and the process."
)


class Startup:
    """Runs the library's ``start`` (one per TokenAuth) before any request is served.

    The middleware calls :meth:`start` on the lifespan startup and :meth:`stop` on its shutdown.
    When a request comes first, :meth:`start_on_request` starts it: concurrent first requests wait
    for one attempt, and a failed attempt is logged and raised to each of them; the next request
    tries again.
    """

    def __init__(self, start: Hook, stop: Hook) -> None:
        self._start = start
        self._stop = stop
        #: True once a start has succeeded, until :meth:`stop`; the middleware reads it per request.
        self.started = False
        self._attempt: asyncio.Future[None] | None = None
        self._said_first_request = False

    async def start(self) -> None:
        """Starts the library (the lifespan startup, or a direct call); raises when it cannot."""
        await self._start()
        self.started = True

    async def stop(self) -> None:
        """Stops the library (the lifespan shutdown, or a direct call)."""
        self.started = False
        await self._stop()

    async def start_on_request(self) -> None:
        """Starts the library for a request that came before any start; raises what the start
        raised when it failed (it has been logged). Returns at once when it has started."""
        if self.started:
            return
        attempt = self._attempt
        if attempt is None:
            attempt = self._attempt = asyncio.ensure_future(self._start_on_request())
            # Retrieve the outcome even when every waiting request has gone (disconnected clients),
            # so that asyncio never reports "exception was never retrieved".
            attempt.add_done_callback(_retrieve)
        try:
            # Shielded: a client that disconnects must not cancel the start the others wait for.
            await asyncio.shield(attempt)
        finally:
            if attempt.done() and self._attempt is attempt:
                self._attempt = None  # after a failure, the next request tries again

    async def _start_on_request(self) -> None:
        try:
            await self.start()
        except Exception as exc:
            logger.error(
                "starlette-refresh could not start on the first request (no ASGI lifespan startup "
                "came): %s. Answering 503 until it starts; the next request tries again.",
                str(exc).rstrip("."),
                exc_info=None if isinstance(exc, _EXPECTED) else exc,
            )
            raise
        if not self._said_first_request:
            self._said_first_request = True
            logger.warning(FIRST_REQUEST_START)


def _retrieve(attempt: asyncio.Future[None]) -> None:
    if not attempt.cancelled():
        attempt.exception()
