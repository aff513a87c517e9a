"""A live feed over a WebSocket that only a logged-in user can open (README, "WebSockets").

Its browser side is static/examples/live-socket.js: RefreshingWebSocket offers the access token as a
subprotocol, resumes after the last update it saw, and reconnects with a fresh token when the
middleware closes the socket (4401) because the token expired or the session was revoked.
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
    # The middleware checked the token before this runs, and ends the socket when the token does.
    user: TokenUser = websocket.user
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol="feed.v1" if "feed.v1" in offered else None)
    try:
        while True:
            request = await websocket.receive_json()
            if request.get("type") == "resume":  # every connection starts by asking what it missed
                after = request.get("after") or 0
                for update_id, text in UPDATES:
                    if update_id > after:
                        await websocket.send_json({"id": update_id, "text": text, "for": user.identity})
    except WebSocketDisconnect:
        pass  # closed by the page, or by the middleware (4401); the page reconnects


app = Starlette(routes=[WebSocketRoute("/ws/feed", feed)], middleware=[auth.middleware()])
