"""WebSockets: the token a browser offers as a subprotocol, and sockets that end with their token.

Browsers cannot set headers on a WebSocket handshake, and a token in the URL would end up in access
logs. So a browser offers it in the subprotocol list, next to a marker:
``Sec-WebSocket-Protocol: starlette-refresh, starlette-refresh.bearer.<access token>`` (a JWT's
characters are all valid in a subprotocol name). The middleware takes the token out before the app
sees the scope and, when the app accepts without choosing a subprotocol, selects the marker, which a
browser requires when it offered any.

A socket outlives the request that opened it, so the check at the handshake is not enough: an open
socket is closed with code :data:`CLOSE_TOKEN_ENDED` (4401, the HTTP 401 of WebSockets) when its
token's validity ends or its session is revoked (logout, logout-all, reuse, on any instance). The
refresh manager's socket then reconnects with the fresh token it already holds.

Or the socket is renewed in band, without a reconnect: on a socket that selected the marker, the
client sends the text frame ``starlette-refresh.renew <access token>`` after each refresh. The
middleware takes that frame out of the app's stream, checks the token (valid, not revoked, the same
session), moves the socket's end to the new token's and answers ``starlette-refresh.renewed <exp>``;
a token that fails the check ends the socket with 4401 ``renewal refused``. Frames that start with
either prefix are reserved on such sockets. A socket renewed this way keeps the identity it opened
with (``scope["user"]`` is not replaced): a renewal extends a session, it never switches one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .clock import Clock, sleep_until
from .errors import InvalidRequest, InvalidToken
from .observe import Observer, SocketEvent, log_fields

logger = logging.getLogger("starlette_refresh.sockets")

#: The subprotocol a browser offers next to its token, and the one selected when the app picks none.
SOCKET_PROTOCOL = "starlette-refresh"
#: A subprotocol ``starlette-refresh.bearer.<token>`` carries the access token.
TOKEN_PROTOCOL_PREFIX = f"{SOCKET_PROTOCOL}.bearer."
#: The close code of an open socket whose token expired or whose session was revoked.
CLOSE_TOKEN_ENDED = 4401
#: A client's text frame ``starlette-refresh.renew <access token>`` renews the socket in band.
RENEW_PREFIX = f"{SOCKET_PROTOCOL}.renew "
#: The middleware's answer to a renewal: ``starlette-refresh.renewed <exp, Unix seconds>``.
RENEWED_PREFIX = f"{SOCKET_PROTOCOL}.renewed "
#: At a socket's end, how long to wait for a frame the client may already have sent (a renewal).
_WAITING_FRAME_SECONDS = 0.05


class TokenWindow(NamedTuple):
    """How long a token keeps a socket open: until ``valid_until`` on the middleware's clock
    (leeway included), for a token whose ``exp`` is ``expires_at`` (what a renewed client is told)."""

    valid_until: float
    expires_at: int


Renew = Callable[[str], TokenWindow]
"""Checks a renewal token for the socket's session and returns its window; raises
:class:`InvalidToken` when the token fails."""

WatchRevocation = Callable[[str, Callable[[], None]], Callable[[], None]]
"""``watch(session_id, on_revoked)`` -> ``unwatch``, as :meth:`RevocationList.watch`."""


def authorization_from_subprotocols(scope: Scope, authorization: list[bytes]) -> list[bytes]:
    """The handshake's Authorization values, with a token offered as a subprotocol added as one.

    The token's subprotocol is removed from ``scope["subprotocols"]`` and from the
    ``Sec-WebSocket-Protocol`` header, so the app (and anything it logs) never sees it. Raises
    :class:`InvalidRequest` for two tokens, a token in both places, or a token without the marker.
    """
    offered: list[str] = list(scope.get("subprotocols") or ())
    prefix = TOKEN_PROTOCOL_PREFIX
    tokens = [name[len(prefix) :] for name in offered if name.startswith(prefix)]
    if not tokens:
        return authorization
    if len(tokens) > 1:
        raise InvalidRequest("send one access token per handshake, not several")
    if authorization:
        raise InvalidRequest("send the access token either in Authorization or as a subprotocol, not both")
    if SOCKET_PROTOCOL not in offered:
        raise InvalidRequest(f'offer the "{SOCKET_PROTOCOL}" subprotocol next to the token')
    kept = [name for name in offered if not name.startswith(prefix)]
    scope["subprotocols"] = kept
    scope["headers"] = [
        (name, value) for name, value in scope["headers"] if name.lower() != b"sec-websocket-protocol"
    ] + [(b"sec-websocket-protocol", ", ".join(kept).encode("latin-1"))]
    return [b"Bearer " + tokens[0].encode("latin-1")]


async def serve_anonymous_socket(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Runs the app for a WebSocket on an excluded path opened without a token."""

    async def selecting_send(message: Message) -> None:
        await send(_with_marker(scope, message))

    await app(scope, receive, selecting_send)


async def serve_token_socket(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    session_id: str,
    window: TokenWindow,
    clock: Clock,
    watch_revocation: WatchRevocation,
    renew: Renew,
    observer: Observer,
) -> None:
    """Runs the app for a WebSocket opened with a token, and closes the socket with 4401 at the end
    of the token's ``window`` (on ``clock``) or when ``session_id`` is revoked. On a socket that
    selected the marker, ``renew`` checks the tokens of in-band renewals. ``observer`` hears what
    happens to the socket once the app accepted it."""
    socket = _TokenSocket(scope, send, session_id, clock, renew, observer)
    await socket.serve(app, receive, window, watch_revocation)


def _with_marker(scope: Scope, message: Message) -> Message:
    """``message``, or the accept selecting the marker when the client offered it and the app chose
    no subprotocol (a browser fails a handshake that selects none of the protocols it offered)."""
    if (
        message["type"] == "websocket.accept"
        and not message.get("subprotocol")
        and SOCKET_PROTOCOL in (scope.get("subprotocols") or ())
    ):
        return {**message, "subprotocol": SOCKET_PROTOCOL}
    return message


class SocketEnded(OSError):
    """Raised to an app that sends on a socket the middleware closed (ASGI servers raise an
    ``OSError`` for a send on a closed connection; Starlette turns it into ``WebSocketDisconnect``)."""


class _TokenSocket:
    """One open WebSocket authenticated by a token: the app's messages pass through, and the
    socket is closed when the token's validity ends or its session is revoked.

    Renewals are read where the frames already flow: the app's own receive handles them and goes
    on to the next frame, so an app that reads pays no extra hop per frame. An app that is not
    reading when the socket's end comes (a live feed only sends) has its waiting frames read then:
    renewals are handled, and the first other frame stays for the app's next receive, so a client
    cannot make us buffer more than that one frame.
    """

    def __init__(
        self, scope: Scope, send: Send, session_id: str, clock: Clock, renew: Renew, observer: Observer
    ) -> None:
        self._scope = scope
        self._send = send
        self._session_id = session_id
        self._clock = clock
        self._renew = renew
        self._observer = observer
        self._accepted = False
        # The app's sends and our close must not interleave on the server's connection.
        self._sending = asyncio.Lock()
        self._closed = False
        self._ended_by_us = False
        self._finished = False
        self._renewable = False  # the handshake selected the marker
        self._window = TokenWindow(0.0, 0)
        self._expiry: asyncio.Task[None] | None = None
        self._revoked_ending: asyncio.Task[None] | None = None
        self._receive: Receive | None = None
        self._receiving = 0  # the app's receive calls in progress
        self._waiting_frame: asyncio.Future[Message] | None = None  # read by us, not yet the app's

    async def serve(
        self, app: ASGIApp, receive: Receive, window: TokenWindow, watch: WatchRevocation
    ) -> None:
        loop = asyncio.get_running_loop()
        self._receive = receive
        self._window = window
        self._expiry = loop.create_task(self._expire(), name="starlette-refresh socket expiry")

        def on_revoked() -> None:
            # RevocationList calls this wherever the revocation arrives; the ending runs in our loop.
            loop.call_soon_threadsafe(self._end_for_revocation)

        unwatch = watch(self._session_id, on_revoked)
        try:
            await app(self._scope, self.receive, self.send)
        finally:
            self._finished = True
            unwatch()
            if self._accepted:
                self._observer.websocket("ended")
            tasks = {task for task in (self._expiry, self._revoked_ending, self._waiting_frame) if task}
            for task in tasks:
                task.cancel()
            # wait(), not gather(): if our own task is cancelled meanwhile (a server shutting the app
            # down), the CancelledError it raises carries that cancellation, not our tasks' ones, so a
            # cancel scope (anyio's, Starlette's TestClient's) still recognises it as its own.
            await asyncio.wait(tasks)

    async def receive(self) -> Message:
        """The app's receive: the server's next message, with renewals taken out and handled."""
        assert self._receive is not None
        self._receiving += 1
        try:
            while True:
                if self._waiting_frame is not None:
                    frame, self._waiting_frame = self._waiting_frame, None
                    message = await frame
                else:
                    message = await self._receive()
                token = self._renewal_token(message)
                if token is None:
                    break
                await self._renewal(token)
        finally:
            self._receiving -= 1
        if message["type"] == "websocket.disconnect":
            self._closed = True
        return message

    def _renewal_token(self, message: Message) -> str | None:
        if not self._renewable or message["type"] != "websocket.receive":
            return None
        text = message.get("text")
        if isinstance(text, str) and text.startswith(RENEW_PREFIX):
            return text[len(RENEW_PREFIX) :]
        return None

    async def _renewal(self, token: str) -> None:
        if self._closed:
            return  # too late: the close is sent, or the client has left
        try:
            window = self._renew(token)
        except InvalidToken as error:
            logger.info(
                "websocket renewal refused (%s)",
                error.description,
                extra=log_fields("socket_renewal", outcome="refused", session=self._session_id),
            )
            await self._end("renewal refused", "renewal_refused")
            return
        self._observer.websocket("renewed")
        if window.valid_until > self._window.valid_until:
            self._window = window  # an older token, still valid, never shortens the socket
        expires_at = self._window.expires_at
        async with self._sending:
            if self._closed:
                return
            await self._send({"type": "websocket.send", "text": f"{RENEWED_PREFIX}{expires_at}"})
        if logger.isEnabledFor(logging.DEBUG):
            fields = log_fields("socket_renewal", outcome="renewed", session=self._session_id)
            logger.debug("websocket renewed until %d", expires_at, extra=fields)

    async def send(self, message: Message) -> None:
        message = _with_marker(self._scope, message)
        kind = message["type"]
        async with self._sending:
            if self._ended_by_us:
                raise SocketEnded("closed by starlette-refresh (4401): the socket's token or session ended")
            await self._send(message)
        if kind == "websocket.close" or kind == "websocket.http.response.start":
            self._closed = True
        elif kind == "websocket.accept":
            self._renewable = message.get("subprotocol") == SOCKET_PROTOCOL
            self._accepted = True
            self._observer.websocket("opened")

    async def _expire(self) -> None:
        """Ends the socket at the end of its window, which renewals may have moved meanwhile."""
        while True:
            await sleep_until(self._clock, self._window.valid_until)
            await self._read_waiting_renewals()
            if self._clock() < self._window.valid_until:
                continue  # renewed
            await self._end("token expired", "expired")
            return

    async def _read_waiting_renewals(self) -> None:
        """At the socket's end, while the app is not reading: handles the renewals the client has
        already sent, up to the first other frame, which stays for the app's next receive."""
        assert self._receive is not None
        while self._renewable and not self._closed and self._receiving == 0:
            if self._waiting_frame is None:
                self._waiting_frame = asyncio.ensure_future(self._receive())
            frame = self._waiting_frame
            # A frame the server already holds comes at once; the app's next receive takes the read
            # if none does. Never cancelled: a server need not keep a message whose read was cancelled.
            await asyncio.wait({frame}, timeout=_WAITING_FRAME_SECONDS)
            if not frame.done() or self._waiting_frame is not frame or frame.exception() is not None:
                return  # nothing waiting, the app took it, or the read failed (the app's to see)
            message = frame.result()
            token = self._renewal_token(message)
            if token is None:
                if message["type"] == "websocket.disconnect":
                    self._closed = True  # nothing to close
                return
            self._waiting_frame = None
            await self._renewal(token)

    def _end_for_revocation(self) -> None:
        if self._finished or self._closed or self._revoked_ending is not None:
            return
        if self._expiry is not None:
            self._expiry.cancel()
        self._revoked_ending = asyncio.get_running_loop().create_task(
            self._end("session revoked", "revoked"), name="starlette-refresh socket revocation"
        )

    async def _end(self, reason: str, outcome: SocketEvent) -> None:
        async with self._sending:
            if self._closed:
                return
            self._closed = self._ended_by_us = True
            try:
                await self._send({"type": "websocket.close", "code": CLOSE_TOKEN_ENDED, "reason": reason})
            except OSError:
                return  # the client left meanwhile
        self._observer.websocket(outcome)
        fields = log_fields(
            "socket_closed", outcome=outcome, session=self._session_id, path=self._scope["path"]
        )
        logger.info("websocket closed (%s)", reason, extra=fields)
