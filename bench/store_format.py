"""What a session costs Redis, this version against another, measured in one run.

For each version (this checkout, and with ``--before DIR`` the library of another checkout, e.g. the
previous release: ``git worktree add /tmp/before v0.1.0``), a worker process with that version's
library first on its path starts its own ``redis-server`` (7.x as installed, default settings but
``appendonly yes`` / ``appendfsync everysec``), logs sessions in through ``SessionService.login``
(subject ``user-NNNNNNN``, claims ``{"email": ...}``, a 111-character Chrome User-Agent) and reports:

- bytes of Redis per session (``used_memory`` delta / sessions) at each ``--sessions`` checkpoint,
  and with three sessions per user;
- Redis CPU per refresh: ``evalsha`` ``usec_per_call`` (the script) and the server's whole CPU
  (``used_cpu_user + used_cpu_sys``) over ``--refreshes`` refreshes, divided by their number;
- commands per refresh: every command Redis ran (``INFO commandstats``, which counts the commands a
  script calls) divided by the refreshes.

The table puts the versions side by side with the ratio. Run:
``.venv/bin/python -m bench.store_format --before /tmp/before [--sessions 100000,1000000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import SECRET
from harness.processes import RedisServer

USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
IN_FLIGHT = 100
SHAPE_SESSIONS = 30_000
ROOT = Path(__file__).resolve().parent.parent


async def used_memory(probe: Any) -> int:
    for _ in range(600):  # a background AOF rewrite or RDB save forks; measure after it
        persistence = await probe.info("persistence")
        if not persistence.get("aof_rewrite_in_progress") and not persistence.get("rdb_bgsave_in_progress"):
            break
        await asyncio.sleep(0.5)
    return int((await probe.info("memory"))["used_memory"])


async def login_many(sessions: Any, count: int, subject_of: Any, keep: list[str], keep_every: int) -> None:
    """Logs ``count`` sessions in, ``IN_FLIGHT`` at a time; keeps every ``keep_every``-th refresh token."""
    queue = iter(range(count))

    async def worker() -> None:
        for n in queue:
            issued = await sessions.login(subject_of(n), {"email": f"user{n}@example.com"}, USER_AGENT)
            if n % keep_every == 0:
                keep.append(issued.refresh_token)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


async def refresh_cost(sessions: Any, probe: Any, tokens: list[str]) -> dict[str, float]:
    """Refreshes each token once (sequentially: one script at a time, as under light load)."""
    await probe.config_resetstat()
    before = await probe.info("cpu")
    for token in tokens:
        await sessions.refresh(token)
    after = await probe.info("cpu")
    stats = await probe.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    calls.pop("info", None)
    cpu = sum(float(after[k]) - float(before[k]) for k in ("used_cpu_user", "used_cpu_sys"))
    inside = {name: n / len(tokens) for name, n in calls.items() if name not in ("evalsha", "eval")}
    return {
        "evalsha_usec": float(stats["cmdstat_evalsha"]["usec_per_call"]),
        "server_cpu_usec": cpu * 1e6 / len(tokens),
        "round_trips": (calls.get("evalsha", 0) + calls.get("eval", 0)) / len(tokens),
        "commands": sum(inside.values()),
        "command_names": inside,  # type: ignore[dict-item]
    }


async def worker(checkpoints: list[int], refreshes: int) -> dict[str, Any]:
    """Runs in the version's own process; returns its measurements."""
    import starlette_refresh
    from starlette_refresh import TokenAuth

    result: dict[str, Any] = {"library": str(Path(starlette_refresh.__file__).parent.parent)}
    with tempfile.TemporaryDirectory(prefix="sr-format-") as tmp:
        server = RedisServer(Path(tmp), extra_args=["--appendfsync", "everysec"])
        server.start()
        try:
            auth = TokenAuth(secret_key=SECRET, redis_url=server.url)
            await auth.startup()
            await auth.revocation_feed.stop()
            probe = aioredis.Redis.from_url(server.url)
            result["redis"] = (await probe.info("server"))["redis_version"]
            base = await used_memory(probe)
            three = 3 * (SHAPE_SESSIONS // 3)
            await login_many(auth.sessions, three, lambda n: f"three-{n // 3:07d}", [], 10**9)
            result["three_per_user"] = (await used_memory(probe) - base) / three
            await probe.flushall()
            base = await used_memory(probe)
            kept: list[str] = []
            stored, points = 0, {}
            keep_every = max(1, checkpoints[-1] // (4 * refreshes))
            for target in checkpoints:
                await login_many(
                    auth.sessions, target - stored, lambda n, s=stored: f"user-{s + n:07d}", kept, keep_every
                )
                stored = target
                points[str(target)] = (await used_memory(probe) - base) / target
            result["bytes_per_session"] = points
            random.Random(7).shuffle(kept)
            result["refresh"] = await refresh_cost(auth.sessions, probe, kept[:refreshes])
            await probe.aclose()
            await auth.shutdown()
        finally:
            server.stop()
    return result


def run_version(library: Path, checkpoints: list[int], refreshes: int) -> dict[str, Any]:
    """Measures the library under ``library`` (a checkout) in a process of its own."""
    env = {**os.environ, "PYTHONPATH": f"{library / 'middleware'}{os.pathsep}{ROOT}"}
    argv = [
        sys.executable,
        "-m",
        "bench.store_format",
        "--worker",
        "--sessions",
        ",".join(map(str, checkpoints)),
    ]
    argv += ["--refreshes", str(refreshes)]
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode:
        raise SystemExit(f"the worker for {library} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def report(versions: dict[str, dict[str, Any]], checkpoints: list[int]) -> None:
    names = list(versions)
    print(f"\n{'':<44}" + "".join(f"{n:>14}" for n in names) + (f"{'ratio':>10}" if len(names) == 2 else ""))
    rows: list[tuple[str, list[float], str]] = []
    for n in checkpoints:
        rows.append(
            (
                f"bytes per session, {n:,} sessions",
                [v["bytes_per_session"][str(n)] for v in versions.values()],
                "{:,.0f}",
            )
        )
    rows.append(
        (
            "bytes per session, 3 sessions per user",
            [v["three_per_user"] for v in versions.values()],
            "{:,.0f}",
        )
    )
    for key, label in (
        ("evalsha_usec", "Redis CPU per refresh, script (µs)"),
        ("server_cpu_usec", "Redis CPU per refresh, whole server (µs)"),
        ("commands", "commands inside a refresh"),
        ("round_trips", "round trips per refresh"),
    ):
        rows.append((label, [v["refresh"][key] for v in versions.values()], "{:,.1f}"))
    for label, values, fmt in rows:
        ratio = f"{values[1] / values[0]:>10.2f}" if len(values) == 2 and values[0] else ""
        print(f"{label:<44}" + "".join(f"{fmt.format(x):>14}" for x in values) + ratio)
    for name, v in versions.items():
        used = ", ".join(f"{c} {n:.2f}" for c, n in sorted(v["refresh"]["command_names"].items()))
        print(f"{name}: redis {v['redis']}, library {v['library']}; per refresh: {used}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``argv``, default ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(prog="python -m bench.store_format", description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a checkout of another version, measured in the same run")
    parser.add_argument("--sessions", default="100000,1000000", help="checkpoints, comma-separated")
    parser.add_argument("--refreshes", type=int, default=5_000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    checkpoints = sorted(int(n) for n in args.sessions.split(","))
    if args.worker:
        print(json.dumps(asyncio.run(worker(checkpoints, args.refreshes))))
        return
    versions: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    if args.before is not None:
        versions["before"] = run_version(args.before.resolve(), checkpoints, args.refreshes)
    versions["this version"] = run_version(ROOT, checkpoints, args.refreshes)
    report(versions, checkpoints)
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
