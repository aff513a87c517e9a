"""Testing an app that uses starlette-refresh: expiry and refresh without sleeping, and the logs.

A manual clock moves only when the test says so, so a 15-minute token expires in no time; the
fingerprint finds a token's lines in the logs (which must never hold the token itself). fakeredis
(with its ``lua`` extra) keeps this fast; run the same tests against a real redis-server too.
Run: ``pytest examples/testing_your_app.py``.
"""

import logging

import fakeredis
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from starlette_refresh import TokenAuth
from starlette_refresh.testing import ManualClock, fingerprint

SECRET = "a-test-secret-that-is-at-least-32-bytes-long"  # noqa: S105 - a test key


def build_app(clock: ManualClock) -> tuple[TokenAuth, Starlette]:
    auth = TokenAuth(
        secret_key=SECRET,
        redis=fakeredis.aioredis.FakeRedis(),
        clock=clock,  # every token time and session lifetime follows it
        exclude=["/login"],
        cookie_secure=False,  # TestClient talks plain http
    )

    async def login(request: Request) -> Response:
        return await auth.login(request, subject="42")

    async def me(request: Request) -> Response:
        return JSONResponse({"sub": request.user.identity})

    routes = [Route("/login", login, methods=["POST"]), Route("/me", me)]
    return auth, Starlette(routes=routes, middleware=[auth.middleware()])


def test_an_expired_access_token_is_refreshed_with_the_cookie() -> None:
    clock = ManualClock()
    auth, app = build_app(clock)
    with TestClient(app) as client:
        token = client.post("/login").json()["access_token"]
        assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).json() == {"sub": "42"}

        clock.advance(auth.settings.access_ttl + auth.settings.leeway)  # 15 minutes later, at once
        expired = client.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert expired.status_code == 401
        assert 'error_description="token expired"' in expired.headers["www-authenticate"]

        refreshed = client.post("/auth/refresh")  # the client's cookie jar holds the refresh cookie
        assert refreshed.status_code == 200
        fresh = refreshed.json()["access_token"]
        assert client.get("/me", headers={"Authorization": f"Bearer {fresh}"}).json() == {"sub": "42"}


def test_the_logs_name_a_refresh_token_only_by_its_fingerprint(caplog: pytest.LogCaptureFixture) -> None:
    _, app = build_app(ManualClock())
    with TestClient(app) as client, caplog.at_level(logging.INFO, logger="starlette_refresh"):
        client.post("/login")
        refresh_token = client.cookies["refresh_token"]
        assert client.post("/auth/refresh").status_code == 200

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert fingerprint(refresh_token) in logged
    assert refresh_token not in logged
