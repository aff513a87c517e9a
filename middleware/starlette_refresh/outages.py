"""Which Redis failures are outages: what a retry can cure, as opposed to a mistake of ours.

An outage (refused or dropped connections, timeouts, a server that is loading, read-only, busy or out
of memory, a cluster that is down) becomes :class:`~starlette_refresh.errors.StoreUnavailable`, which
the endpoints answer with 503 and the revocation feed answers with a reconnect; it is never mistaken
for an expired session. Anything else (a command Redis refuses, a bug of ours) is left to surface.
"""

from __future__ import annotations

import os
import traceback

import redis
from redis import exceptions as redis_errors

# ResponseError prefixes that mean "not now" rather than "this command is wrong".
_TRANSIENT_PREFIXES = (
    "BUSY",
    "LOADING",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "READONLY",
    "OOM",
    "NOREPLICAS",  # min-replicas-to-write not met: a fenced primary during a planned failover
)

# Redis errors that always mean "not now", whatever their text.
_TRANSIENT_ERRORS = (
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.MasterDownError,
    redis_errors.OutOfMemoryError,
    redis_errors.ReadOnlyError,
)

_CLIENT_PACKAGE = os.path.dirname(redis.__file__) + os.sep
_OUR_PACKAGE = os.path.dirname(__file__) + os.sep


class Outage:
    """How to report one outage: ``logged`` for our log line, ``reported`` for the error's text."""

    __slots__ = ("logged", "reported")

    def __init__(self, logged: str, reported: str) -> None:
        self.logged = logged
        self.reported = reported


def outage_of(exc: BaseException, operation: str, timeout: float) -> Outage | None:
    """The outage ``exc`` stands for, when a retry can cure it; None for anything else.

    ``operation`` and ``timeout`` (seconds) only word the texts of a timeout.
    """
    described = describe(exc)
    if isinstance(exc, TimeoutError | redis_errors.TimeoutError):
        reported = f"Redis did not answer {operation} within {timeout}s"
        return Outage(f"timed out after {timeout:.1f}s", reported)
    if isinstance(exc, redis_errors.ConnectionError | OSError):
        return Outage(f"failed: {described}", f"Redis is unreachable: {described}")
    refused = Outage(f"refused: {described}", f"Redis cannot serve now: {described}")
    if isinstance(exc, _TRANSIENT_ERRORS):
        return refused
    if isinstance(exc, redis_errors.ResponseError):
        return refused if str(exc).upper().startswith(_TRANSIENT_PREFIXES) else None
    if isinstance(exc, redis_errors.CrossSlotTransactionError | redis_errors.InvalidPipelineStack):
        return None
    if isinstance(exc, redis_errors.RedisClusterException):
        if "blocked when running redis in cluster mode" in str(exc):
            return None  # a command redis-py refuses on Cluster: our mistake
        return Outage(f"failed: {described}", f"Redis Cluster is unavailable: {described}")
    if isinstance(exc, AttributeError | RuntimeError | TypeError) and _raised_inside_the_client(exc):
        # redis-py's Cluster client can trip over a connection that a concurrent command tore
        # down while a node died (a None writer, a closed transport): an outage, not a 500.
        return Outage(f"failed inside the Redis client: {described}", f"the Redis client failed: {described}")
    return None


def describe(exc: BaseException) -> str:
    """``Type: message``, or the type alone for an exception without a message."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _raised_inside_the_client(exc: BaseException) -> bool:
    """True when ``exc`` came from inside redis-py: raised below its first redis-py frame, with none
    of our code in between (what lies below is redis-py's, or the event loop's it drives)."""
    files = [frame.f_code.co_filename for frame, _ in traceback.walk_tb(exc.__traceback__)]
    entry = next((i for i, name in enumerate(files) if name.startswith(_CLIENT_PACKAGE)), None)
    return entry is not None and not any(name.startswith(_OUR_PACKAGE) for name in files[entry:])
