"""The RFC 6749 refresh form, invalid_grant as 400, and RFC 7009 revocation, in-process on fakeredis.

tests/integration/test_oauth2_clients.py drives the same endpoints with Authlib and
requests-oauthlib; here each rule of the two RFCs the contract takes is checked on its own.
"""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from httpx import Response
from starlette.testclient import TestClient

from starlette_refresh import TokenAuth

FORM = "application/x-www-form-urlencoded"


def body_login(client: TestClient, subject: str = "42") -> dict[str, Any]:
    issued: dict[str, Any] = client.post("/login", json={"subject": subject, "transport": "body"}).json()
    return issued


def form_refresh(client: TestClient, fields: dict[str, str], **kwargs: Any) -> Response:
    return client.post("/auth/refresh", data=fields, **kwargs)


def me(client: TestClient, access_token: str) -> Response:
    return client.get("/me", headers={"Authorization": f"Bearer {access_token}"})


def assert_error(response: Response, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers
    description: str = response.json()["error_description"]
    return description


def assert_alive(client: TestClient, issued: dict[str, Any]) -> None:
    assert me(client, issued["access_token"]).status_code == 200


def assert_ended(client: TestClient, issued: dict[str, Any]) -> None:
    refused = me(client, issued["access_token"])
    assert (refused.status_code, refused.json()["error_description"]) == (401, "token revoked")
    assert_error(
        client.post("/auth/refresh", json={"refresh_token": issued["refresh_token"]}), 400, "invalid_grant"
    )


# --- RFC 6749 section 6: refreshing with a form ------------------------------------------------------


def test_a_form_refresh_rotates_and_answers_in_the_body_like_rfc_6749_section_5_1(client: TestClient) -> None:
    issued = body_login(client)
    fields = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    answer = form_refresh(client, {**fields, "client_id": "app", "client_secret": "", "scope": "x y"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "Bearer"
    assert body["refresh_token"] != issued["refresh_token"]
    assert answer.headers["cache-control"] == "no-store"  # RFC 6749 section 5.1
    assert "set-cookie" not in answer.headers  # it came in the body, so it goes back in the body
    assert me(client, body["access_token"]).json()["sub"] == "42"
    # the form's token is the body's: within the grace window the same answer comes again
    again = form_refresh(client, fields)
    assert again.json()["refresh_token"] == body["refresh_token"]


def test_a_form_needs_grant_type_and_refuses_any_other(client: TestClient) -> None:
    issued = body_login(client)
    missing = form_refresh(client, {"refresh_token": issued["refresh_token"]})
    assert "grant_type is required" in assert_error(missing, 400, "invalid_request")
    for other in ("password", "authorization_code", "client_credentials", ""):
        refused = form_refresh(client, {"grant_type": other, "refresh_token": issued["refresh_token"]})
        assert_error(refused, 400, "unsupported_grant_type")
    json_other = client.post(
        "/auth/refresh", json={"grant_type": None, "refresh_token": issued["refresh_token"]}
    )
    assert_error(json_other, 400, "unsupported_grant_type")
    assert_alive(client, issued)  # none of these touched the session


def test_a_repeated_parameter_is_refused_and_an_unknown_one_ignored(client: TestClient) -> None:
    issued = body_login(client)
    token = issued["refresh_token"]
    twice = client.post(
        "/auth/refresh",
        content=f"grant_type=refresh_token&refresh_token={token}&refresh_token={token}",
        headers={"Content-Type": FORM},
    )
    assert "more than once" in assert_error(twice, 400, "invalid_request")
    unknown_twice = client.post(
        "/auth/refresh",
        content=f"grant_type=refresh_token&refresh_token={token}&resource=a&resource=b",
        headers={"Content-Type": f"{FORM}; charset=utf-8"},
    )
    assert unknown_twice.status_code == 200, unknown_twice.text


def test_invalid_grant_is_400_for_every_refusal(client: TestClient) -> None:
    issued = body_login(client)
    grant = {"grant_type": "refresh_token"}
    assert_error(form_refresh(client, {**grant, "refresh_token": "srt1.forged"}), 400, "invalid_grant")
    rotated = form_refresh(client, {**grant, "refresh_token": issued["refresh_token"]}).json()
    form_refresh(client, {**grant, "refresh_token": rotated["refresh_token"]})
    reused = form_refresh(client, {**grant, "refresh_token": issued["refresh_token"]})  # two rotations old
    assert "already used" in assert_error(reused, 400, "invalid_grant")
    assert "WWW-Authenticate" not in reused.headers  # no client authentication is involved


# --- RFC 7009: revocation ---------------------------------------------------------------------------


@pytest.mark.parametrize("as_form", [True, False], ids=["form", "json"])
@pytest.mark.parametrize("which", ["refresh_token", "access_token"])
def test_revoking_either_token_ends_its_session_only(client: TestClient, which: str, as_form: bool) -> None:
    issued, other = body_login(client), body_login(client)
    request = {"token": issued[which], "token_type_hint": which}
    answer = client.post("/auth/revoke", **({"data": request} if as_form else {"json": request}))
    assert answer.status_code == 200, answer.text
    assert answer.content == b""
    assert answer.headers["cache-control"] == "no-store"
    assert "set-cookie" not in answer.headers
    assert_ended(client, issued)
    assert_alive(client, other)


@pytest.mark.parametrize(
    "token",
    ["garbage", "srt1.a.b.c.d", "eyJhbGciOiJIUzI1NiJ9.e30.sig", "x" * 5000],
    ids=["garbage", "forged-refresh", "forged-jwt", "long"],
)
def test_an_unknown_or_invalid_token_is_200_and_ends_nothing(client: TestClient, token: str) -> None:
    """RFC 7009 section 2.2: "invalid tokens do not cause an error response"."""
    issued = body_login(client)
    assert client.post("/auth/revoke", data={"token": token}).status_code == 200
    assert_alive(client, issued)


def test_revoking_twice_and_an_unknown_hint_are_200(client: TestClient) -> None:
    issued = body_login(client)
    for hint in ("refresh_token", "refresh_token", "id_token"):  # an unknown hint is ignored (section 2.1)
        assert (
            client.post(
                "/auth/revoke", data={"token": issued["refresh_token"], "token_type_hint": hint}
            ).status_code
            == 200
        )
    # an access token of a session already over is no longer valid, so it names nothing: still 200
    assert client.post("/auth/revoke", data={"token": issued["access_token"]}).status_code == 200
    assert_ended(client, issued)


def test_a_malformed_revocation_request_is_400(client: TestClient) -> None:
    assert "token is required" in assert_error(client.post("/auth/revoke", data={}), 400, "invalid_request")
    assert_error(client.post("/auth/revoke", data={"token": ""}), 400, "invalid_request")
    assert_error(client.post("/auth/revoke", json={"token": 42}), 400, "invalid_request")
    assert_error(
        client.post("/auth/revoke", json={"token": "x", "token_type_hint": None}), 400, "invalid_request"
    )
    assert_error(
        client.post("/auth/revoke", content=b"token=x", headers={"Content-Type": "text/plain"}),
        400,
        "invalid_request",
    )
    wrong_method = client.get("/auth/revoke")
    assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")


def test_a_cross_site_revocation_is_403(client: TestClient) -> None:
    issued = body_login(client)
    answer = client.post(
        "/auth/revoke", data={"token": issued["refresh_token"]}, headers={"Origin": "https://evil.example"}
    )
    assert_error(answer, 403, "cross_site_request")
    assert_alive(client, issued)


def test_a_revocation_during_an_outage_is_503_and_ends_nothing(
    client: TestClient, fake_server: fakeredis.FakeServer
) -> None:
    issued = body_login(client)
    fake_server.connected = False
    answer = client.post("/auth/revoke", data={"token": issued["refresh_token"]})
    assert (answer.status_code, answer.json()["error"]) == (503, "temporarily_unavailable")
    assert "retry-after" in answer.headers
    fake_server.connected = True
    assert_alive(client, issued)


def test_the_revocation_endpoint_needs_no_access_token(auth: TokenAuth, client: TestClient) -> None:
    assert auth.endpoints.handles("/auth/revoke")
    assert client.post("/auth/revoke", data={"token": "anything"}).status_code == 200
