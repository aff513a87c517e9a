"""HTTP benchmark: what authentication costs a trivial endpoint, ours against the tutorial peer.

Starts its own redis-server (AOF, ``appendfsync everysec``) and one uvicorn process per app (one
worker, uvloop and httptools as ``uvicorn[standard]`` picks them), all on loopback, and drives them
with ``wrk`` from a separate process. Every scenario runs ``--rounds`` times, interleaved with the
others, so that drift on a noisy machine hits all of them alike; the table shows medians and the
ratios against the baselines measured in the same run.

Scenarios:

- ``bare /open``: the endpoint with no authentication middleware (the ceiling);
- ``ours /open``: the same endpoint on an excluded path of the app that runs starlette-refresh;
- ``ours /protected``: the same endpoint behind starlette-refresh, with a valid access token;
- ``peer /open`` and ``peer /protected``: Starlette's ``AuthenticationMiddleware`` with a backend that
  decodes the JWT with pyjwt on every request (bench/apps.py);
- ``authx /open`` and ``authx /protected``: AuthX on FastAPI as its docs show it, where the ``bench``
  extra is installed;
- ``ours /redis-get``: one Redis ``GET`` per request, the baseline for a refresh;
- ``ours /auth/refresh``: body-transport refreshes of a pool of sessions, every token used once;
- with ``--before DIR`` (a checkout of another version, e.g. ``git worktree add /tmp/before HEAD~5``):
  ``before /open``, ``before /protected``, ``before /redis-get`` and ``before /auth/refresh``, the
  same app on that version's library (its sessions logged in by that library), so a change's effect
  on the hot path and on refreshes is measured in the same run as the change.

Run: ``scripts/bench`` (sets everything up), or ``.venv/bin/python -m bench.http [--seconds S]
[--rounds N] [--connections C] [--before DIR]`` once ``wrk`` is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench import SECRET
from bench.apps import authx_token
from harness.processes import AppServer, RedisServer
from starlette_refresh import TokenAuth

REFRESH_SESSIONS = 2_000
AUTHX = importlib.util.find_spec("authx") is not None
REFRESH_SCRIPT = Path(__file__).with_name("wrk") / "refresh.lua"


@dataclass
class Scenario:
    """One wrk target and what every round measured."""

    name: str
    app: str
    path: str
    token: bool = False
    script: bool = False
    rps: list[float] = field(default_factory=list)
    p50_us: list[float] = field(default_factory=list)
    p99_us: list[float] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)

    def median(self, values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")


def run_wrk(
    url: str,
    seconds: int,
    connections: int,
    headers: dict[str, str],
    script: Path | None = None,
    script_args: tuple[str, ...] = (),
) -> dict[str, float]:
    """Runs wrk once (one thread); returns requests/s, p50 and p99 latency (µs) and the error count."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    if script_args:
        argv += ["--", *script_args]
    output = subprocess.run(argv, capture_output=True, text=True, check=True).stdout  # noqa: S603
    rps = float(_find(r"Requests/sec:\s+([\d.]+)", output))
    p50 = _duration_us(_find(r"\s50%\s+(\S+)", output))
    p99 = _duration_us(_find(r"\s99%\s+(\S+)", output))
    errors = int(_find(r"Non-2xx or 3xx responses:\s+(\d+)", output, "0"))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return {"rps": rps, "p50": p50, "p99": p99, "errors": errors}


def _find(pattern: str, text: str, default: str | None = None) -> str:
    match = re.search(pattern, text)
    if match is None:
        if default is not None:
            return default
        raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{text}")
    return match.group(1)


def _duration_us(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise RuntimeError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * {"us": 1, "ms": 1_000, "s": 1_000_000}[match.group(2)]


def prepare_sessions_of(library: Path, redis_url: str, count: int) -> tuple[str, list[str]]:
    """``prepare_sessions`` run by the library of the checkout ``library``, in a process of its own
    (its sessions are stored in that version's format)."""
    env = {**os.environ, "PYTHONPATH": f"{library / 'middleware'}{os.pathsep}{Path(__file__).parent.parent}"}
    argv = [sys.executable, "-m", "bench.http", "--prepare-sessions", redis_url, str(count)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)  # noqa: S603
    access, *refresh_tokens = done.stdout.split()
    return access, refresh_tokens


async def prepare_sessions(redis_url: str, count: int) -> tuple[str, list[str]]:
    """Logs ``count`` sessions in; returns an access token and every session's refresh token."""
    auth = TokenAuth(secret_key=SECRET, redis_url=redis_url)
    await auth.startup()
    try:
        issued = [
            await auth.sessions.login(f"bench-{i}", {"email": "b@example.com"}, "wrk") for i in range(count)
        ]
        await auth.store.redis.set("bench:key", "hello")
    finally:
        await auth.shutdown()
    return issued[0].access_token, [s.refresh_token for s in issued]


def start_app(factory: str, redis_url: str, log_dir: Path, library: Path | None = None) -> AppServer:
    """Starts ``bench.apps:<factory>`` in uvicorn; with ``library``, on the starlette_refresh found
    there (its ``middleware/`` folder goes first on the child's path)."""
    env = {"BENCH_SECRET": SECRET, "BENCH_REDIS_URL": redis_url}
    if library is not None:
        env["PYTHONPATH"] = str(library / "middleware")
    server = AppServer(
        f"bench.apps:{factory}",
        env,
        factory=True,
        log_dir=log_dir,
        extra_args=["--no-access-log", "--log-level", "warning", "--workers", "1"],
    )
    server.start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per scenario, interleaved")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument(
        "--before", type=Path, help="a checkout of another version: measure its hot path in the same run"
    )
    parser.add_argument("--prepare-sessions", nargs=2, metavar=("URL", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare_sessions:
        access, refresh_tokens = asyncio.run(
            prepare_sessions(args.prepare_sessions[0], int(args.prepare_sessions[1]))
        )
        print(access, *refresh_tokens)
        return
    if args.before is not None and not (args.before / "middleware" / "starlette_refresh").is_dir():
        raise SystemExit(f"--before {args.before}: no middleware/starlette_refresh there")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: run scripts/bench, or apt-get install wrk")

    scenarios = [
        Scenario("bare /open (no auth middleware)", "bare", "/open"),
        Scenario("bare /open + token (same request, no auth)", "bare", "/open", token=True),
        Scenario("ours /open (excluded path, no token)", "ours", "/open"),
        Scenario("ours /protected (valid access token)", "ours", "/protected", token=True),
        *(
            [
                Scenario("before /open (that version, excluded path)", "before", "/open"),
                Scenario("before /protected (that version, token)", "before", "/protected", token=True),
                Scenario("before /redis-get (that version, one Redis GET)", "before", "/redis-get"),
                Scenario(
                    "before /auth/refresh (that version, rotation)", "before", "/auth/refresh", script=True
                ),
            ]
            if args.before
            else []
        ),
        Scenario("peer /open (no token)", "peer", "/open"),
        Scenario("peer /protected (pyjwt decode per request)", "peer", "/protected", token=True),
        *(
            [
                Scenario("authx /open (no token)", "authx", "/open"),
                Scenario("authx /protected (access_token_required)", "authx", "/protected", token=True),
            ]
            if AUTHX
            else []
        ),
        Scenario("ours /redis-get (one Redis GET)", "ours", "/redis-get"),
        Scenario("ours /auth/refresh (rotation)", "ours", "/auth/refresh", script=True),
    ]
    with tempfile.TemporaryDirectory(prefix="sr-bench-") as tmp:
        work = Path(tmp)
        redis = RedisServer(work / "redis", extra_args=["--appendfsync", "everysec"])
        redis.start()
        # The other version gets a Redis of its own: sharing one, this version would see a process of
        # an older release and write the older stored format for as long as it runs (format_watch).
        before_redis = RedisServer(work / "redis-before", extra_args=["--appendfsync", "everysec"])
        if args.before:
            before_redis.start()
        servers: dict[str, AppServer] = {}
        try:
            for factory in ("bare", "ours", "peer", *(["authx"] if AUTHX else [])):
                servers[factory] = start_app(factory, redis.url, work)
            if args.before:
                servers["before"] = start_app("ours", before_redis.url, work / "before", args.before)
            for round_number in range(args.rounds):
                for scenario in scenarios:
                    headers: dict[str, str] = {}
                    script_args: tuple[str, ...] = ()
                    if scenario.token or scenario.script:
                        tokens = work / f"tokens-{round_number}-{scenario.app}.txt"
                        count = REFRESH_SESSIONS if scenario.script else 1
                        if scenario.app == "before":
                            access, refresh_tokens = prepare_sessions_of(args.before, before_redis.url, count)
                        else:
                            access, refresh_tokens = asyncio.run(prepare_sessions(redis.url, count))
                        tokens.write_text("\n".join(refresh_tokens) + "\n")
                        headers["Authorization"] = (
                            f"Bearer {authx_token(SECRET) if scenario.app == 'authx' else access}"
                        )
                        script_args = (str(tokens),)
                    result = run_wrk(
                        servers[scenario.app].url + scenario.path,
                        args.seconds,
                        args.connections,
                        headers if scenario.token else {},
                        REFRESH_SCRIPT if scenario.script else None,
                        script_args if scenario.script else (),
                    )
                    scenario.rps.append(result["rps"])
                    scenario.p50_us.append(result["p50"])
                    scenario.p99_us.append(result["p99"])
                    scenario.errors.append(int(result["errors"]))
                    print(
                        f"  round {round_number + 1}: {scenario.name}: {result['rps']:,.0f} req/s", flush=True
                    )
        finally:
            for server in servers.values():
                server.stop()
            redis.stop()
            if args.before:
                before_redis.stop()
    report(scenarios, args)


def report(scenarios: list[Scenario], args: argparse.Namespace) -> None:
    by_name = {s.name.split(" (")[0]: s for s in scenarios}  # "bare /open + token", "ours /protected", ...
    print()
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, {platform.machine()}; "
        f"wrk -t1 -c{args.connections}, {args.seconds:g} s x {args.rounds} rounds (medians)"
    )
    print(f"{'scenario':<46} {'req/s':>9} {'p50 µs':>8} {'p99 µs':>8} {'errors':>7}")
    for s in scenarios:
        print(
            f"{s.name:<46} {s.median(s.rps):>9,.0f} {s.median(s.p50_us):>8,.0f} "
            f"{s.median(s.p99_us):>8,.0f} {sum(s.errors):>7}"
        )
    ratios = [
        ("ours: protected / open, same app (headline)", "ours /protected", "ours /open"),
        ("ours: protected / same request to a bare app", "ours /protected", "bare /open + token"),
        ("ours: protected / bare app, no token", "ours /protected", "bare /open"),
        ("peer: protected / open, same app", "peer /protected", "peer /open"),
        ("ours protected / peer protected", "ours /protected", "peer /protected"),
        ("refresh / one Redis GET", "ours /auth/refresh", "ours /redis-get"),
    ]
    if AUTHX:
        ratios[4:4] = [
            ("authx: protected / open, same app", "authx /protected", "authx /open"),
            ("ours protected / authx protected", "ours /protected", "authx /protected"),
        ]
    else:
        print("(AuthX not installed: scripts/bench installs it with the bench extra)")
    if args.before:
        ratios[1:1] = [
            ("before: protected / open, same app (headline)", "before /protected", "before /open"),
            ("ours protected / before protected", "ours /protected", "before /protected"),
        ]
        ratios.append(("before: refresh / one Redis GET", "before /auth/refresh", "before /redis-get"))
    print()
    for label, top, bottom in ratios:
        top_rps, bottom_rps = (
            by_name[top].median(by_name[top].rps),
            by_name[bottom].median(by_name[bottom].rps),
        )
        print(f"{label:<52} {top_rps / bottom_rps:>7.1%} of the throughput")


if __name__ == "__main__":
    main()
