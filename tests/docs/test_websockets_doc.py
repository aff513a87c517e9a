"""docs/websockets.md: its example is examples/live_socket.py verbatim, and that feed admits only a
logged-in user, is renewed in band past its first token, and refuses another session's token."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from starlette_refresh.sockets import (
    CLOSE_TOKEN_ENDED,
    RENEW_PREFIX,
    RENEWED_PREFIX,
    SOCKET_PROTOCOL,
    TOKEN_PROTOCOL_PREFIX,
)
from starlette_refresh.testing import ManualClock
from tests.apps import SECRET
from tests.docs.blocks import claim_example, example_module

WEBSOCKETS = "docs/websockets.md"
LIVE_SOCKET = claim_example(WEBSOCKETS, "examples/live_socket.py")


@pytest.fixture
def live_socket_example(monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> Iterator[ModuleType]:
    """examples/live_socket.py (the block of docs/websockets.md), imported with its environment, on
    fakeredis and the manual ``clock``."""
    with example_module("live_socket", monkeypatch, SECRET, clock=clock) as module:
        yield module


def _browser_protocols(access_token: str) -> list[str]:
    """What RefreshingWebSocket offers for a page with no protocol of its own: the marker, the token."""
    return [SOCKET_PROTOCOL, TOKEN_PROTOCOL_PREFIX + access_token]


def _receive_within(ws: Any, seconds: float = 5.0) -> Any:
    """``ws.receive()`` that fails after ``seconds`` instead of hanging when nothing comes."""

    async def receive() -> Any:
        with anyio.fail_after(seconds):
            return await ws._send_rx.receive()

    return ws.portal.call(receive)


def test_the_live_socket_example_resumes_for_a_logged_in_user_only(live_socket_example: ModuleType) -> None:
    auth = live_socket_example.auth
    with TestClient(live_socket_example.app, base_url="https://testserver") as client:
        with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect("/ws/feed"):
            pass  # pragma: no cover
        assert refused.value.status_code == 401

        assert client.portal is not None  # the example has no login route: log in on its store
        issued = client.portal.call(auth.sessions.login, "42", None, "test")
        with client.websocket_connect("/ws/feed", subprotocols=_browser_protocols(issued.access_token)) as ws:
            # The feed picks no protocol of its own, so the middleware selects the marker: renewal is on.
            assert ws.accepted_subprotocol == SOCKET_PROTOCOL
            ws.send_json({"type": "resume", "after": 2})
            assert [ws.receive_json() for _ in range(3)] == [
                {"id": n, "text": f"update {n}", "for": "42"} for n in (3, 4, 5)
            ]
        # Not even a protocol the page offers: choosing one would turn renewal off.
        offering = ["feed.v1", *_browser_protocols(issued.access_token)]
        with client.websocket_connect("/ws/feed", subprotocols=offering) as ws:
            assert ws.accepted_subprotocol == SOCKET_PROTOCOL


def test_the_live_socket_example_is_renewed_in_band_past_its_first_token(
    live_socket_example: ModuleType, clock: ManualClock
) -> None:
    auth = live_socket_example.auth
    ttl, leeway = auth.settings.access_ttl, auth.settings.leeway
    with TestClient(live_socket_example.app, base_url="https://testserver") as client:
        assert client.portal is not None
        first = client.portal.call(auth.sessions.login, "42", None, "test")
        with client.websocket_connect("/ws/feed", subprotocols=_browser_protocols(first.access_token)) as ws:
            assert ws.accepted_subprotocol == SOCKET_PROTOCOL
            ws.send_json({"type": "resume", "after": 4})
            assert ws.receive_json() == {"id": 5, "text": "update 5", "for": "42"}

            clock.advance(ttl - 60)  # the page's manager refreshes before its token ends...
            second = client.portal.call(auth.sessions.refresh, first.refresh_token)
            ws.send_text(RENEW_PREFIX + second.access_token)  # ...and RefreshingWebSocket sends this
            second_exp = auth.verify_access_token(second.access_token)["exp"]
            assert _receive_within(ws) == {"type": "websocket.send", "text": f"{RENEWED_PREFIX}{second_exp}"}

            clock.advance(60 + leeway + 1)  # past the first token's end, leeway included
            ws.send_json({"type": "resume", "after": 3})  # the same socket; the feed never saw the renewal
            assert [ws.receive_json() for _ in range(2)] == [
                {"id": n, "text": f"update {n}", "for": "42"} for n in (4, 5)
            ]

            clock.advance(ttl - 60 - 1)  # the second token's end, leeway included: nothing renewed it
            assert _receive_within(ws) == {
                "type": "websocket.close",
                "code": CLOSE_TOKEN_ENDED,
                "reason": "token expired",
            }


@pytest.mark.parametrize("other_subject", ["42", "7"], ids=["same-user", "other-user"])
def test_the_live_socket_example_refuses_a_renewal_with_another_sessions_token(
    live_socket_example: ModuleType, other_subject: str
) -> None:
    auth = live_socket_example.auth
    with TestClient(live_socket_example.app, base_url="https://testserver") as client:
        assert client.portal is not None
        other = client.portal.call(auth.sessions.login, other_subject, None, "test")  # a valid token...
        issued = client.portal.call(auth.sessions.login, "42", None, "test")
        with client.websocket_connect("/ws/feed", subprotocols=_browser_protocols(issued.access_token)) as ws:
            ws.send_text(RENEW_PREFIX + other.access_token)  # ...of another session: never switched to
            assert _receive_within(ws) == {
                "type": "websocket.close",
                "code": CLOSE_TOKEN_ENDED,
                "reason": "renewal refused",
            }
