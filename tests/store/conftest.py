"""The store suites' fixtures: every test runs on fakeredis and on a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis

from harness.processes import RedisServer
from starlette_refresh import TokenAuth
from starlette_refresh.sessions import SessionService
from starlette_refresh.testing import ManualClock
from tests.apps import SECRET
from tests.store.helpers import ABSOLUTE_TTL, GRACE, REFRESH_TTL


@pytest.fixture(scope="module")
def real_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(Path(tmp_path_factory.mktemp("redis-rules")))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


# The redis-server variant carries the integration mark (it needs a real server), so
# ``-m "not integration"`` (tests/run --quick) keeps only the fakeredis one.
@pytest.fixture(params=["fakeredis", pytest.param("redis-server", marks=pytest.mark.integration)])
def anyio_backend_redis(request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, request


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def redis_client(anyio_backend_redis: tuple[str, Any]) -> AsyncIterator[Any]:
    kind, request = anyio_backend_redis
    if kind == "fakeredis":
        client: Any = fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer())
    else:
        client = aioredis.Redis.from_url(request.getfixturevalue("real_redis_url"))
        await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000.0)


@pytest.fixture
async def service(redis_client: Any, clock: ManualClock) -> SessionService:
    auth = TokenAuth(
        secret_key=SECRET,
        redis=redis_client,
        clock=clock,
        access_ttl=300,
        refresh_ttl=REFRESH_TTL,
        absolute_ttl=ABSOLUTE_TTL,
        refresh_grace=GRACE,
        max_sessions_per_user=3,
    )
    await auth.startup()
    return auth.sessions
