"""Traces one request through the library and prints the functions it enters, in order.

    python scripts/request_trace.py            # a protected request (first and repeat), a refresh

A *stop* is a call into a function of ``starlette_refresh`` made by the request's own task (a
coroutine resumed after an await is the same stop); a *place* is its module; a *return* is a stop in
a module the request had already left for another one. Counted for a first request (full
verification), a repeat (the verified-token cache), a refresh in the body and a WebSocket handshake.
Runs on fakeredis, in process, through the public API only, so it measures any version alike.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

import fakeredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

import starlette_refresh
from starlette_refresh import TokenAuth

PACKAGE = str(Path(starlette_refresh.__file__).parent)
SECRET = "trace-secret-0123456789-0123456789-0123456789"  # noqa: S105


def build() -> tuple[TokenAuth, Starlette]:
    auth = TokenAuth(secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis(), exclude=["/login"])

    async def login(request: Request) -> Response:
        return await auth.login(request, "42", transport="body")

    async def me(request: Request) -> Response:
        return JSONResponse({"sub": request.user.identity})

    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    routes = [Route("/login", login, methods=["POST"]), Route("/me", me), WebSocketRoute("/ws", socket)]
    return auth, Starlette(routes=routes, middleware=[auth.middleware()])


async def call(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> dict[str, Any]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    sent = False
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer


async def handshake(app: Any, token: str) -> None:
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
        "subprotocols": [],
    }
    messages = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        pass

    await app(scope, receive, send)


def report(title: str, stops: list[str]) -> None:
    places: list[str] = []
    returns = 0
    for stop in stops:
        module = stop.partition(".")[0]
        if places and places[-1] == module:
            continue
        if module in places:
            returns += 1
        places.append(module)
    print(
        f"{title}: {len(stops)} stops in {len(set(places))} places, {returns} returns to a place already left"
    )
    for stop in stops:
        print(f"    {stop}")


def main() -> None:
    auth, app = build()

    async def scenario() -> dict[str, Any]:
        await auth.startup()
        issued = json.loads((await call(app, "POST", "/login", []))["body"])
        bearer = [(b"authorization", f"Bearer {issued['access_token']}".encode())]
        results: dict[str, Any] = {}
        for name, run in (
            ("first request", lambda: call(app, "GET", "/me", bearer)),
            ("repeat request", lambda: call(app, "GET", "/me", bearer)),
            ("websocket handshake", lambda: handshake(app, issued["access_token"])),
            (
                "refresh",
                lambda: call(
                    app,
                    "POST",
                    "/auth/refresh",
                    [(b"content-type", b"application/json")],
                    json.dumps({"refresh_token": issued["refresh_token"]}).encode(),
                ),
            ),
        ):
            results[name] = await traced_async(run)
        await auth.shutdown()
        return results

    async def traced_async(run: Callable[[], Awaitable[Any]]) -> list[str]:
        stops: list[str] = []
        seen: list[FrameType] = []  # frames already counted (kept alive, so no id is reused)
        task = asyncio.current_task()

        def profile(frame: FrameType, event: str, arg: object) -> None:
            # A coroutine resumed after an await reports a "call" again: count each frame once,
            # and only the request's own task (not the revocation feed's).
            if event != "call" or not frame.f_code.co_filename.startswith(PACKAGE):
                return
            if any(frame is known for known in seen) or asyncio.current_task() is not task:
                return
            seen.append(frame)
            stops.append(f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_qualname}")

        sys.setprofile(profile)
        try:
            await run()
        finally:
            sys.setprofile(None)
        return stops

    for name, stops in asyncio.run(scenario()).items():
        report(name, stops)


if __name__ == "__main__":
    main()
