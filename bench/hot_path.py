"""The per-request cost of the middleware, in process: this version against another, in one run.

Each app is driven with direct ASGI calls (no server, no network, no Redis on this path), the
request carrying an access token the middleware has already verified once, which is what nearly
every request of a logged-in user is. Three apps take turns, round after round, so drift on a noisy
machine hits all of them alike:

- ``bare``: the same Starlette app with no authentication middleware;
- ``ours``: behind this checkout's starlette-refresh;
- ``before``: behind the starlette-refresh of ``--before DIR`` (a checkout of another version, e.g.
  ``git worktree add /tmp/before HEAD~5``), imported under another name beside ours.

The middleware's cost is a protected request's time less the bare app's, each at its fastest round
(disturbances on a shared machine only ever add time); the report gives both versions' cost and
their ratio, and the medians beside.

Run: ``.venv/bin/python -m bench.hot_path --before /tmp/before [--requests N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import fakeredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import starlette_refresh

SECRET = "bench-secret-0123456789-0123456789-0123456789-0123"  # noqa: S105 (a benchmark key)


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def load_before(checkout: Path, into: Path) -> ModuleType:
    """The starlette_refresh package of ``checkout``, importable beside ours as another name."""
    source = checkout / "middleware" / "starlette_refresh"
    if not source.is_dir():
        raise SystemExit(f"--before {checkout}: no middleware/starlette_refresh there")
    shutil.copytree(source, into / "starlette_refresh_before")
    sys.path.insert(0, str(into))
    return importlib.import_module("starlette_refresh_before")


async def protected_app(library: ModuleType) -> tuple[Starlette, bytes, Any]:
    """An app behind ``library``'s middleware, and the Authorization header of a logged-in user."""
    auth = library.TokenAuth(secret_key=SECRET, redis=fakeredis.aioredis.FakeRedis())
    await auth.startup()
    issued = await auth.sessions.login("bench-user", {"email": "b@example.com"}, "bench")
    app = Starlette(routes=[Route("/protected", hello)], middleware=[auth.middleware()])
    return app, f"Bearer {issued.access_token}".encode(), auth


async def per_request_us(app: Any, authorization: bytes, requests: int) -> float:
    """Microseconds per request for ``requests`` GET /protected calls straight into ``app``."""
    headers = [(b"host", b"bench"), (b"authorization", authorization)]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    gc.collect()
    gc.disable()  # a collection landing in one app's turn would be charged to that app
    started = time.perf_counter()
    for _ in range(requests):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/protected",
            "raw_path": b"/protected",
            "root_path": "",
            "query_string": b"",
            "headers": list(headers),
            "client": ("127.0.0.1", 1),
            "server": ("bench", 80),
        }
        await app(scope, receive, send)
    elapsed = time.perf_counter() - started
    gc.enable()
    return elapsed / requests * 1e6


async def measure(before: ModuleType, requests: int, rounds: int, verbose: bool) -> dict[str, list[float]]:
    bare = Starlette(routes=[Route("/protected", hello)])
    ours, ours_header, ours_auth = await protected_app(starlette_refresh)
    theirs, their_header, their_auth = await protected_app(before)
    apps = {"bare": (bare, b"Bearer x"), "ours": (ours, ours_header), "before": (theirs, their_header)}
    for app, header in apps.values():  # warm up: the first request verifies; the rest hit the cache
        await per_request_us(app, header, 1_000)
    times: dict[str, list[float]] = {name: [] for name in apps}
    for round_number in range(rounds):
        for name, (app, header) in apps.items():
            times[name].append(await per_request_us(app, header, requests))
        if verbose:
            shown = ", ".join(f"{name} {values[-1]:.2f} µs" for name, values in times.items())
            print(f"  round {round_number + 1}: {shown}", flush=True)
    await ours_auth.shutdown()
    await their_auth.shutdown()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the version to compare")
    parser.add_argument("--requests", type=int, default=10_000, help="requests per app and round")
    parser.add_argument("--rounds", type=int, default=31, help="rounds, the apps interleaved")
    parser.add_argument("--verbose", action="store_true", help="print every round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sr-hot-path-") as tmp:
        before = load_before(args.before, Path(tmp))
        times = asyncio.run(measure(before, args.requests, args.rounds, args.verbose))
    # The fastest round of each app: on a shared machine every disturbance only adds time, so the
    # minimum is the steadiest estimate of what the code costs (as timeit advises); medians beside.
    best = {name: min(values) for name, values in times.items()}
    median = {name: statistics.median(values) for name, values in times.items()}
    ours_cost, before_cost = best["ours"] - best["bare"], best["before"] - best["bare"]
    print()
    print(f"{args.rounds} rounds x {args.requests:,} requests per app, interleaved")
    for name in ("bare", "ours", "before"):
        print(f"  {name:<7} {best[name]:7.2f} µs per request at best, {median[name]:7.2f} µs median")
    print(f"  middleware cost, this version:    {ours_cost:6.2f} µs")
    print(f"  middleware cost, --before:        {before_cost:6.2f} µs")
    print(f"  this version / before (cost):     {ours_cost / before_cost:6.1%}")
    print(f"  this version / before (request):  {best['ours'] / best['before']:6.1%}")


if __name__ == "__main__":
    main()
