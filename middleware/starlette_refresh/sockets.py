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
from .observe import log_fields

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
    await app(scope, receive, _selecting_marker(scope, send))


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
) -> None:
    """Runs the app for a WebSocket opened with a token, and closes the socket with 4401 at the end
    of the token's ``window`` (on ``clock``) or when ``session_id`` is revoked. On a socket that
    selected the marker, ``renew`` checks the tokens of in-band renewals."""
    socket = _TokenSocket(scope, _selecting_marker(scope, send), session_id, clock, renew)
    await socket.serve(app, receive, window, watch_revocation)


def _selecting_marker(scope: Scope, send: Send) -> Send:
    """``send``, selecting the marker on accept when the client offered it and the app chose none."""
    if SOCKET_PROTOCOL not in (scope.get("subprotocols") or ()):
        return send

    async def selecting_send(message: Message) -> None:
        if message["type"] == "websocket.accept" and not message.get("subprotocol"):
            message = {**message, "subprotocol": SOCKET_PROTOCOL}
        await send(message)

    return selecting_send


class SocketEnded(OSError):
    """Raised to an app that sends on a socket the middleware closed (ASGI servers raise an
    ``OSError`` for a send on a closed connection; Starlette turns it into ``WebSocketDisconnect``)."""


class _TokenSocket:
    """One open WebSocket authenticated by a token: the app's messages pass through, and the
    socket is closed when the token's validity ends or its session is revoked.

    Once it has accepted with the marker selected, a reader task takes the client's frames from the
    server, handles renewals itself and hands every other message to the app through a one-message
    slot. So renewals are read even while the app only sends (a live feed), and a client still cannot
    make us buffer more than one frame the app has not asked for.
    """

    def __init__(self, scope: Scope, send: Send, session_id: str, clock: Clock, renew: Renew) -> None:
        self._scope = scope
        self._send = send
        self._session_id = session_id
        self._clock = clock
        self._renew = renew
        # The app's sends and our close must not interleave on the server's connection.
        self._sending = asyncio.Lock()
        self._closed = False
        self._ended_by_us = False
        self._finished = False
        self._window = TokenWindow(0.0, 0)
        self._expiry: asyncio.Task[None] | None = None
        self._revoked_ending: asyncio.Task[None] | None = None
        self._receive: Receive | None = None
        self._reader: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[Message | BaseException] = asyncio.Queue(maxsize=1)
        self._disconnect: Message | None = None

    async def serve(
        self, app: ASGIApp, receive: Receive, window: TokenWindow, watch: WatchRevocation
    ) -> None:
        loop = asyncio.get_running_loop()
        self._receive = receive
        self._end_at(window)

        def on_revoked() -> None:
            # RevocationList calls this wherever the revocation arrives; the ending runs in our loop.
            loop.call_soon_threadsafe(self._end_for_revocation)

        unwatch = watch(self._session_id, on_revoked)
        try:
            await app(self._scope, self.receive, self.send)
        finally:
            self._finished = True
            unwatch()
            for task in (self._expiry, self._reader):
                if task is not None:
                    task.cancel()
            tasks = {task for task in (self._expiry, self._revoked_ending, self._reader) if task is not None}
            # wait(), not gather(): if our own task is cancelled meanwhile (a server shutting the app
            # down), the CancelledError it raises carries that cancellation, not our tasks' ones, so a
            # cancel scope (anyio's, Starlette's TestClient's) still recognises it as its own.
            await asyncio.wait(tasks)

    async def receive(self) -> Message:
        """The app's receive: straight from the server until the reader runs, then from its slot."""
        assert self._receive is not None
        if self._reader is None:
            message = await self._receive()
            if message["type"] == "websocket.disconnect":
                self._closed = True
            return message
        if self._disconnect is not None and self._inbox.empty():
            return self._disconnect  # the server answers every receive after a disconnect with it
        item = await self._inbox.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def _read(self) -> None:
        """Takes the client's frames from the server: renewals are ours, the rest go to the app."""
        assert self._receive is not None
        while True:
            try:
                message = await self._receive()
            except Exception as exc:  # the server's receive failed: the app's next receive raises it
                await self._inbox.put(exc)
                return
            if message["type"] == "websocket.disconnect":
                self._closed = True
                self._disconnect = message
                await self._inbox.put(message)
                return
            text = message.get("text") if message["type"] == "websocket.receive" else None
            if isinstance(text, str) and text.startswith(RENEW_PREFIX):
                await self._renewal(text[len(RENEW_PREFIX) :])
                continue
            await self._inbox.put(message)

    async def _renewal(self, token: str) -> None:
        if self._closed:
            return  # too late: the close is sent, or the client has left
        try:
            renewal = self._renew(token)
        except InvalidToken as error:
            logger.info(
                "websocket renewal refused (%s)",
                error.description,
                extra=log_fields("socket_renewal", outcome="refused", session=self._session_id),
            )
            await self._end("renewal refused", "renewal_refused")
            return
        if renewal.valid_until > self._window.valid_until:
            self._end_at(renewal)  # an older token, still valid, never shortens the socket
        expires_at = self._window.expires_at
        async with self._sending:
            if self._closed:
                return
            await self._send({"type": "websocket.send", "text": f"{RENEWED_PREFIX}{expires_at}"})
        logger.debug(
            "websocket renewed until %d",
            expires_at,
            extra=log_fields("socket_renewal", outcome="renewed", session=self._session_id),
        )

    async def send(self, message: Message) -> None:
        kind = message["type"]
        async with self._sending:
            if self._ended_by_us:
                raise SocketEnded("closed by starlette-refresh (4401): the socket's token or session ended")
            await self._send(message)
        if kind == "websocket.close" or kind == "websocket.http.response.start":
            self._closed = True
        elif kind == "websocket.accept" and self._reader is None and self._selects_marker(message):
            # Before the accept the only message is websocket.connect, which the app has read.
            self._reader = asyncio.get_running_loop().create_task(
                self._read(), name="starlette-refresh socket reader"
            )

    def _selects_marker(self, accept: Message) -> bool:
        """True when the handshake ends with the marker selected: by the app, or for it."""
        chosen = accept.get("subprotocol")
        if chosen:
            return bool(chosen == SOCKET_PROTOCOL)
        return SOCKET_PROTOCOL in (self._scope.get("subprotocols") or ())  # what _selecting_marker does

    def _end_at(self, window: TokenWindow) -> None:
        """(Re)schedules the close at the end of ``window``."""
        if self._expiry is not None:
            self._expiry.cancel()
        self._window = window
        self._expiry = asyncio.get_running_loop().create_task(
            self._expire(window.valid_until), name="starlette-refresh socket expiry"
        )

    async def _expire(self, valid_until: float) -> None:
        await sleep_until(self._clock, valid_until)
        await self._end("token expired", "expired")

    def _end_for_revocation(self) -> None:
        if self._finished or self._closed or self._revoked_ending is not None:
            return
        if self._expiry is not None:
            self._expiry.cancel()
        self._revoked_ending = asyncio.get_running_loop().create_task(
            self._end("session revoked", "revoked"), name="starlette-refresh socket revocation"
        )

    async def _end(self, reason: str, outcome: str) -> None:
        async with self._sending:
            if self._closed:
                return
            self._closed = self._ended_by_us = True
            try:
                await self._send({"type": "websocket.close", "code": CLOSE_TOKEN_ENDED, "reason": reason})
            except OSError:
                return  # the client left meanwhile
        fields = log_fields(
            "socket_closed", outcome=outcome, session=self._session_id, path=self._scope["path"]
        )
        logger.info("websocket closed (%s)", reason, extra=fields)
