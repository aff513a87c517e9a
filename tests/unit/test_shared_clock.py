"""Each process sets its clock to Redis's, so that processes with skewed clocks share one time.

fakeredis answers ``TIME`` with this host's real clock, so a clock injected with a skew plays a host
whose clock is off; the two-process version, on real uvicorn processes and a real redis-server, is
tests/integration/test_clock_skew.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from starlette_refresh import StoreUnavailable, TokenAuth
from starlette_refresh.shared_clock import SharedClock, is_shared
from starlette_refresh.testing import ManualClock
from tests.apps import build_app

# How close a set clock must come to Redis's: the measurement's error is half a round trip to
# fakeredis (microseconds); this leaves room for a slow, loaded test machine.
CLOSE = 0.05


class SkewedClock:
    """This host's clock, off by ``skew`` seconds (adjustable: an NTP step)."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def __call__(self) -> float:
        return time.time() + self.skew


class FlakyTimeSource:
    """Redis's clock (this host's), or an outage while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    async def time(self) -> float:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("store down")
        return time.time()


async def until(condition: Callable[[], bool]) -> None:
    # Polling: the checks run on their own timer and signal nothing.
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("skew", [-3600.0, -2.5, 0.0, 0.4, 86_400.0])
def test_a_skewed_clock_is_set_to_redis_time(skew: float) -> None:
    clock = SharedClock(SkewedClock(skew))
    assert abs(clock() - time.time() - skew) < CLOSE  # unset: the host's clock as it is
    asyncio.run(clock.calibrate(FlakyTimeSource()))
    assert abs(clock() - time.time()) < CLOSE
    assert clock.error is not None
    assert 0 <= clock.error < CLOSE


def test_a_host_clock_far_off_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = SharedClock(SkewedClock(120.0))
    source = FlakyTimeSource()
    with caplog.at_level(logging.INFO, logger="starlette_refresh.clock"):
        asyncio.run(clock.calibrate(source))
        asyncio.run(clock.calibrate(source))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "this host's clock is +120.0" in warnings[0]
    assert "synchronise this host" in warnings[0]


def test_a_step_of_the_host_clock_is_corrected_at_the_next_check_and_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = SkewedClock(0.0)
    clock = SharedClock(host)
    source = FlakyTimeSource()
    asyncio.run(clock.calibrate(source))
    host.skew = -30.0  # NTP stepped this host's clock back
    assert abs(clock() - (time.time() - 30)) < CLOSE  # until the next check, the step shows
    with caplog.at_level(logging.WARNING, logger="starlette_refresh.clock"):
        asyncio.run(clock.calibrate(source))
    assert abs(clock() - time.time()) < CLOSE
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "moved -30.0" in warning


def test_checks_go_on_through_an_outage_keeping_the_offset_in_force() -> None:
    host = SkewedClock(10.0)
    clock = SharedClock(host)
    source = FlakyTimeSource()

    async def scenario() -> None:
        await clock.calibrate(source)
        checks = asyncio.create_task(clock.keep_calibrated(source, interval=0.01))
        source.down = True
        host.skew = 20.0
        calls = source.calls
        await until(lambda: source.calls >= calls + 3)  # several checks fail...
        assert abs(clock() - (time.time() + 10)) < CLOSE  # ...and the offset in force stays
        source.down = False
        await until(lambda: abs(clock() - time.time()) < CLOSE)  # the first check after it sets it
        checks.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_token_auth_sets_an_injected_clock_but_not_a_shared_manual_one(
    make_auth: Callable[..., TokenAuth],
) -> None:
    manual = ManualClock(1_800_000_000.0)
    assert is_shared(manual)
    assert make_auth(clock=manual).clock is manual
    skewed = make_auth(clock=SkewedClock(-45.0))
    assert isinstance(skewed.clock, SharedClock)


def test_startup_sets_the_clock_before_any_request_and_tokens_carry_redis_time(
    make_auth: Callable[..., TokenAuth], caplog: pytest.LogCaptureFixture
) -> None:
    auth = make_auth(clock=SkewedClock(-600.0))
    with caplog.at_level(logging.INFO), TestClient(build_app(auth), base_url="https://testserver") as client:
        issued = client.post("/login", json={"transport": "body"}).json()
        claims: dict[str, Any] = auth.verify_access_token(issued["access_token"])
    assert abs(claims["iat"] - time.time()) <= 1 + CLOSE  # Redis's time, not the host's 10 min behind
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("clock set to Redis's: offset +600") for m in messages), messages
    # set before the revocation feed loaded anything: that load reads the time too
    set_at = next(i for i, m in enumerate(messages) if m.startswith("clock set"))
    feed_at = next(i for i, m in enumerate(messages) if m.startswith("revocation feed live"))
    assert set_at < feed_at


def test_shutdown_stops_the_clock_checks(make_auth: Callable[..., TokenAuth]) -> None:
    auth = make_auth(clock=SkewedClock(0.0))
    with TestClient(build_app(auth), base_url="https://testserver"):
        checks = auth._clock_checks
        assert checks is not None
        assert not checks.done()
    assert checks.done()
    assert auth._clock_checks is None
