"""The login/refresh answer is encoded by hand (:func:`~starlette_refresh.endpoints.token_answer`): it
must be, byte for byte, the answer ``json_answer`` gives the same dict, headers and cookie included."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.responses import Response

from starlette_refresh import TokenAuth
from starlette_refresh.endpoints import Transport, token_answer
from starlette_refresh.page_cookies import set_page_cookies
from starlette_refresh.sessions import IssuedSession
from starlette_refresh.web import json_answer, set_refresh_cookie


def sent_by(response: Response) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        messages.append(message)

    async def receive() -> Any:
        raise AssertionError("an answer reads nothing")

    asyncio.run(response({"type": "http"}, receive, send))
    return messages


def issued_session(auth: TokenAuth) -> IssuedSession:
    refresh = auth.sessions.refresh_codec
    tag, session_id = refresh.user_tag("alice"), refresh.new_session_id()
    claims = {"email": "a@example.com", "name": 'Zoë "Z" <z>', "roles": ["admin"]}
    access = auth.access.issue("alice", session_id, claims)
    refresh_token = refresh.mint(tag, session_id, 7)
    return IssuedSession(access.token, access.expires_in, refresh_token, 3600, session_id, "alice")


@pytest.mark.parametrize("transport", ["body", "cookie"])
@pytest.mark.parametrize("root", ["", "/app"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"access_ttl": 60, "cookie_secure": False},
        {"cookie_domain": "example.com", "cookie_path": "/x"},
        {"page_mode": True, "login_url": "/login", "exclude": ["/login"]},
    ],
)
def test_the_token_answer_is_what_json_answer_gives(
    options: dict[str, Any], transport: Transport, root: str
) -> None:
    auth = TokenAuth(secret_key="s" * 32, redis_url="redis://127.0.0.1:1", **options)
    settings = auth.settings
    issued = issued_session(auth)
    body: dict[str, Any] = {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
    }
    if transport == "body":
        body["refresh_token"] = issued.refresh_token
    expected = json_answer(200, body)
    if transport == "cookie":
        set_refresh_cookie(expected, settings, issued.refresh_token, issued.refresh_expires_in, root)
        if settings.page_mode:
            set_page_cookies(expected, settings, issued)

    answer = token_answer(settings, issued, transport, root)

    assert sent_by(answer) == sent_by(expected)
