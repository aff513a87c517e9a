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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .clock import Clock, sleep_until
from .errors import InvalidRequest
from .observe import log_fields

logger = logging.getLogger("starlette_refresh.sockets")

#: The subprotocol a browser offers next to its token, and the one selected when the app picks none.
SOCKET_PROTOCOL = "starlette-refresh"
#: A subprotocol ``starlette-refresh.bearer.<token>`` carries the access token.
TOKEN_PROTOCOL_PREFIX = f"{SOCKET_PROTOCOL}.bearer."
#: The close code of an open socket whose token expired or whose session was revoked.
CLOSE_TOKEN_ENDED = 4401

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
    valid_until: float,
    clock: Clock,
    watch_revocation: WatchRevocation,
) -> None:
    """Runs the app for a WebSocket opened with a token, and closes the socket with 4401 at
    ``valid_until`` (on ``clock``) or when ``session_id`` is revoked."""
    socket = _TokenSocket(scope, _selecting_marker(scope, send), session_id)
    await socket.serve(app, receive, valid_until, clock, watch_revocation)


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
    socket is closed when the token's validity ends or its session is revoked."""

    def __init__(self, scope: Scope, send: Send, session_id: str) -> None:
        self._scope = scope
        self._send = send
        self._session_id = session_id
        # The app's sends and our close must not interleave on the server's connection.
        self._sending = asyncio.Lock()
        self._closed = False
        self._ended_by_us = False
        self._finished = False
        self._revoked_ending: asyncio.Task[None] | None = None

    async def serve(
        self, app: ASGIApp, receive: Receive, valid_until: float, clock: Clock, watch: WatchRevocation
    ) -> None:
        loop = asyncio.get_running_loop()
        expiry = loop.create_task(self._end_at(clock, valid_until), name="starlette-refresh socket expiry")

        def on_revoked() -> None:
            # RevocationList calls this wherever the revocation arrives; the ending runs in our loop.
            loop.call_soon_threadsafe(self._end_for_revocation, expiry)

        unwatch = watch(self._session_id, on_revoked)
        try:
            await app(self._scope, self._tracking_receive(receive), self.send)
        finally:
            self._finished = True
            unwatch()
            expiry.cancel()
            endings = [task for task in (expiry, self._revoked_ending) if task is not None]
            await asyncio.gather(*endings, return_exceptions=True)

    def _tracking_receive(self, receive: Receive) -> Receive:
        async def tracking_receive() -> Message:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self._closed = True
            return message

        return tracking_receive

    async def send(self, message: Message) -> None:
        kind = message["type"]
        async with self._sending:
            if self._ended_by_us:
                raise SocketEnded("closed by starlette-refresh: the token expired or the session was revoked")
            await self._send(message)
        if kind == "websocket.close" or kind == "websocket.http.response.start":
            self._closed = True

    async def _end_at(self, clock: Clock, valid_until: float) -> None:
        await sleep_until(clock, valid_until)
        await self._end("token expired", "expired")

    def _end_for_revocation(self, expiry: asyncio.Task[None]) -> None:
        if self._finished or self._closed or self._revoked_ending is not None:
            return
        expiry.cancel()
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
