"""Constants and helpers of the store suites (their fixtures are in conftest.py)."""

from __future__ import annotations

from starlette_refresh.sessions import SessionService
from starlette_refresh.store import RedisStore

REFRESH_TTL = 3600
ABSOLUTE_TTL = 4 * 3600
GRACE = 10


def store_of(service: SessionService) -> RedisStore:
    assert isinstance(service.store, RedisStore)
    return service.store
