"""FastAPI: examples/fastapi_app.py route by route, its OpenAPI schema, and the core without FastAPI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from examples.fastapi_app import create_app
from starlette_refresh import TokenAuth
from starlette_refresh.fastapi import CurrentUser, require_scopes
from starlette_refresh.sockets import SOCKET_PROTOCOL, TOKEN_PROTOCOL_PREFIX


@pytest.fixture
def notes(make_auth: Callable[..., TokenAuth]) -> Iterator[TestClient]:
    auth = make_auth(exclude=["/login", "/welcome", "/docs", "/openapi.json"])
    with TestClient(create_app(auth), base_url="https://testserver") as client:
        yield client


def login(client: TestClient, email: str, password: str) -> dict[str, str]:
    answer = client.post("/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_current_user_and_claims(notes: TestClient) -> None:
    ana = login(notes, "ana@example.com", "correct horse")

    me = notes.get("/me", headers=ana)
    assert me.status_code == 200
    assert me.json()["sub"] == "ana@example.com"
    assert notes.get("/claims", headers=ana).json() == {"scope": "notes:read notes:write"}


def test_without_a_token_the_middleware_answers_401_before_fastapi_runs(notes: TestClient) -> None:
    answer = notes.get("/me")

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_wrong_password_is_the_apps_own_401(notes: TestClient) -> None:
    assert notes.post("/login", json={"email": "ana@example.com", "password": "nope"}).status_code == 401


def test_scopes_are_required_per_route(notes: TestClient) -> None:
    ana = login(notes, "ana@example.com", "correct horse")
    bob = login(notes, "bob@example.com", "battery")

    assert notes.get("/notes", headers=bob).json() == ["buy milk"]
    assert notes.post("/notes", headers=ana).json() == {"added_by": "ana@example.com"}
    refused = notes.post("/notes", headers=bob)
    assert refused.status_code == 403
    assert refused.json()["detail"] == {
        "error": "insufficient_scope",
        "error_description": "needs scope notes:write",
    }
    assert refused.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="notes:write"'


def socket_protocols(bearer: dict[str, str]) -> list[str]:
    """What a browser's refresh-socket.js offers for the token in ``bearer``."""
    token = bearer["Authorization"].removeprefix("Bearer ")
    return [SOCKET_PROTOCOL, TOKEN_PROTOCOL_PREFIX + token]


def test_dependencies_work_on_websocket_routes(notes: TestClient) -> None:
    ana = login(notes, "ana@example.com", "correct horse")
    with notes.websocket_connect("/ws/drafts", subprotocols=socket_protocols(ana)) as ws:
        assert ws.accepted_subprotocol == SOCKET_PROTOCOL
        ws.send_text("buy oats")
        assert ws.receive_json() == {"draft": "buy oats", "by": "ana@example.com"}


def test_a_missing_scope_closes_the_websocket_with_1008(notes: TestClient) -> None:
    bob = login(notes, "bob@example.com", "battery")
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        notes.websocket_connect("/ws/drafts", subprotocols=socket_protocols(bob)),
    ):
        pass  # pragma: no cover
    assert (closed.value.code, closed.value.reason) == (1008, "needs scope notes:write")


def test_optional_user_on_an_excluded_path(notes: TestClient) -> None:
    ana = login(notes, "ana@example.com", "correct horse")

    assert notes.get("/welcome").json() == {"hello": "stranger"}
    assert notes.get("/welcome", headers=ana).json() == {"hello": "ana@example.com"}


def test_starlette_requires_keeps_working(notes: TestClient) -> None:
    ana = login(notes, "ana@example.com", "correct horse")

    answer = notes.get("/plain", headers=ana)
    assert answer.json() == {
        "sub": "ana@example.com",
        "scopes": ["authenticated", "notes:read", "notes:write"],
    }
    assert notes.get("/plain").status_code == 401


def test_the_refresh_endpoint_works_under_fastapi(notes: TestClient) -> None:
    login(notes, "ana@example.com", "correct horse")  # the refresh cookie is in the client now

    answer = notes.post("/auth/refresh", headers={"Origin": "https://testserver"})
    assert answer.status_code == 200
    assert (
        notes.get("/me", headers={"Authorization": f"Bearer {answer.json()['access_token']}"}).status_code
        == 200
    )


def test_openapi_shows_the_bearer_scheme_and_the_auth_endpoints(notes: TestClient) -> None:
    schema: dict[str, Any] = notes.get("/openapi.json").json()

    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A short-lived access token from a login or POST /auth/refresh.",
    }
    assert schema["paths"]["/me"]["get"]["security"] == [{"HTTPBearer": []}]
    assert schema["paths"]["/notes"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in schema["paths"]["/login"]["post"]
    refresh = schema["paths"]["/auth/refresh"]["post"]
    assert set(refresh["responses"]) == {"200", "400", "403", "503"}
    assert refresh["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TokenAnswer"
    }
    for path in ("/auth/logout", "/auth/logout-all", "/auth/sessions", "/auth/sessions/{session_id}"):
        assert path in schema["paths"]
    for name in ("TokenAnswer", "RefreshRequest", "AuthError", "Session"):
        assert name in schema["components"]["schemas"]


def test_a_dependency_without_the_middleware_fails_loudly() -> None:
    app = FastAPI()

    @app.get("/me")
    async def me(user: CurrentUser) -> str:
        return "unreachable"

    with TestClient(app) as client, pytest.raises(RuntimeError, match="middleware is not installed"):
        client.get("/me")


@pytest.mark.parametrize("scopes", [(), ("",), ("two words",)])
def test_require_scopes_refuses_bad_names(scopes: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="scope names"):
        require_scopes(*scopes)


def test_nothing_in_the_core_imports_fastapi() -> None:
    probe = "import sys, starlette_refresh; print('fastapi' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
