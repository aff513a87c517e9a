"""WebSocket handshakes against a real uvicorn: a valid token connects, anything else is denied."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.integration.helpers import app_env, login
from tests.support.fixtures import AppServerFactory
from tests.support.processes import RedisServer

APP = "tests.apps:app_from_env"


def test_websocket_handshake_needs_a_valid_access_token(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    app = app_server_factory(APP, app_env(redis_server), factory=True)
    url = app.url.replace("http://", "ws://") + "/ws"
    issued = login(app)

    async def scenario() -> None:
        async with connect(
            url, additional_headers={"Authorization": f"Bearer {issued['access_token']}"}
        ) as ws:
            assert json.loads(await ws.recv()) == {"sub": "42"}
        with pytest.raises(InvalidStatus) as missing:
            await connect(url)
        assert missing.value.response.status_code == 401
        assert missing.value.response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
        with pytest.raises(InvalidStatus) as bad:
            await connect(url, additional_headers={"Authorization": "Bearer not-a-token"})
        assert bad.value.response.status_code == 401
        assert 'error="invalid_token"' in bad.value.response.headers["WWW-Authenticate"]
        assert json.loads(bad.value.response.body) == {
            "error": "invalid_token",
            "error_description": "malformed token",
        }

    asyncio.run(scenario())
