"""Two app processes whose clocks disagree by a minute still share one time: Redis's.

Real processes: one redis-server and two uvicorn apps (``tests.apps:app_from_env``), one whose clock
is 30 s behind and one 30 s ahead (``SR_CLOCK_SKEW``), as on two hosts with no NTP. Each sets its
clock to Redis's at startup, so every decision that crosses processes (a token minted on one and
checked on the other, a revocation announced by one and enforced by the other, a grace window opened
by one and closed by the other) comes out as if the clocks agreed. With the clocks taken as they are,
each of these tests fails: the token is "issued in the future", the revocation entry has already
expired on arrival, the old refresh token is still within grace a minute later.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

import httpx2
import pytest

from harness.processes import AppServer, RedisServer
from starlette_refresh.shared_clock import SharedClock
from starlette_refresh.store import RedisStore
from tests.integration.helpers import app_env, login, me, refresh
from tests.support.fixtures import AppServerFactory

pytestmark = pytest.mark.integration

SKEW = 30.0
GRACE = 2.0
# Short enough that a revocation entry stamped by the clock 30 s behind would already have expired on
# the clock 30 s ahead (access_ttl + leeway + 1 s < 60 s).
ACCESS_TTL = 20
LEEWAY = 10


@pytest.fixture
def apps(redis_server: RedisServer, app_server_factory: AppServerFactory) -> tuple[AppServer, AppServer]:
    """(behind, ahead): the same app, clocks 60 s apart."""
    settings = {"SR_GRACE": str(GRACE), "SR_ACCESS_TTL": str(ACCESS_TTL), "SR_LEEWAY": str(LEEWAY)}
    behind = app_server_factory(
        "tests.apps:app_from_env", app_env(redis_server, SR_CLOCK_SKEW=str(-SKEW), **settings), factory=True
    )
    ahead = app_server_factory(
        "tests.apps:app_from_env", app_env(redis_server, SR_CLOCK_SKEW=str(SKEW), **settings), factory=True
    )
    return behind, ahead


def test_each_process_says_how_far_off_its_clock_was(apps: tuple[AppServer, AppServer]) -> None:
    for app, skew in zip(apps, (-SKEW, SKEW), strict=True):
        log = app.log_text()
        assert f"this host's clock is {skew:+.1f}" in log, log
        offset_ms = re.search(r"clock set to Redis's: offset ([-+][\d.]+) ms", log)
        assert offset_ms is not None, log
        assert abs(float(offset_ms[1]) + skew * 1000) < 50, log


def test_a_token_minted_on_one_process_is_valid_on_the_other(apps: tuple[AppServer, AppServer]) -> None:
    behind, ahead = apps
    for issuer, checker in ((ahead, behind), (behind, ahead)):
        session = login(issuer)
        answer = me(checker, session["access_token"])
        assert answer.status_code == 200, answer.text


def test_a_logout_on_the_process_behind_revokes_on_the_process_ahead(
    apps: tuple[AppServer, AppServer],
) -> None:
    behind, ahead = apps
    session = login(ahead)
    assert me(ahead, session["access_token"]).status_code == 200
    logout = httpx2.post(f"{behind.url}/auth/logout", json={"refresh_token": session["refresh_token"]})
    assert logout.status_code == 204, logout.text
    deadline = time.monotonic() + 2
    while (answer := me(ahead, session["access_token"])).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error_description"] == "token revoked"


def test_the_grace_window_lasts_its_length_across_processes(apps: tuple[AppServer, AppServer]) -> None:
    behind, ahead = apps
    session = login(ahead)
    rotated = refresh(ahead, session["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    # Within the grace window a lost answer's retry gets the current tokens, on either process...
    assert refresh(behind, session["refresh_token"]).status_code == 200
    time.sleep(GRACE + 0.5)
    # ...and after it the old token is a reuse, on the process behind too: the session is revoked.
    reused = refresh(behind, session["refresh_token"])
    assert reused.status_code == 400, reused.text
    assert reused.json()["error"] == "invalid_grant"
    assert "already used" in reused.json()["error_description"]
    assert refresh(ahead, rotated.json()["refresh_token"]).status_code == 400


class SteppedClock:
    """This host's clock, off by ``skew`` seconds, which the test changes (an NTP step)."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def __call__(self) -> float:
        return time.time() + self.skew


def test_a_host_clock_stepped_while_running_is_set_again_by_the_next_check(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Against a real redis-server's TIME: set at start, stepped back 45 s, set again by the next
    check (every CHECK_INTERVAL_SECONDS in production; 50 ms here), with a warning naming the step."""
    host = SteppedClock(SKEW)
    clock = SharedClock(host)
    store = RedisStore(url=redis_server.url)

    async def scenario() -> None:
        await clock.calibrate(store)
        assert abs(clock() - time.time()) < 0.05
        checks = asyncio.create_task(clock.keep_calibrated(store, interval=0.05))
        host.skew = SKEW - 45
        deadline = time.monotonic() + 5
        while abs(clock() - time.time()) >= 0.05 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        checks.cancel()
        await store.close()

    with caplog.at_level(logging.WARNING, logger="starlette_refresh.clock"):
        asyncio.run(scenario())
    assert abs(clock() - time.time()) < 0.05, "the next check did not set the stepped clock again"
    assert any("moved -45.0" in r.getMessage() for r in caplog.records), caplog.text
