"""Sessions ended from server code reach every process within a second, as a logout does.

Real processes: one redis-server and three uvicorn apps running :func:`app_factory` below, the app of
``tests/apps.py`` plus the routes an app would write around ``TokenAuth.end_sessions`` and
``end_session`` (an admin's "end that user's sessions" and a password change's "end my other
sessions"). A session is ended through one process; its access tokens must be refused as revoked on
the others within a second, its refresh token everywhere, and nothing else may be touched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from harness.processes import AppServer
from tests.apps import auth_from_env, build_app
from tests.integration.helpers import app_env, login, me
from tests.integration.test_many_instances import (
    assert_refresh_refused_everywhere,
    assert_session_works_everywhere,
    seconds_until_all_refused,
)
from tests.support.fixtures import AppServerFactory, RedisServerFactory

pytestmark = pytest.mark.integration

APP = "tests.integration.test_session_management_reach:app_factory"
INSTANCES = 3


def app_factory() -> Starlette:
    """uvicorn factory: the app of ``tests/apps.py`` (configured by ``SR_*``) plus

    - ``POST /admin/users/{subject}/end-sessions`` (JSON ``{"keep": <session id>}`` optional):
      ``auth.end_sessions``; answers ``{"ended": n}``;
    - ``DELETE /admin/users/{subject}/sessions/{session_id}``: ``auth.end_session``;
      answers ``{"ended": true|false}``;
    - ``POST /account/end-other-sessions``: ``auth.end_sessions`` for the caller, keeping the
      caller's session, as after a password change.

    The admin routes need an access token, like every route not in ``exclude``; a real app would
    also check that its holder is an admin.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    auth = auth_from_env()
    app = build_app(auth)

    async def end_sessions(request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json() if await request.body() else {}
        ended = await auth.end_sessions(request.path_params["subject"], keep=body.get("keep"))
        return JSONResponse({"ended": ended})

    async def end_session(request: Request) -> JSONResponse:
        params = request.path_params
        return JSONResponse({"ended": await auth.end_session(params["subject"], params["session_id"])})

    async def end_other_sessions(request: Request) -> JSONResponse:
        user = request.user
        return JSONResponse({"ended": await auth.end_sessions(user.identity, keep=user.session_id)})

    app.router.routes.extend(
        [
            Route("/admin/users/{subject}/end-sessions", end_sessions, methods=["POST"]),
            Route("/admin/users/{subject}/sessions/{session_id}", end_session, methods=["DELETE"]),
            Route("/account/end-other-sessions", end_other_sessions, methods=["POST"]),
        ]
    )
    return app


@pytest.fixture
def apps(redis_server_factory: RedisServerFactory, app_server_factory: AppServerFactory) -> list[AppServer]:
    """Three app processes on one redis-server."""
    redis = redis_server_factory()
    return [app_server_factory(APP, app_env(redis), factory=True) for _ in range(INSTANCES)]


def bearer(issued: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {issued['access_token']}"}


def session_id(app: AppServer, issued: dict[str, Any]) -> str:
    sid: str = me(app, issued["access_token"]).json()["sid"]
    return sid


def assert_refused_elsewhere_within_a_second(
    apps: Sequence[AppServer], through: int, ended: Sequence[dict[str, Any]], since: float, what: str
) -> float:
    """The ended sessions' access tokens: refused at once by the process that ended them, and on
    every other process within a second of ``since``; returns the slowest time."""
    tokens = [issued["access_token"] for issued in ended]
    for token in tokens:
        assert me(apps[through], token).status_code == 401
    others = [app for i, app in enumerate(apps) if i != through]
    elapsed = seconds_until_all_refused(others, tokens, since)
    slowest = max(elapsed.values())
    print(f"\n{what} via app {through}: {len(tokens)} access token(s) refused elsewhere in {slowest:.3f}s")
    assert slowest < 1.0, elapsed
    return slowest


def test_ending_every_session_of_a_user_reaches_every_process(apps: list[AppServer]) -> None:
    """The account-ban path: an admin on app 0 ends all of a user's sessions, held on every app."""
    sessions = [login(app, "banned") for app in apps]
    bystander = login(apps[1], "bystander")
    admin = login(apps[2], "admin")
    for app in apps:
        for issued in sessions:
            assert me(app, issued["access_token"]).status_code == 200

    answer = httpx2.post(f"{apps[0].url}/admin/users/banned/end-sessions", headers=bearer(admin), timeout=10)
    since = time.monotonic()
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ended": INSTANCES}

    assert_refused_elsewhere_within_a_second(apps, 0, sessions, since, "end_sessions")
    for issued in sessions:
        assert_refresh_refused_everywhere(apps, issued["refresh_token"])
    assert_session_works_everywhere(apps, bystander)
    assert_session_works_everywhere(apps, admin)


def test_ending_one_session_reaches_every_process(apps: list[AppServer]) -> None:
    """An admin on app 1 ends one session of a user; the user's other session carries on."""
    doomed, survivor = login(apps[0], "two-devices"), login(apps[2], "two-devices")
    admin = login(apps[1], "admin")
    sid = session_id(apps[0], doomed)

    url = f"{apps[1].url}/admin/users/two-devices/sessions/{sid}"
    answer = httpx2.delete(url, headers=bearer(admin), timeout=10)
    since = time.monotonic()
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ended": True}

    assert_refused_elsewhere_within_a_second(apps, 1, [doomed], since, "end_session")
    assert_refresh_refused_everywhere(apps, doomed["refresh_token"])
    assert_session_works_everywhere(apps, survivor)
    assert_session_works_everywhere(apps, admin)


def test_ending_every_other_session_keeps_the_callers_and_reaches_every_process(
    apps: list[AppServer],
) -> None:
    """The password-change path: the user, on app 2, ends every other session of theirs."""
    caller = login(apps[2], "changed-password")
    others = [login(app, "changed-password") for app in apps]
    bystander = login(apps[0], "bystander")

    answer = httpx2.post(f"{apps[2].url}/account/end-other-sessions", headers=bearer(caller), timeout=10)
    since = time.monotonic()
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ended": INSTANCES}

    assert_refused_elsewhere_within_a_second(apps, 2, others, since, "end_sessions(keep=caller)")
    for issued in others:
        assert_refresh_refused_everywhere(apps, issued["refresh_token"])
    assert_session_works_everywhere(apps, caller)
    assert_session_works_everywhere(apps, bystander)
