"""Standard OAuth2 clients refresh and revoke against a real uvicorn process, unmodified.

Authlib (sync on requests, async on httpx) and requests-oauthlib refresh by themselves when their
token has expired: they post RFC 6749 section 6's form (``grant_type=refresh_token&refresh_token=...``,
plus a ``client_id``) to the token endpoint and keep the rotated refresh token from the answer.
Authlib's ``revoke_token`` posts RFC 7009's form to the revocation endpoint. Before issue 15 the
refresh endpoint answered every such form ``400 "the request body must be JSON"``, so no client
refreshed, and there was no revocation endpoint at all.

Each client is driven through several refreshes (the access token marked expired each time, as a
client whose clock passed ``expires_at`` would have it), each of which must rotate the refresh token,
then a revocation, after which the session must be over for refresh and access tokens alike.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx2
import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from requests_oauthlib import OAuth2Session as RequestsOAuthlibSession

from harness.processes import AppServer, RedisServer
from tests.integration.helpers import app_env, login, me, refresh
from tests.support.fixtures import AppServerFactory

pytestmark = pytest.mark.integration

CLIENT_ID = "mobile-app"  # public clients send one; the endpoints ignore it
REFRESHES = 3


@pytest.fixture
def app(redis_server: RedisServer, app_server_factory: AppServerFactory) -> AppServer:
    return app_server_factory("tests.apps:app_from_env", app_env(redis_server), factory=True)


def expired_token(issued: dict[str, Any]) -> dict[str, Any]:
    """What a client stores from a token answer, with ``expires_at`` already passed."""
    return {
        "access_token": issued["access_token"],
        "refresh_token": issued["refresh_token"],
        "token_type": issued.get("token_type", "Bearer"),
        "expires_in": issued["expires_in"],
        "expires_at": int(time.time()) - 3600,
    }


def assert_rotated(saved: list[dict[str, Any]], first_refresh_token: str) -> None:
    """Every refresh gave a new refresh token (rotation), none given twice."""
    assert len(saved) == REFRESHES
    tokens = [first_refresh_token, *(t["refresh_token"] for t in saved)]
    assert len(set(tokens)) == len(tokens), "a refresh did not rotate the refresh token"
    assert all(t["token_type"] == "Bearer" and t["expires_in"] > 0 for t in saved)


def assert_session_over(app: AppServer, token: dict[str, Any]) -> None:
    answer = me(app, token["access_token"])
    assert answer.status_code == 401, answer.text
    assert answer.json()["error_description"] == "token revoked"
    refused = refresh(app, token["refresh_token"])
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant"), refused.text


def test_authlib_refreshes_by_itself_and_revokes(app: AppServer) -> None:
    issued = login(app)
    saved: list[dict[str, Any]] = []

    def update_token(token: dict[str, Any], refresh_token: str | None = None, **_: Any) -> None:
        saved.append(dict(token))

    session = AuthlibSession(
        client_id=CLIENT_ID,
        token_endpoint_auth_method="none",
        token=expired_token(issued),
        update_token=update_token,
        token_endpoint=f"{app.url}/auth/refresh",
    )
    for _ in range(REFRESHES):
        answer = session.get(f"{app.url}/me", timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["sub"] == "42"
        session.token["expires_at"] = int(time.time()) - 3600
    assert_rotated(saved, issued["refresh_token"])
    revoked = session.revoke_token(
        f"{app.url}/auth/revoke", token=session.token["refresh_token"], token_type_hint="refresh_token"
    )
    assert revoked.status_code == 200
    with pytest.raises(OAuthError) as refused:  # its next automatic refresh is refused, by name
        session.get(f"{app.url}/me", timeout=10)
    assert refused.value.error == "invalid_grant"
    assert_session_over(app, saved[-1])


def test_authlib_async_refreshes_by_itself_and_revokes_an_access_token(app: AppServer) -> None:
    issued = login(app)
    saved: list[dict[str, Any]] = []

    async def update_token(token: dict[str, Any], refresh_token: str | None = None, **_: Any) -> None:
        saved.append(dict(token))

    async def scenario() -> None:
        async with AsyncOAuth2Client(
            client_id=CLIENT_ID,
            token_endpoint_auth_method="none",
            token=expired_token(issued),
            update_token=update_token,
            token_endpoint=f"{app.url}/auth/refresh",
        ) as client:
            for _ in range(REFRESHES):
                answer = await client.get(f"{app.url}/me")
                assert answer.status_code == 200, answer.text
                client.token["expires_at"] = int(time.time()) - 3600
            # RFC 7009 lets a client revoke its access token too: the session ends with it
            revoked = await client.revoke_token(
                f"{app.url}/auth/revoke", token=client.token["access_token"], token_type_hint="access_token"
            )
            assert revoked.status_code == 200

    asyncio.run(scenario())
    assert_rotated(saved, issued["refresh_token"])
    assert_session_over(app, saved[-1])


def test_requests_oauthlib_refreshes_by_itself(app: AppServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the test server speaks plain http
    issued = login(app)
    saved: list[dict[str, Any]] = []
    session = RequestsOAuthlibSession(
        CLIENT_ID,
        token=expired_token(issued),
        auto_refresh_url=f"{app.url}/auth/refresh",
        auto_refresh_kwargs={"client_id": CLIENT_ID},
        token_updater=lambda token: saved.append(dict(token)),
    )
    for _ in range(REFRESHES):
        answer = session.get(f"{app.url}/me", timeout=10)
        assert answer.status_code == 200, answer.text
        session.token = {**session.token, "expires_at": int(time.time()) - 3600}  # the setter tells oauthlib
    assert_rotated(saved, issued["refresh_token"])


def test_a_reused_refresh_token_is_refused_to_the_client_and_ends_the_session(app: AppServer) -> None:
    """A stale refresh token (one rotated away, after the grace window) sent by a standard client:
    ``invalid_grant``, 400, and the whole session revoked, the newest token included."""
    issued = login(app)
    first = refresh(app, issued["refresh_token"])
    assert first.status_code == 200
    current = first.json()
    older = refresh(app, current["refresh_token"]).json()  # issued's token is now two rotations old
    form = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"], "client_id": CLIENT_ID}
    reused = httpx2.post(f"{app.url}/auth/refresh", data=form, timeout=10)
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant"), reused.text
    assert "already used" in reused.json()["error_description"]
    assert refresh(app, older["refresh_token"]).status_code == 400
