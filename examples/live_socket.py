"""A live feed over a WebSocket that only a logged-in user can open (docs/websockets.md).

Its browser side is static/examples/live-socket.js. The feed accepts without a subprotocol of its
own, so the middleware selects ``starlette-refresh`` and the socket is renewed in band: after each
refresh, RefreshingWebSocket sends the new access token on the open socket, and the middleware moves
the socket's end to that token's expiry (the feed never sees that frame). One connection outlives its
tokens, but it can still drop: the network, a server restart, a renewal that came too late (4401).
The page then reconnects and resumes after the last update it saw. A revoked session ends the socket
with 4401 for good: the page's manager logs out.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from starlette_refresh import TokenAuth, TokenUser

auth = TokenAuth(secret_key=os.environ["JWT_SECRET"], redis_url=os.environ["REDIS_URL"])

UPDATES = [(n, f"update {n}") for n in range(1, 6)]  # stands in for your event log: (id, text)


async def feed(websocket: WebSocket) -> None:
    # The middleware checked the token before this runs. It ends the socket when the session ends or
    # its latest token runs out unrenewed; websocket.user stays the handshake's.
    user: TokenUser = websocket.user
    await websocket.accept()  # no subprotocol of its own: the middleware selects starlette-refresh
    try:
        while True:
            request = await websocket.receive_json()  # renewal frames are the middleware's, never here
            if request.get("type") == "resume":  # every connection starts by asking what it missed
                after = request.get("after") or 0
                for update_id, text in UPDATES:
                    if update_id > after:
                        await websocket.send_json({"id": update_id, "text": text, "for": user.identity})
    except WebSocketDisconnect:
        pass  # closed by the page, or by the middleware (4401); the page reconnects


app = Starlette(routes=[WebSocketRoute("/ws/feed", feed)], middleware=[auth.middleware()])
