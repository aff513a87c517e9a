"""Fixtures shared by every suite. Real-process fixtures live in tests/support/fixtures.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
from starlette.testclient import TestClient

from starlette_refresh import TokenAuth
from starlette_refresh.testing import ManualClock
from tests.apps import SECRET, build_app

pytest_plugins = ["tests.support.fixtures", "tests.support.topology_fixtures"]


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when the test says so."""
    return ManualClock(1_800_000_000.0)


@pytest.fixture
def fake_server() -> fakeredis.FakeServer:
    """The fakeredis server behind ``fake_redis``; ``connected = False`` emulates an outage."""
    return fakeredis.FakeServer()


@pytest.fixture
def fake_redis(fake_server: fakeredis.FakeServer) -> fakeredis.aioredis.FakeRedis:
    """A fresh fakeredis (with Lua) client for fast unit tests, on ``fake_server``."""
    return fakeredis.aioredis.FakeRedis(server=fake_server)


@pytest.fixture
def make_auth(clock: ManualClock, fake_redis: Any) -> Callable[..., TokenAuth]:
    """Builds a TokenAuth on fakeredis and the manual clock; keyword arguments override defaults."""

    def make(**overrides: Any) -> TokenAuth:
        options: dict[str, Any] = {
            "secret_key": SECRET,
            "redis": fake_redis,
            "clock": clock,
            "exclude": ["/login", "/public"],
            "access_ttl": 300,
            "refresh_ttl": 3600,
            "absolute_ttl": 86_400,
            "refresh_grace": 10,
        }
        options.update(overrides)
        return TokenAuth(**options)

    return make


@pytest.fixture
def auth(make_auth: Callable[..., TokenAuth]) -> TokenAuth:
    """The default TokenAuth of the unit suites."""
    return make_auth()


@pytest.fixture
def client(auth: TokenAuth) -> Iterator[TestClient]:
    """A TestClient (https, so Secure cookies round-trip) with the app's lifespan running."""
    with TestClient(build_app(auth), base_url="https://testserver") as test_client:
        yield test_client
