"""Revocation reaches access tokens on every app process within a second, and survives lost writes."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

import httpx2
import pytest

from harness.processes import AppServer
from tests.faults.load import SHARED_TLS
from tests.integration.helpers import app_env, login, me, refresh
from tests.support.fixtures import AppServerFactory, RedisServerFactory

APP = "tests.apps:app_from_env"


def seconds_until_refused(app: AppServer, access_token: str, limit: float = 3.0) -> float:
    """Polls the protected route until the token is refused as revoked; returns how long it took.

    One keep-alive client, so that a poll costs a millisecond or two rather than a new connection.
    """
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {access_token}"}
    with httpx2.Client(timeout=10, verify=SHARED_TLS) as client:
        while time.monotonic() - started < limit:
            answer = client.get(f"{app.url}/me", headers=headers)
            if answer.status_code == 401:
                assert answer.json() == {"error": "invalid_token", "error_description": "token revoked"}
                return time.monotonic() - started
            assert answer.status_code == 200
            time.sleep(0.005)
    raise AssertionError(f"the access token still worked {limit}s after its session was revoked")


def logout(app: AppServer, issued: dict[str, str]) -> None:
    body = {"refresh_token": issued["refresh_token"]}
    answer = httpx2.post(f"{app.url}/auth/logout", json=body, timeout=10)
    assert answer.status_code == 204


def logout_all(app: AppServer, issued: dict[str, str]) -> None:
    headers = {"Authorization": f"Bearer {issued['access_token']}"}
    assert httpx2.post(f"{app.url}/auth/logout-all", headers=headers, timeout=10).status_code == 204


def revoke_from_another_session(app: AppServer, issued: dict[str, str]) -> None:
    other = login(app)
    sid = me(app, issued["access_token"]).json()["sid"]
    headers = {"Authorization": f"Bearer {other['access_token']}"}
    assert httpx2.delete(f"{app.url}/auth/sessions/{sid}", headers=headers, timeout=10).status_code == 204


def reuse_after_grace(app: AppServer, issued: dict[str, str]) -> None:
    assert refresh(app, issued["refresh_token"]).status_code == 200
    time.sleep(1.1)  # the apps run with a 1 s grace window
    assert refresh(app, issued["refresh_token"]).status_code == 400


REVOCATIONS: dict[str, Callable[[AppServer, dict[str, str]], None]] = {
    "logout": logout,
    "logout-all": logout_all,
    "session-revoke": revoke_from_another_session,
    "reuse-detected": reuse_after_grace,
}


@pytest.mark.parametrize("revoke", REVOCATIONS.values(), ids=REVOCATIONS.keys())
def test_revocation_reaches_the_other_process_within_a_second(
    revoke: Callable[[AppServer, dict[str, str]], None],
    redis_server_factory: RedisServerFactory,
    app_server_factory: AppServerFactory,
) -> None:
    redis = redis_server_factory()
    one, two = (app_server_factory(APP, app_env(redis, SR_GRACE="1"), factory=True) for _ in range(2))
    issued = login(one)
    assert me(two, issued["access_token"]).status_code == 200
    revoke(one, issued)
    elapsed = seconds_until_refused(two, issued["access_token"])
    assert elapsed < 1.0
    assert me(one, issued["access_token"]).status_code == 401  # and at once where it happened


def test_a_process_catches_up_after_its_feed_reconnects(
    redis_server_factory: RedisServerFactory, app_server_factory: AppServerFactory
) -> None:
    redis = redis_server_factory()
    one, two = (app_server_factory(APP, app_env(redis), factory=True) for _ in range(2))
    issued = login(one)
    redis.kill()
    wait_until(lambda: httpx2.get(f"{two.url}/health", timeout=5).json()["revocations"] == "stale")
    assert me(two, issued["access_token"]).status_code == 200  # an outage logs nobody out
    redis.restart()
    wait_until(lambda: httpx2.get(f"{two.url}/health", timeout=5).json()["revocations"] == "live")
    logout(one, issued)
    assert seconds_until_refused(two, issued["access_token"]) < 1.0


def test_lost_writes_never_resurrect_a_revoked_session(
    redis_server_factory: RedisServerFactory, app_server_factory: AppServerFactory
) -> None:
    """Redis restored from a snapshot older than a rotation and a logout: the rotated session carries
    on from its newer token, and the logged-out session stays revoked, even after the app restarts."""
    redis = redis_server_factory(appendonly=False)
    app = app_server_factory(APP, app_env(redis), factory=True)
    kept, ended = login(app, subject="kept"), login(app, subject="ended")
    redis.client().save()
    snapshot = redis.data_dir / "snapshot.rdb"
    shutil.copy(redis.data_dir / "dump.rdb", snapshot)

    newest = refresh(app, kept["refresh_token"]).json()
    newest = refresh(app, newest["refresh_token"]).json()
    logout(app, ended)

    redis.kill()
    shutil.copy(snapshot, redis.data_dir / "dump.rdb")
    redis.restart()  # the store now has "kept" at generation 0 and "ended" alive
    wait_until(lambda: httpx2.get(f"{app.url}/health", timeout=5).json()["revocations"] == "live")

    carried_on = refresh(app, newest["refresh_token"])
    assert carried_on.status_code == 200, carried_on.text
    assert refresh(app, ended["refresh_token"]).status_code == 400
    assert me(app, ended["access_token"]).status_code == 401
    app.restart()  # the process that remembered the logout is gone; the store was repaired
    assert refresh(app, ended["refresh_token"]).status_code == 400
    assert refresh(app, carried_on.json()["refresh_token"]).status_code == 200


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")
