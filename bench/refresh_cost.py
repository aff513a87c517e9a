"""How much one login, one refresh and one protected request cost against a real redis-server.

Starts its own redis-server (append-only, ``appendfsync everysec``) on a free port, drives the
session service in-process, and reports:

- Redis round trips and commands per operation, counted from ``INFO commandstats`` deltas;
- refresh latency (p50/p99) next to a plain Redis ``GET`` measured in the same run, as a ratio;
- Redis memory per session from ``INFO memory`` deltas over many sessions.

Run: ``.venv/bin/python -m bench.refresh_cost`` (after ``tests/run`` has set up the venv).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import SECRET
from harness.processes import RedisServer
from starlette_refresh import TokenAuth

SAMPLES = 2000
SESSIONS_FOR_MEMORY = 20_000


async def command_counts(client: Any) -> dict[str, int]:
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    names = set(before) | set(after)
    changed = {n: after.get(n, 0) - before.get(n, 0) for n in names}
    return {n: c for n, c in sorted(changed.items()) if c and n not in ("info",)}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(url: str) -> None:
    auth = TokenAuth(secret_key=SECRET, redis_url=url)
    await auth.startup()
    # The revocation feed's own traffic (one subscription, a PING per quiet 5 s) is per process,
    # not per operation: stop it so the counts below are the operations' alone.
    await auth.revocation_feed.stop()
    probe = aioredis.Redis.from_url(url)
    sessions = auth.sessions

    before = await command_counts(probe)
    issued = await sessions.login("bench-user", {"email": "b@example.com"}, "bench")
    after_login = await command_counts(probe)
    issued = await sessions.refresh(issued.refresh_token)
    after_refresh = await command_counts(probe)
    auth.verify_access_token(issued.access_token)
    after_verify = await command_counts(probe)
    print("Redis commands per operation (INFO commandstats deltas, the probe's own INFO excluded):")
    print(f"  login:             {delta(before, after_login)}")
    print(f"  refresh:           {delta(after_login, after_refresh)}")
    print(f"  protected request: {delta(after_refresh, after_verify) or 'none'}")

    await probe.set("bench:key", "x" * 64)
    get_times, refresh_times = [], []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        await probe.get("bench:key")
        get_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        issued = await sessions.refresh(issued.refresh_token)
        refresh_times.append(time.perf_counter() - started)
    print(f"\nLatency over {SAMPLES} sequential operations (one connection, loopback):")
    for name, values in (("redis GET", get_times), ("refresh", refresh_times)):
        p50, p99 = percentile(values, 0.5) * 1e6, percentile(values, 0.99) * 1e6
        print(f"  {name:10s} p50 {p50:7.0f} us   p99 {p99:7.0f} us")
    ratio = statistics.median(refresh_times) / statistics.median(get_times)
    print(f"  refresh / GET median ratio: {ratio:.2f}")

    await probe.flushall()
    used_before = (await probe.info("memory"))["used_memory"]
    for i in range(SESSIONS_FOR_MEMORY):
        await sessions.login(
            f"user-{i}", {"email": f"user-{i}@example.com"}, "Mozilla/5.0 (X11; Linux x86_64)"
        )
    used_after = (await probe.info("memory"))["used_memory"]
    per_session = (used_after - used_before) / SESSIONS_FOR_MEMORY
    print(
        f"\nRedis memory per session (one user each, 2 keys): {per_session:.0f} bytes "
        f"over {SESSIONS_FOR_MEMORY} sessions"
    )
    await probe.aclose()
    await auth.shutdown()


def main() -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        server = RedisServer(Path(data_dir), extra_args=["--appendfsync", "everysec"])
        server.start()
        try:
            asyncio.run(measure(server.url))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
