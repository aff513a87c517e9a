"""WebSockets through the real middleware (TestClient, fakeredis, a manual clock): the token offered
as a subprotocol, and open sockets closed with 4401 when their token expires or their session ends."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import anyio
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from starlette_refresh import TokenAuth
from starlette_refresh.clock import sleep_until
from starlette_refresh.errors import InvalidToken
from starlette_refresh.observe import NullObserver
from starlette_refresh.sockets import (
    CLOSE_TOKEN_ENDED,
    RENEW_PREFIX,
    RENEWED_PREFIX,
    SOCKET_PROTOCOL,
    TOKEN_PROTOCOL_PREFIX,
    TokenWindow,
    serve_token_socket,
)
from starlette_refresh.testing import ManualClock

ACCESS_TTL = 300
LEEWAY = 10
FEED_EVERY = 200


class SocketLog:
    """What the app's socket endpoints saw, for the assertions."""

    def __init__(self) -> None:
        self.handshakes: list[dict[str, Any]] = []
        self.send_failures: list[int] = []


def socket_app(auth: TokenAuth, log: SocketLog) -> Starlette:
    """``/ws`` accepts (choosing ``chat`` when offered), reports what it saw, then echoes; a send
    refused after the middleware closed the socket is recorded. ``/public-ws`` needs no token."""

    async def login(request: Request) -> Response:
        body = await request.json()
        return await auth.login(request, subject=body.get("subject", "42"))

    async def echo(websocket: WebSocket) -> None:
        offered = list(websocket.scope.get("subprotocols", []))
        log.handshakes.append(
            {
                "user": websocket.user.identity if websocket.user.is_authenticated else None,
                "subprotocols": offered,
                "protocol_header": websocket.headers.get("sec-websocket-protocol"),
            }
        )
        await websocket.accept(subprotocol="chat" if "chat" in offered else None)
        await websocket.send_json({"user": log.handshakes[-1]["user"]})
        try:
            while True:
                text = await websocket.receive_text()
                try:
                    await websocket.send_text(f"echo {text}")
                except WebSocketDisconnect as gone:
                    log.send_failures.append(gone.code)
                    return
        except WebSocketDisconnect:
            return

    async def feed(websocket: WebSocket) -> None:
        """Sends a tick every FEED_EVERY seconds of the auth's clock and never reads; stops when a
        send finds the socket closed (the middleware may close it at the same clock move)."""
        await websocket.accept()
        opened = auth.clock()
        for tick in itertools.count():
            await sleep_until(auth.clock, opened + tick * FEED_EVERY)
            try:
                await websocket.send_json({"tick": tick})
            except WebSocketDisconnect:
                return

    async def sessions(request: Request) -> Response:
        return JSONResponse({"sid": request.user.session_id})

    return Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/whoami", sessions),
            WebSocketRoute("/ws", echo),
            WebSocketRoute("/public-ws", echo),
            WebSocketRoute("/feed", feed),
        ],
        middleware=[auth.middleware()],
    )


@pytest.fixture
def log() -> SocketLog:
    return SocketLog()


@pytest.fixture
def client(make_auth: Any, log: SocketLog) -> Iterator[TestClient]:
    auth = make_auth(access_ttl=ACCESS_TTL, leeway=LEEWAY, exclude=["/login", "/public-ws"])
    with TestClient(socket_app(auth, log), base_url="https://testserver") as test_client:
        yield test_client


def log_in(client: TestClient, subject: str = "42") -> str:
    client.cookies.clear()
    answer = client.post("/login", json={"subject": subject})
    assert answer.status_code == 200
    return str(answer.json()["access_token"])


def token_protocols(token: str, *app_protocols: str) -> list[str]:
    return [*app_protocols, SOCKET_PROTOCOL, TOKEN_PROTOCOL_PREFIX + token]


def receive_within(ws: Any, seconds: float = 5.0) -> Any:
    """``ws.receive()`` that fails after ``seconds`` instead of hanging when nothing comes (the
    TestClient session has no timeout of its own; this reads the same stream it reads)."""

    async def receive() -> Any:
        with anyio.fail_after(seconds):
            return await ws._send_rx.receive()

    return ws.portal.call(receive)


def expect_closed(ws: Any, reason: str) -> None:
    message = receive_within(ws)
    assert message == {"type": "websocket.close", "code": CLOSE_TOKEN_ENDED, "reason": reason}


# --- the token as a subprotocol ----------------------------------------------------------------


def test_a_token_offered_as_a_subprotocol_authenticates_and_the_app_never_sees_it(
    client: TestClient, log: SocketLog
) -> None:
    token = log_in(client)
    with client.websocket_connect("/ws", subprotocols=token_protocols(token)) as ws:
        assert ws.receive_json() == {"user": "42"}
        # The browser requires the server to pick one of the offered protocols: the marker.
        assert ws.accepted_subprotocol == SOCKET_PROTOCOL
    assert log.handshakes == [
        {"user": "42", "subprotocols": [SOCKET_PROTOCOL], "protocol_header": SOCKET_PROTOCOL}
    ]


def test_the_apps_own_subprotocol_choice_wins(client: TestClient, log: SocketLog) -> None:
    token = log_in(client)
    with client.websocket_connect("/ws", subprotocols=token_protocols(token, "chat")) as ws:
        assert ws.receive_json() == {"user": "42"}
        assert ws.accepted_subprotocol == "chat"
    assert log.handshakes[0]["subprotocols"] == ["chat", SOCKET_PROTOCOL]
    assert token not in str(log.handshakes)


@pytest.mark.parametrize(
    ("protocols", "headers", "description"),
    [
        (
            lambda t: [TOKEN_PROTOCOL_PREFIX + t],
            {},
            f'offer the "{SOCKET_PROTOCOL}" subprotocol next to the token',
        ),
        (
            lambda t: [SOCKET_PROTOCOL, TOKEN_PROTOCOL_PREFIX + t, TOKEN_PROTOCOL_PREFIX + t + "x"],
            {},
            "send one access token per handshake, not several",
        ),
        (
            lambda t: [SOCKET_PROTOCOL, TOKEN_PROTOCOL_PREFIX + t],
            "bearer",
            "send the access token either in Authorization or as a subprotocol, not both",
        ),
    ],
    ids=["without-marker", "two-tokens", "header-and-subprotocol"],
)
def test_ambiguous_subprotocol_tokens_are_refused_with_400(
    client: TestClient, log: SocketLog, protocols: Any, headers: Any, description: str
) -> None:
    token = log_in(client)
    extra = {"Authorization": f"Bearer {token}"} if headers == "bearer" else {}
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect("/ws", subprotocols=protocols(token), headers=extra),
    ):
        pass  # pragma: no cover
    assert denied.value.status_code == 400
    assert denied.value.json() == {"error": "invalid_request", "error_description": description}
    assert log.handshakes == []


def test_a_bad_token_as_a_subprotocol_is_denied_like_a_bad_header(client: TestClient, log: SocketLog) -> None:
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect("/ws", subprotocols=token_protocols("not-a-token")),
    ):
        pass  # pragma: no cover
    assert denied.value.status_code == 401
    assert denied.value.json() == {"error": "invalid_token", "error_description": "malformed token"}
    assert log.handshakes == []


def test_a_public_socket_selects_the_marker_without_a_token(client: TestClient, log: SocketLog) -> None:
    with client.websocket_connect("/public-ws", subprotocols=[SOCKET_PROTOCOL]) as ws:
        assert ws.receive_json() == {"user": None}
        assert ws.accepted_subprotocol == SOCKET_PROTOCOL


# --- open sockets end with their token -----------------------------------------------------------


@pytest.mark.parametrize("transport", ["header", "subprotocol"])
def test_an_open_socket_closes_with_4401_when_its_token_expires(
    client: TestClient, clock: ManualClock, log: SocketLog, transport: str
) -> None:
    token = log_in(client)
    options: dict[str, Any] = (
        {"headers": {"Authorization": f"Bearer {token}"}}
        if transport == "header"
        else {"subprotocols": token_protocols(token)}
    )
    with client.websocket_connect("/ws", **options) as ws:
        assert ws.receive_json() == {"user": "42"}
        clock.advance(ACCESS_TTL + LEEWAY - 1)  # still inside the leeway: the socket lives on
        ws.send_text("still there?")
        assert ws.receive_text() == "echo still there?"
        clock.advance(1)
        expect_closed(ws, "token expired")
        ws.send_text("too late")  # the app's answer is refused: its send raises
    assert log.send_failures == [1006]


def test_a_remembered_token_gets_the_same_deadline(client: TestClient, clock: ManualClock) -> None:
    token = log_in(client)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/whoami", headers=headers).status_code == 200  # the header is now remembered
    clock.advance(ACCESS_TTL)
    with client.websocket_connect("/ws", headers=headers) as ws:
        assert ws.receive_json() == {"user": "42"}
        clock.advance(LEEWAY)
        expect_closed(ws, "token expired")


def test_logout_closes_that_sessions_sockets_and_no_other(client: TestClient) -> None:
    first, second = log_in(client), log_in(client)
    with (
        client.websocket_connect("/ws", subprotocols=token_protocols(first)) as doomed,
        client.websocket_connect("/ws", subprotocols=token_protocols(second)) as other,
    ):
        assert doomed.receive_json() == other.receive_json() == {"user": "42"}
        client.cookies.clear()
        assert client.post("/auth/logout", headers={"Authorization": f"Bearer {first}"}).status_code == 204
        expect_closed(doomed, "session revoked")
        other.send_text("hello")
        assert other.receive_text() == "echo hello"


def test_logout_all_closes_every_socket_of_the_user(client: TestClient) -> None:
    tokens = [log_in(client), log_in(client)]
    bystander = log_in(client, subject="7")
    with (
        client.websocket_connect("/ws", subprotocols=token_protocols(tokens[0])) as a,
        client.websocket_connect("/ws", subprotocols=token_protocols(tokens[1])) as b,
        client.websocket_connect("/ws", subprotocols=token_protocols(bystander)) as c,
    ):
        assert [ws.receive_json()["user"] for ws in (a, b, c)] == ["42", "42", "7"]
        client.cookies.clear()
        answer = client.post("/auth/logout-all", headers={"Authorization": f"Bearer {tokens[1]}"})
        assert answer.status_code == 204
        expect_closed(a, "session revoked")
        expect_closed(b, "session revoked")
        c.send_text("hello")
        assert c.receive_text() == "echo hello"


# --- renewal in band ------------------------------------------------------------------------------


def refreshed(client: TestClient) -> str:
    """The next access token of the session whose refresh cookie the client holds."""
    answer = client.post("/auth/refresh")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def expires_at(token: str) -> int:
    return int(jwt.decode(token, options={"verify_signature": False})["exp"])


def test_a_renewal_moves_the_sockets_end_to_the_new_tokens(
    client: TestClient, clock: ManualClock, log: SocketLog
) -> None:
    first = log_in(client)
    with client.websocket_connect("/ws", subprotocols=token_protocols(first)) as ws:
        assert ws.receive_json() == {"user": "42"}
        clock.advance(ACCESS_TTL - 30)  # the client refreshes before its token expires
        second = refreshed(client)
        ws.send_text(RENEW_PREFIX + second)
        assert receive_within(ws) == {
            "type": "websocket.send",
            "text": f"{RENEWED_PREFIX}{expires_at(second)}",
        }
        clock.advance(30 + LEEWAY)  # past the first token's end: the socket lives on
        ws.send_text("still there?")
        assert ws.receive_text() == "echo still there?"  # and the renewal never reached the app
        clock.advance(ACCESS_TTL - 30 - 1)
        ws.send_text("and now?")
        assert ws.receive_text() == "echo and now?"
        clock.advance(1)  # the second token's end, leeway included
        expect_closed(ws, "token expired")


def test_an_older_token_does_not_shorten_a_renewed_socket(client: TestClient, clock: ManualClock) -> None:
    first = log_in(client)
    with client.websocket_connect("/ws", subprotocols=token_protocols(first)) as ws:
        assert ws.receive_json() == {"user": "42"}
        clock.advance(60)
        second = refreshed(client)
        ws.send_text(RENEW_PREFIX + second)
        assert receive_within(ws)["text"] == f"{RENEWED_PREFIX}{expires_at(second)}"
        ws.send_text(RENEW_PREFIX + first)  # still valid, but it would end the socket 60 s sooner
        assert receive_within(ws)["text"] == f"{RENEWED_PREFIX}{expires_at(second)}"
        clock.advance(ACCESS_TTL + LEEWAY - 1)
        ws.send_text("ping")
        assert ws.receive_text() == "echo ping"


@pytest.mark.parametrize(
    ("renewal", "why"),
    [
        (lambda other: "not-a-token", "malformed"),
        (lambda other: other, "another session"),
    ],
    ids=["malformed", "another-session"],
)
def test_a_renewal_that_fails_the_check_ends_the_socket(
    client: TestClient, log: SocketLog, renewal: Any, why: str
) -> None:
    other = log_in(client)  # the same user's other session
    token = log_in(client)
    with client.websocket_connect("/ws", subprotocols=token_protocols(token)) as ws:
        assert ws.receive_json() == {"user": "42"}
        ws.send_text(RENEW_PREFIX + renewal(other))
        expect_closed(ws, "renewal refused")


def test_renewal_frames_reach_the_app_when_it_chose_its_own_subprotocol(client: TestClient) -> None:
    token = log_in(client)
    with client.websocket_connect("/ws", subprotocols=token_protocols(token, "chat")) as ws:
        assert ws.accepted_subprotocol == "chat"
        assert ws.receive_json() == {"user": "42"}
        ws.send_text(RENEW_PREFIX + token)  # the app's protocol, not ours: nothing is taken out
        assert ws.receive_text() == f"echo {RENEW_PREFIX}{token}"


def test_renewal_frames_reach_the_app_on_a_socket_opened_with_a_header(client: TestClient) -> None:
    token = log_in(client)
    with client.websocket_connect("/ws", headers={"Authorization": f"Bearer {token}"}) as ws:
        assert ws.accepted_subprotocol is None
        assert ws.receive_json() == {"user": "42"}
        ws.send_text(RENEW_PREFIX + token)
        assert ws.receive_text() == f"echo {RENEW_PREFIX}{token}"


def test_a_renewal_is_read_while_the_app_only_sends(client: TestClient, clock: ManualClock) -> None:
    first = log_in(client)
    with client.websocket_connect("/feed", subprotocols=token_protocols(first)) as ws:
        assert ws.receive_json() == {"tick": 0}
        clock.advance(ACCESS_TTL - 30)
        assert ws.receive_json() == {"tick": 1}
        second = refreshed(client)
        ws.send_text(RENEW_PREFIX + second)  # the feed never reads: the frame waits in the server
        clock.advance(30 + LEEWAY)  # the first token's end: the middleware reads what waits
        assert receive_within(ws) == {
            "type": "websocket.send",
            "text": f"{RENEWED_PREFIX}{expires_at(second)}",
        }
        clock.advance(FEED_EVERY * 2 - ACCESS_TTL - LEEWAY)
        assert ws.receive_json() == {"tick": 2}  # sent after the first token's end


def next_non_tick(ws: Any) -> Any:
    """The next message the socket sends that is not one of the feed's ticks."""
    message = receive_within(ws)
    while message.get("text", "").startswith('{"tick"'):
        message = receive_within(ws)
    return message


def test_a_feed_that_never_reads_takes_every_renewal_waiting_at_its_end(
    client: TestClient, clock: ManualClock
) -> None:
    """Three renewals sent while the feed never reads: at the first token's end the middleware
    reads all three, and the socket then ends with the last one."""
    first = log_in(client)
    with client.websocket_connect("/feed", subprotocols=token_protocols(first)) as ws:
        assert ws.receive_json() == {"tick": 0}
        renewals = []
        for _ in range(3):
            clock.advance(60)
            renewals.append(refreshed(client))
            ws.send_text(RENEW_PREFIX + renewals[-1])
        clock.advance(ACCESS_TTL + LEEWAY - 180)  # the first token's end
        for renewal in renewals:
            assert next_non_tick(ws)["text"] == f"{RENEWED_PREFIX}{expires_at(renewal)}"
        clock.advance(180 - 1)  # one second before the last renewal's end: still open
        tick = receive_within(ws)
        if tick["text"] == '{"tick":1}':  # it may have come after the renewals' answers
            tick = receive_within(ws)
        assert tick == {"type": "websocket.send", "text": '{"tick":2}'}
        clock.advance(1)
        assert next_non_tick(ws) == {
            "type": "websocket.close",
            "code": CLOSE_TOKEN_ENDED,
            "reason": "token expired",
        }


def test_a_data_frame_waiting_before_a_renewal_is_kept_for_the_app_and_the_socket_ends(
    client: TestClient, clock: ManualClock
) -> None:
    """The middleware keeps at most one frame the app has not asked for: a data frame in front of
    the renewal stays for the app, and the socket ends with its token as without renewal."""
    first = log_in(client)
    with client.websocket_connect("/feed", subprotocols=token_protocols(first)) as ws:
        assert ws.receive_json() == {"tick": 0}
        clock.advance(60)
        ws.send_text("data the feed never reads")
        ws.send_text(RENEW_PREFIX + refreshed(client))
        clock.advance(ACCESS_TTL + LEEWAY - 60)
        assert next_non_tick(ws) == {
            "type": "websocket.close",
            "code": CLOSE_TOKEN_ENDED,
            "reason": "token expired",
        }


def test_a_revoked_session_cannot_open_a_socket(client: TestClient) -> None:
    token = log_in(client)
    client.cookies.clear()
    assert client.post("/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect("/ws", subprotocols=token_protocols(token)),
    ):
        pass  # pragma: no cover
    assert denied.value.status_code == 401
    assert denied.value.json()["error"] == "invalid_token"


def run_token_socket(clock: ManualClock, *, client_leaves: bool, subprotocols: list[str]) -> list[str]:
    """Drives serve_token_socket straight through ASGI: the app accepts, reads one message (a disconnect
    when ``client_leaves``, else nothing comes), then the clock passes the token's deadline while the
    app is still running. Returns the types of the messages sent to the server. With the marker
    offered, the client's messages reach the app through the middleware's reader."""
    sent: list[str] = []
    deadline = clock() + 10

    async def receive() -> Message:
        if client_leaves:
            return {"type": "websocket.disconnect", "code": 1001}
        await asyncio.sleep(3600)  # the client says nothing
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: Message) -> None:
        sent.append(message["type"])

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.accept"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receive(), timeout=0.05)
        clock.advance(11)  # past the deadline, with the app still running
        await asyncio.sleep(0.3)  # the expiry task runs (it may first wait 50 ms for a renewal)

    def no_renewals(token: str) -> TokenWindow:
        raise InvalidToken("no renewals in this test")

    scope = {"type": "websocket", "path": "/ws", "subprotocols": subprotocols}
    asyncio.run(
        serve_token_socket(
            app,
            scope,
            receive,
            send,
            session_id="s" * 22,
            window=TokenWindow(deadline, int(deadline)),
            clock=clock,
            watch_revocation=lambda session_id, on_revoked: lambda: None,
            renew=no_renewals,
            observer=NullObserver(),
        )
    )
    return sent


@pytest.mark.parametrize("subprotocols", [[], [SOCKET_PROTOCOL]], ids=["header", "marker"])
def test_a_socket_the_client_already_left_is_not_closed_at_its_deadline(
    clock: ManualClock, subprotocols: list[str]
) -> None:
    left = run_token_socket(clock, client_leaves=True, subprotocols=subprotocols)
    assert left == ["websocket.accept"]
    # The same run with the client still there: the deadline closes it, so the check above can fail.
    stayed = run_token_socket(clock, client_leaves=False, subprotocols=subprotocols)
    assert stayed == ["websocket.accept", "websocket.close"]
