"""The middleware's per-request path: a verified Authorization header is remembered by its raw bytes.

A repeat of the header skips parsing and verification, and it must still answer exactly what the full
path would. These tests cover each state a remembered header can be in: still valid, expired, revoked,
sent twice, sent next to a token in the query string, and sent to an excluded path. They run through
the real middleware with a manual clock, and count the full verifications to prove which path
answered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from starlette_refresh import TokenAuth
from starlette_refresh.testing import ManualClock
from tests.apps import build_app

ACCESS_TTL = 300  # what make_auth configures
LEEWAY = 10


@pytest.fixture
def counted(make_auth: Callable[..., TokenAuth]) -> Iterator[tuple[TestClient, TokenAuth, list[str]]]:
    """A client, its TokenAuth, and the list of tokens the full path verified."""
    auth = make_auth()
    full: list[str] = []
    verify = auth.access.verify

    def counting(token: str) -> Any:
        full.append(token)
        return verify(token)

    auth.access.verify = counting  # type: ignore[method-assign]
    with TestClient(build_app(auth), base_url="https://testserver") as client:
        yield client, auth, full


def login(client: TestClient, subject: str = "ana") -> dict[str, Any]:
    answer = client.post("/login", json={"subject": subject, "transport": "body"})
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_repeated_header_is_verified_once(counted: tuple[TestClient, TokenAuth, list[str]]) -> None:
    client, _, full = counted
    token = login(client)["access_token"]

    for _ in range(5):
        answer = client.get("/me", headers=bearer(token))
        assert answer.status_code == 200
        assert answer.json()["sub"] == "ana"
    assert full == [token]


def test_a_remembered_header_expires_exactly_when_the_token_does(
    counted: tuple[TestClient, TokenAuth, list[str]], clock: ManualClock
) -> None:
    client, _, _ = counted
    token = login(client)["access_token"]
    assert client.get("/me", headers=bearer(token)).status_code == 200

    clock.advance(ACCESS_TTL + LEEWAY - 0.001)
    assert client.get("/me", headers=bearer(token)).status_code == 200
    clock.advance(0.001)
    refused = client.get("/me", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.json()["error_description"] == "token expired"


def test_a_remembered_header_is_refused_once_its_session_is_revoked(
    counted: tuple[TestClient, TokenAuth, list[str]],
) -> None:
    client, _, _ = counted
    issued = login(client)
    assert client.get("/me", headers=bearer(issued["access_token"])).status_code == 200

    assert client.post("/auth/logout", json={"refresh_token": issued["refresh_token"]}).status_code == 204

    refused = client.get("/me", headers=bearer(issued["access_token"]))
    assert refused.status_code == 401
    assert refused.json()["error_description"] == "token revoked"


def test_a_remembered_header_sent_twice_is_still_a_bad_request(
    counted: tuple[TestClient, TokenAuth, list[str]],
) -> None:
    client, _, _ = counted
    token = login(client)["access_token"]
    assert client.get("/me", headers=bearer(token)).status_code == 200

    twice = client.get(
        "/me", headers=[("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    )

    assert twice.status_code == 400
    assert twice.json()["error_description"] == "more than one Authorization header"


def test_a_remembered_header_does_not_excuse_a_token_in_the_query(
    counted: tuple[TestClient, TokenAuth, list[str]],
) -> None:
    client, _, _ = counted
    token = login(client)["access_token"]
    assert client.get("/me", headers=bearer(token)).status_code == 200

    answer = client.get(f"/me?access_token={token}", headers=bearer(token))

    assert answer.status_code == 400
    assert client.get("/me?page=2", headers=bearer(token)).status_code == 200  # other queries are fine


def test_a_remembered_header_authenticates_on_an_excluded_path(
    counted: tuple[TestClient, TokenAuth, list[str]],
) -> None:
    client, _, full = counted
    token = login(client)["access_token"]
    assert client.get("/public", headers=bearer(token)).json() == {"authenticated": True}
    assert client.get("/public", headers=bearer(token)).json() == {"authenticated": True}
    assert client.get("/public").json() == {"authenticated": False}
    assert full == [token]


def test_each_request_gets_its_own_credentials(counted: tuple[TestClient, TokenAuth, list[str]]) -> None:
    client, _, _ = counted
    token = login(client)["access_token"]
    first = client.get("/me", headers=bearer(token)).json()["scopes"]
    second = client.get("/me", headers=bearer(token)).json()["scopes"]
    assert first == second == ["authenticated"]


def test_with_the_cache_off_every_request_takes_the_full_path(make_auth: Callable[..., TokenAuth]) -> None:
    auth = make_auth(access_cache_size=0)
    calls: list[str] = []
    verify = auth.access.verify
    auth.access.verify = lambda token: calls.append(token) or verify(token)  # type: ignore[method-assign]
    with TestClient(build_app(auth), base_url="https://testserver") as client:
        token = login(client)["access_token"]
        for _ in range(3):
            assert client.get("/me", headers=bearer(token)).status_code == 200
    assert calls == [token] * 3
