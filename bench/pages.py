"""What page mode's inline refresh costs a page request, in process, against a real redis-server.

One app in page mode serves ``GET /page`` (a small HTML answer); its requests go straight into the
ASGI app (no server, no network but Redis's loopback), in turns, round after round, so that drift on
a noisy machine hits every kind alike:

- ``bare``: the same page with no authentication middleware (the floor);
- ``bearer``: with an access token in ``Authorization`` (verified once, then cached: the hot path);
- ``page, live``: with both page cookies, the access token live (what nearly every page request is);
- ``page, inline refresh``: with only the refresh cookie, as after the access token ran out: the
  middleware rotates it (one Redis round trip), runs the page and sets the three new cookies. Every
  request presents a token of its own session, used once;
- ``POST /auth/refresh``: the endpoint's rotation of such a token, for comparison: what a browser
  pays when a script refreshes and then loads the page.

Each kind's time is its fastest round (disturbances only add time); medians beside. Redis is a
``redis-server`` this program starts (AOF, ``appendfsync everysec``, like production).

Run: ``.venv/bin/python -m bench.pages [--requests N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from harness.processes import RedisServer
from starlette_refresh import TokenAuth

SECRET = "bench-secret-0123456789-0123456789-0123456789-0123"  # noqa: S105 (a benchmark key)
PAGE = "sr_session"
ACCESS = "sr_session_access"

Headers = list[tuple[bytes, bytes]]


async def page(request: Request) -> Response:
    name = request.user.display_name if "user" in request.scope else "nobody"  # the bare app has none
    return HTMLResponse(f"<p>{name}</p>")


def build(auth: TokenAuth | None) -> Starlette:
    routes = [Route("/page", page)]
    return Starlette(routes=routes, middleware=[auth.middleware()] if auth else [])


def scope_of(method: str, path: str, headers: Headers) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"origin", b"https://bench"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 443),
    }


async def run(app: Any, method: str, path: str, headers_of: Callable[[int], Headers], count: int) -> float:
    """Microseconds per request for ``count`` requests, the i-th carrying ``headers_of(i)``;
    every answer must be a 200."""
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    requests = [scope_of(method, path, headers_of(i)) for i in range(count)]
    gc.collect()
    gc.disable()  # a collection landing in one kind's turn would be charged to it
    started = time.perf_counter()
    for scope in requests:
        await app(scope, receive, send)
    elapsed = time.perf_counter() - started
    gc.enable()
    wrong = [status for status in statuses if status != 200]
    if wrong:
        raise SystemExit(f"{method} {path}: {len(wrong)} answers were not 200 (first: {wrong[0]})")
    return elapsed / count * 1e6


async def refresh_tokens(auth: TokenAuth, count: int) -> list[str]:
    """``count`` fresh sessions' refresh tokens, logged in ten at a time."""
    tokens: list[str] = []
    for start in range(0, count, 10):
        batch = await asyncio.gather(
            *(
                auth.sessions.login(f"user-{start + i}", {"email": "b@example.com"}, "bench")
                for i in range(10)
            )
        )
        tokens.extend(issued.refresh_token for issued in batch)
    return tokens[:count]


async def measure(redis_url: str, requests: int, rounds: int) -> dict[str, list[float]]:
    auth = TokenAuth(
        secret_key=SECRET,
        redis_url=redis_url,
        page_mode=True,
        login_url="/login",
        exclude=["/login"],
        max_sessions_per_user=1_000_000,
    )
    await auth.startup()
    try:
        ours, bare = build(auth), build(None)
        issued = await auth.sessions.login("bench-user", {"email": "b@example.com"}, "bench")
        bearer: Headers = [(b"authorization", f"Bearer {issued.access_token}".encode())]
        live: Headers = [
            (b"cookie", f"{PAGE}={issued.refresh_token}; {ACCESS}={issued.access_token}".encode())
        ]
        kinds: dict[str, Callable[[], Awaitable[float]]] = {}
        pools: dict[str, list[str]] = {}

        def fixed(app: Any, headers: Headers) -> Callable[[], Awaitable[float]]:
            return lambda: run(app, "GET", "/page", lambda _: headers, requests)

        def once_each(kind: str, method: str, path: str, cookie: str) -> Callable[[], Awaitable[float]]:
            async def go() -> float:
                tokens = pools.pop(kind)
                return await run(
                    ours, method, path, lambda i: [(b"cookie", f"{cookie}={tokens[i]}".encode())], requests
                )

            return go

        kinds["bare"] = fixed(bare, [])
        kinds["bearer"] = fixed(ours, bearer)
        kinds["page, live"] = fixed(ours, live)
        kinds["page, inline refresh"] = once_each("page, inline refresh", "GET", "/page", PAGE)
        kinds["POST /auth/refresh"] = once_each(
            "POST /auth/refresh", "POST", "/auth/refresh", "refresh_token"
        )
        for kind in kinds.values():  # warm up
            if kind not in (kinds["page, inline refresh"], kinds["POST /auth/refresh"]):
                await kind()
        times: dict[str, list[float]] = {name: [] for name in kinds}
        for _ in range(rounds):
            for name in ("page, inline refresh", "POST /auth/refresh"):
                pools[name] = await refresh_tokens(auth, requests)  # outside the timed turns
            for name, kind in kinds.items():
                times[name].append(await kind())
        return times
    finally:
        await auth.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000, help="requests per kind and round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds, the kinds interleaved")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sr-bench-pages-") as tmp:
        redis = RedisServer(Path(tmp) / "redis", extra_args=["--appendfsync", "everysec"])
        redis.start()
        try:
            times = asyncio.run(measure(redis.url, args.requests, args.rounds))
        finally:
            redis.stop()
    best = {name: min(values) for name, values in times.items()}
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n{args.rounds} rounds x {args.requests:,} requests per kind, interleaved, one process")
    for name in times:
        print(f"  {name:<22} {best[name]:8.1f} µs per request at best, {median[name]:8.1f} µs median")
    live, inline = best["page, live"], best["page, inline refresh"]
    print(f"  inline refresh / live page:            {inline / live:6.2f}x ({inline - live:.1f} µs more)")
    both = best["POST /auth/refresh"] + live
    print(f"  inline refresh / (endpoint + live page): {inline / both:6.1%}")


if __name__ == "__main__":
    main()
