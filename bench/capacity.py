"""Measured inputs for a "one million concurrent sessions" capacity calculation.

Starts its own redis-server (append-only, ``appendfsync everysec``) on a free port, fills it with N
sessions through the library's real login path, and at 1k, 10k, 100k and 1M stored sessions (those
up to N) measures:

- Redis memory per session (``INFO memory`` deltas) and ``MEMORY USAGE`` of one session hash and one
  user index;
- refresh latency p50/p99 over sequential refreshes of randomly sampled sessions, next to a plain
  ``GET`` in the same run, and the server-side cost of one refresh (``evalsha`` ``usec_per_call``);
- refresh throughput of this one Python process with 64 concurrent refreshes, with the CPU both
  sides spent per refresh.

Then it prints the capacity calculation for 1,000,000 concurrent sessions with every input spelled
out. Run: ``.venv/bin/python -m bench.capacity [--sessions N] [--access-ttl S]
[--requests-per-user-per-minute R]``; the default N = 1,000,000 takes a few minutes and about
1.3 GB of Redis memory.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import SECRET
from bench.refresh_cost import command_counts, percentile
from harness.processes import RedisServer
from starlette_refresh import TokenAuth
from starlette_refresh.errors import InvalidGrant, StoreUnavailable
from starlette_refresh.sessions import SessionService
from starlette_refresh.store import RedisStore

TARGET_SESSIONS = 1_000_000
TARGETS = (1_000_000, 10_000_000)  # the calculation is printed for each
CHECKPOINTS = (1_000, 10_000, 100_000, 1_000_000)
SAMPLE_SIZE = 20_000
LATENCY_SAMPLES = 2_000
THROUGHPUT_TASKS = 64
THROUGHPUT_SECONDS = 5.0
CPU_LOOP_SECONDS = 2.0
PEAK_FACTOR = 3
PROGRESS_EVERY = 100_000
SHAPE_SESSIONS = 30_000
# As many logins in flight as the store has connections (store_max_connections, default 100): more
# would only queue inside the store.
FILL_IN_FLIGHT = 100
# A current desktop browser's User-Agent (111 characters). The store keeps the short label derived
# from it ("Chrome 126 on Windows"), so its length no longer matters; SHORT_USER_AGENT shows that.
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
SHORT_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64)"


class StopRequest:
    """Set by SIGINT or SIGTERM, which also cancel the run.

    Cancelling alone is not enough: Python 3.11's ``asyncio.wait_for``, which redis-py uses to send
    each command, drops a cancellation that arrives just as the send completes, and a worker whose
    cancellation was dropped would carry on to the end of its loop. So the loops check this too.
    """

    def __init__(self) -> None:
        self.requested = False

    def check(self) -> None:
        """Raises CancelledError once a stop was requested."""
        if self.requested:
            raise asyncio.CancelledError


STOP = StopRequest()


class Reservoir:
    """A uniform random sample of refresh tokens over every session stored so far (algorithm R).

    Uniform at every checkpoint, so the refreshes measured at 1M touch keys spread over the whole
    keyspace rather than the few most recently written (and cached) ones.
    """

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size = size
        self.tokens: list[str] = []
        self.seen = 0
        self._rng = rng

    def offer(self, token: str) -> None:
        """Considers the refresh token of one more stored session."""
        self.seen += 1
        if len(self.tokens) < self.size:
            self.tokens.append(token)
            return
        slot = self._rng.randrange(self.seen)
        if slot < self.size:
            self.tokens[slot] = token


@dataclass(slots=True)
class Checkpoint:
    """Everything measured with ``sessions`` sessions stored."""

    sessions: int
    used_memory_delta: int
    keyspace_delta: int
    key_bytes: int
    key_encoding: str
    get_p50_us: float
    get_p99_us: float
    refresh_p50_us: float
    refresh_p99_us: float
    evalsha_usec: float
    get_usec: float
    refreshes_per_s: float = 0.0
    python_cpu_us: float = 0.0
    redis_cpu_us: float = 0.0
    loaded_evalsha_usec: float = 0.0
    errors: int = 0
    rewrite_wait_s: float = 0.0
    load_average: float = 0.0

    @property
    def bytes_per_session(self) -> float:
        """Keyspace memory per stored session (client and AOF buffers excluded)."""
        return self.keyspace_delta / self.sessions


@dataclass(slots=True)
class CpuRates:
    """Single-core, in-process rates of the CPU-only steps (no Redis involved)."""

    verify_per_s: float
    issue_per_s: float
    refresh_token_per_s: float


async def memory(probe: Any) -> tuple[int, int]:
    """``used_memory``, and the same without client, replica and AOF buffers.

    The second is what the sessions themselves occupy: the buffers belong to connections (the fill
    keeps 100 open) and to persistence, and at the first checkpoint would be charged to 1,000 sessions.
    """
    info = await probe.info("memory")
    used = int(info["used_memory"])
    buffers = sum(
        int(info.get(name, 0))
        for name in ("mem_clients_normal", "mem_clients_slaves", "mem_aof_buffer", "mem_replication_backlog")
    )
    return used, used - buffers


async def usec_per_call(probe: Any) -> dict[str, float]:
    """``usec_per_call`` of every command since the last ``CONFIG RESETSTAT``."""
    stats = await probe.info("commandstats")
    return {name.removeprefix("cmdstat_"): float(value["usec_per_call"]) for name, value in stats.items()}


async def redis_cpu_seconds(probe: Any) -> float:
    """CPU the server process has used so far (all threads, user + system)."""
    info = await probe.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_store(auth: TokenAuth) -> RedisStore:
    """The auth's store, typed as the Redis one whose key names the memory probes need."""
    assert isinstance(auth.store, RedisStore)
    return auth.store


def shape_subject(prefix: str, per_user: int) -> Callable[[int], str]:
    """Subjects for the n-th session when every user has ``per_user`` sessions."""
    return lambda n: f"{prefix}-{n // per_user}"


async def wait_for_aof_rewrite(probe: Any, limit: float = 120.0) -> float:
    """Waits (up to ``limit`` seconds) while Redis rewrites its AOF; returns the seconds waited.

    The rewrite child competes for the same cores and its fork stalls the server, so a checkpoint
    that overlapped one would measure the rewrite rather than the refresh.
    """
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        persistence = await probe.info("persistence")
        if not int(persistence.get("aof_rewrite_in_progress", 0)):
            break
        await asyncio.sleep(0.2)
    return time.perf_counter() - started


class Progress:
    """Prints a line every ``PROGRESS_EVERY`` stored sessions, with the login rate since the last one."""

    def __init__(self) -> None:
        self.started = self.last_time = time.perf_counter()
        self.last_count = 0

    def tick(self, stored: int) -> None:
        """Called after each stored session."""
        if stored % PROGRESS_EVERY:
            return
        now = time.perf_counter()
        recent = (stored - self.last_count) / (now - self.last_time)
        print(
            f"  ... {stored:>9,} sessions stored, {now - self.started:6.1f} s, {recent:,.0f} logins/s",
            flush=True,
        )
        self.last_time, self.last_count = now, stored

    def paused(self, seconds: float) -> None:
        """Leaves a checkpoint's time out of the next login rate."""
        self.last_time += seconds


async def fill(
    sessions: SessionService,
    reservoir: Reservoir,
    stop: int,
    subject: Callable[[int], str],
    progress: Progress | None = None,
    user_agent: str = USER_AGENT,
) -> None:
    """Logs in sessions ``reservoir.seen`` .. ``stop - 1``, ``FILL_IN_FLIGHT`` at a time."""
    numbers = iter(range(reservoir.seen, stop))

    async def worker() -> None:
        for n in numbers:
            STOP.check()
            name = subject(n)
            issued = await sessions.login(name, {"email": f"{name}@example.com"}, user_agent)
            reservoir.offer(issued.refresh_token)
            if progress is not None:
                progress.tick(reservoir.seen)

    await asyncio.gather(*(worker() for _ in range(min(FILL_IN_FLIGHT, stop - reservoir.seen))))


async def refresh_latency(
    sessions: SessionService, probe: Any, reservoir: Reservoir, rng: random.Random
) -> tuple[list[float], list[float], int]:
    """Sequential GETs and refreshes of random sampled sessions, interleaved; returns both timings."""
    await probe.set("bench:key", "x" * 64)
    get_times: list[float] = []
    refresh_times: list[float] = []
    errors = 0
    tokens = reservoir.tokens
    for _ in range(LATENCY_SAMPLES):
        STOP.check()
        slot = rng.randrange(len(tokens))
        started = time.perf_counter()
        await probe.get("bench:key")
        get_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        try:
            issued = await sessions.refresh(tokens[slot])
        except (InvalidGrant, StoreUnavailable):
            errors += 1
            continue
        refresh_times.append(time.perf_counter() - started)
        tokens[slot] = issued.refresh_token
    return get_times, refresh_times, errors


async def refresh_throughput(sessions: SessionService, reservoir: Reservoir) -> tuple[int, float, int]:
    """Refreshes for ``THROUGHPUT_SECONDS`` from ``THROUGHPUT_TASKS`` tasks; (count, seconds, errors).

    Each task owns its own sampled sessions: two tasks refreshing one session at once would look like
    token reuse (or a grace-window answer), which is a different and rarer path.
    """
    tokens = reservoir.tokens
    tasks = min(THROUGHPUT_TASKS, len(tokens))
    done = errors = 0
    started = time.perf_counter()
    deadline = started + THROUGHPUT_SECONDS

    async def worker(first: int) -> None:
        nonlocal done, errors
        while True:
            for slot in range(first, len(tokens), tasks):
                STOP.check()
                if time.perf_counter() >= deadline:
                    return
                try:
                    issued = await sessions.refresh(tokens[slot])
                except (InvalidGrant, StoreUnavailable):
                    errors += 1
                    continue
                tokens[slot] = issued.refresh_token
                done += 1

    await asyncio.gather(*(worker(k) for k in range(tasks)))
    return done, time.perf_counter() - started, errors


async def checkpoint(
    auth: TokenAuth, probe: Any, reservoir: Reservoir, baseline: tuple[int, int], rng: random.Random
) -> Checkpoint:
    """Measures memory, latency, server cost and throughput with ``reservoir.seen`` sessions stored."""
    sessions = auth.sessions
    stored = reservoir.seen
    waited = await wait_for_aof_rewrite(probe)
    used, keyspace = await memory(probe)
    parsed = sessions.refresh_codec.parse(reservoir.tokens[rng.randrange(len(reservoir.tokens))])
    user_key = redis_store(auth).layout.user(parsed.user_tag)
    key_bytes = await probe.memory_usage(user_key, samples=0)

    await probe.config_resetstat()
    get_times, refresh_times, errors = await refresh_latency(sessions, probe, reservoir, rng)
    costs = await usec_per_call(probe)
    calls = await command_counts(probe)
    # One EVALSHA per refresh and nothing else: anything more would make usec_per_call understate it.
    if calls.get("evalsha") != LATENCY_SAMPLES or errors:
        print(f"  !! {calls.get('evalsha')} EVALSHA for {LATENCY_SAMPLES} refreshes, {errors} errors")
    point = Checkpoint(
        sessions=stored,
        used_memory_delta=used - baseline[0],
        keyspace_delta=keyspace - baseline[1],
        key_bytes=int(key_bytes or 0),
        key_encoding=(await probe.object("encoding", user_key)).decode(),
        get_p50_us=percentile(get_times, 0.5) * 1e6,
        get_p99_us=percentile(get_times, 0.99) * 1e6,
        refresh_p50_us=percentile(refresh_times, 0.5) * 1e6,
        refresh_p99_us=percentile(refresh_times, 0.99) * 1e6,
        evalsha_usec=costs.get("evalsha", math.nan),
        get_usec=costs.get("get", math.nan),
        errors=errors,
        rewrite_wait_s=waited,
        load_average=os.getloadavg()[0],
    )

    await probe.config_resetstat()
    redis_before, python_before = await redis_cpu_seconds(probe), time.process_time()
    done, seconds, failed = await refresh_throughput(sessions, reservoir)
    redis_after, python_after = await redis_cpu_seconds(probe), time.process_time()
    point.refreshes_per_s = done / seconds
    point.python_cpu_us = (python_after - python_before) / max(done, 1) * 1e6
    point.redis_cpu_us = (redis_after - redis_before) / max(done, 1) * 1e6
    point.loaded_evalsha_usec = (await usec_per_call(probe)).get("evalsha", math.nan)
    point.errors += failed
    print(
        f"  checkpoint {stored:>9,}: {point.bytes_per_session:5.0f} B/session, refresh p50 "
        f"{point.refresh_p50_us:4.0f} us, evalsha {point.evalsha_usec:5.1f} us, "
        f"{point.refreshes_per_s:,.0f} refreshes/s in-process, host load {point.load_average:.2f}"
        + (f" (waited {waited:.1f} s for an AOF rewrite first)" if waited >= 0.5 else ""),
        flush=True,
    )
    return point


def rate(operation: Callable[[], object], seconds: float = CPU_LOOP_SECONDS) -> float:
    """Calls per second of a synchronous ``operation`` run back to back on this one thread."""
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        STOP.check()
        for _ in range(200):
            operation()
        calls += 200
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - started)


async def cpu_rates(auth: TokenAuth, reservoir: Reservoir) -> CpuRates:
    """The CPU-only steps of a refresh and of a protected request, one core."""
    sessions = auth.sessions
    issued = await sessions.refresh(reservoir.tokens[0])
    reservoir.tokens[0] = issued.refresh_token
    claims = auth.access.verify(issued.access_token)
    app_claims = {k: v for k, v in claims.items() if k not in ("sub", "sid", "jti", "iat", "exp")}
    parsed = sessions.refresh_codec.parse(issued.refresh_token)
    codec = sessions.refresh_codec

    def refresh_token_step() -> None:
        codec.parse(issued.refresh_token)
        codec.mint(parsed.user_tag, parsed.session_id, parsed.generation + 1)

    return CpuRates(
        verify_per_s=rate(lambda: auth.access.verify(issued.access_token)),
        issue_per_s=rate(lambda: auth.access.issue(issued.subject, issued.session_id, app_claims)),
        refresh_token_per_s=rate(refresh_token_step),
    )


@dataclass(frozen=True, slots=True)
class Shape:
    """Memory of ``SHAPE_SESSIONS`` sessions of one shape."""

    per_user: int
    user_agent: str
    bytes_per_session: float
    key_encoding: str


async def shapes(auth: TokenAuth, probe: Any, rng: random.Random) -> list[Shape]:
    """Bytes per session with 1 and 3 sessions per user, and with a short User-Agent; then FLUSHALL."""
    results = []
    for per_user, agent in ((1, USER_AGENT), (3, USER_AGENT), (1, SHORT_USER_AGENT)):
        baseline = await memory(probe)
        scratch = Reservoir(1, rng)
        subject = shape_subject(f"shape-{per_user}-{len(agent)}", per_user)
        await fill(auth.sessions, scratch, SHAPE_SESSIONS, subject, None, agent)
        used = (await memory(probe))[1] - baseline[1]
        parsed = auth.sessions.refresh_codec.parse(scratch.tokens[0])
        encoding = await probe.object("encoding", redis_store(auth).layout.user(parsed.user_tag))
        results.append(Shape(per_user, agent, used / SHAPE_SESSIONS, encoding.decode()))
        await probe.flushall()
    return results


async def measure(url: str, args: argparse.Namespace) -> None:
    """Fills the server at ``url`` and prints the measurements and the capacity calculation."""
    run_started = time.perf_counter()
    auth = TokenAuth(secret_key=SECRET, redis_url=url, access_ttl=args.access_ttl)
    await auth.startup()
    # The revocation feed's own traffic (one subscription, a PING per quiet 5 s) is per process,
    # not per operation: stop it so the counts below are the operations' alone.
    await auth.revocation_feed.stop()
    probe = aioredis.Redis.from_url(url)
    rng = random.Random(20240601)
    try:
        server = await probe.info("server")
        print(
            f"redis-server {server['redis_version']} on {url} (appendonly yes, appendfsync everysec), "
            f"filling {args.sessions:,} sessions through SessionService.login, {FILL_IN_FLIGHT} in flight"
        )
        print(
            f"session shape: subject 'user-NNNNNNN', claims {{'email': ...}} (~30 B of JSON), "
            f"User-Agent {len(USER_AGENT)} chars\n"
        )

        shaped = await shapes(auth, probe, rng)

        baseline = await memory(probe)
        reservoir = Reservoir(SAMPLE_SIZE, rng)
        points: list[Checkpoint] = []
        progress = Progress()
        fill_seconds = 0.0
        # A --sessions that is no checkpoint is measured as one more, so the calculation uses all of it.
        for target in sorted({c for c in CHECKPOINTS if c <= args.sessions} | {args.sessions}):
            begun = time.perf_counter()
            await fill(auth.sessions, reservoir, target, lambda n: f"user-{n:07d}", progress)
            fill_seconds += time.perf_counter() - begun
            begun = time.perf_counter()
            STOP.check()
            points.append(await checkpoint(auth, probe, reservoir, baseline, rng))
            progress.paused(time.perf_counter() - begun)
        keys = await probe.dbsize()
        final_memory = await probe.info("memory")
        persistence = await probe.info("persistence")
        rates = await cpu_rates(auth, reservoir)
    finally:
        await probe.aclose()
        await auth.shutdown()

    report(
        args,
        points,
        shaped,
        rates,
        logins_per_s=args.sessions / fill_seconds,
        keys=keys,
        final_memory=final_memory,
        aof_bytes=int(persistence.get("aof_current_size", 0)),
    )
    print(f"\nwall time {time.perf_counter() - run_started:.0f} s")


def report(
    args: argparse.Namespace,
    points: list[Checkpoint],
    shaped: list[Shape],
    rates: CpuRates,
    *,
    logins_per_s: float,
    keys: int,
    final_memory: dict[str, Any],
    aof_bytes: int,
) -> None:
    """Prints the measurement table and the capacity calculation."""
    last = points[-1]
    print(
        f"\nMeasurements ({LATENCY_SAMPLES} sequential refreshes of random sampled sessions per checkpoint,"
    )
    print("one loopback connection; throughput: 64 concurrent refreshes for 5 s in this one process)")
    header = (
        f"{'sessions':>10} {'B/session':>9} {'(raw)':>7} {'key B':>6} "
        f"{'GET p50/p99 us':>15} {'refresh p50/p99 us':>19} {'ratio':>5} {'evalsha us':>10} "
        f"{'refresh/s':>9} {'py CPU us':>9} {'redis CPU us':>12} {'errors':>6} {'load':>5}"
    )
    print(header)
    print("-" * len(header))
    for p in points:
        print(
            f"{p.sessions:>10,} {p.bytes_per_session:>9.0f} {p.used_memory_delta / p.sessions:>7.0f} "
            f"{p.key_bytes:>6} "
            f"{p.get_p50_us:>7.0f}/{p.get_p99_us:<7.0f} {p.refresh_p50_us:>9.0f}/{p.refresh_p99_us:<9.0f} "
            f"{p.refresh_p50_us / p.get_p50_us:>5.1f} {p.evalsha_usec:>10.1f} "
            f"{p.refreshes_per_s:>9,.0f} {p.python_cpu_us:>9.0f} {p.redis_cpu_us:>12.1f} {p.errors:>6} "
            f"{p.load_average:>5.2f}"
        )
    loaded = ", ".join(f"{p.loaded_evalsha_usec:.1f}" for p in points)
    encodings = "/".join(sorted({p.key_encoding for p in points}))
    print(
        "  B/session: used_memory delta without client and AOF buffers; (raw): the plain used_memory delta.\n"
        "  evalsha us: INFO commandstats usec_per_call in the sequential sample: script execution only\n"
        f"  (under the 64-task load: {loaded} us).\n"
        f"  key B: MEMORY USAGE of one user's key (every session of the user), encoded as {encodings}.\n"
        "  redis CPU us: the server's whole CPU (user + sys, all threads: protocol parsing, replies, AOF\n"
        "  writes) per refresh under that load. py CPU us: this process's CPU per refresh under that load.\n"
        f"  load: the host's 1-minute load average ({os.cpu_count()} CPUs) at the checkpoint; above\n"
        "  ~1.5 means other processes competed with this benchmark and Redis for the cores."
    )
    rss = int(final_memory["used_memory_rss"])
    print(
        f"\nAt {last.sessions:,} sessions: {keys:,} keys, used_memory {final_memory['used_memory_human']}, "
        f"RSS {rss / 2**20:,.0f} MiB (fragmentation ratio {final_memory['mem_fragmentation_ratio']}), "
        f"AOF {aof_bytes / 2**20:,.0f} MiB on disk"
    )
    print(f"Session shapes, {SHAPE_SESSIONS:,} sessions each:")
    for shape in shaped:
        per_user = shape.bytes_per_session * shape.per_user
        print(
            f"  {shape.per_user} session(s) per user, User-Agent {len(shape.user_agent):>3} chars: "
            f"{shape.bytes_per_session:5.0f} B/session, {per_user:5.0f} B/user, "
            f"user key encoded as {shape.key_encoding}"
        )
    print(f"Logins while filling: {logins_per_s:,.0f}/s (one process, {FILL_IN_FLIGHT} in flight)")
    print(
        f"CPU-only steps, one core: access-token verify {rates.verify_per_s:,.0f}/s "
        f"({1e6 / rates.verify_per_s:.0f} us),\n  access-token sign {rates.issue_per_s:,.0f}/s "
        f"({1e6 / rates.issue_per_s:.0f} us), refresh-token parse + mint {rates.refresh_token_per_s:,.0f}/s "
        f"({1e6 / rates.refresh_token_per_s:.0f} us)"
    )
    for target in TARGETS:
        capacity(args, last, rates, rss, target)


def capacity(args: argparse.Namespace, last: Checkpoint, rates: CpuRates, rss: int, target: int) -> None:
    """Prints the calculation for ``target`` sessions from the largest checkpoint's measurements
    (bytes and CPU per session do not grow with the number of sessions)."""
    lifetime = args.access_ttl
    # As computeMarginMs in static/refresh-manager.js.
    margin = min(max(60.0, lifetime / 10), lifetime / 2)
    interval = lifetime - margin
    average = target / interval
    peak = average * PEAK_FACTOR
    gb = 1e9
    dataset = last.bytes_per_session * target / gb
    measured_at = "" if last.sessions >= target else f", extrapolated from {last.sessions:,}"
    script_cores = peak * last.evalsha_usec / 1e6
    server_cores = peak * last.redis_cpu_us / 1e6
    app_processes = peak / last.refreshes_per_s
    requests = target * args.requests_per_user_per_minute / 60
    verify_cores = requests / rates.verify_per_s

    print(f"\nCapacity for {target:,} concurrent sessions")
    print("=" * 44)
    print(
        f"Inputs: access lifetime {lifetime} s; refresh-manager margin "
        f"min(max(60, {lifetime}/10), {lifetime}/2) = {margin:.0f} s,\n"
        f"  so a session refreshes every {lifetime} - {margin:.0f} = {interval:.0f} s\n"
        "  (once per browser, not per tab: tabs share one refresh through Web Locks + BroadcastChannel).\n"
        f"  Assumptions: every session has an open tab (worst case); peak = {PEAK_FACTOR} x average."
    )
    print(f"Refreshes: {target:,} / {interval:.0f} s = {average:,.0f}/s average, {peak:,.0f}/s peak")
    print(
        f"Redis memory: {last.bytes_per_session:.0f} B x {target:,} = {dataset:.2f} GB of sessions "
        f"(measured{measured_at};\n  RSS at {last.sessions:,} sessions: {rss / gb:.2f} GB).\n"
        f"  A replica holds a second copy: {2 * dataset:.2f} GB in all. Recommended x2 headroom: "
        f"{2 * dataset:.2f} GB of memory\n"
        "  per node, because an AOF rewrite or a replica sync forks and copy-on-write duplicates the pages\n"
        "  written meanwhile. Keep maxmemory-policy noeviction: an evicted session logs its user out.\n"
        "  A Cluster divides the sessions between its primaries."
    )
    print(
        f"Redis CPU: {peak:,.0f}/s x {last.evalsha_usec:.1f} us (evalsha) = {script_cores:.3f} cores for the "
        f"scripts\n  (bound: {1e6 / last.evalsha_usec:,.0f} refreshes/s per core); with protocol, replies "
        f"and AOF writes\n  {peak:,.0f}/s x {last.redis_cpu_us:.1f} us = {server_cores:.3f} cores "
        f"(bound: {1e6 / last.redis_cpu_us:,.0f} refreshes/s per core).\n"
        f"  Primaries needed for the refresh load: {max(1, math.ceil(server_cores))}; a Cluster with "
        "failover needs 3 primaries anyway."
    )
    print(
        f"App processes for refreshes: {peak:,.0f}/s / {last.refreshes_per_s:,.0f}/s per process = "
        f"{app_processes:.2f} -> {max(1, math.ceil(app_processes))}\n"
        "  (library CPU only: JWT signing + MAC + one Redis round trip, measured in-process; HTTP parsing,\n"
        "  routing, cookies and uvicorn add to it, so take the per-request figure from the performance\n"
        "  benchmark before sizing)."
    )
    print(
        f"Protected requests: {target:,} x {args.requests_per_user_per_minute:g}/min / 60 = "
        f"{requests:,.0f}/s with zero Redis round trips each\n"
        "  (the access token is verified in-process), so they scale with app processes only. Token\n"
        f"  verification alone: {requests:,.0f}/s / {rates.verify_per_s:,.0f}/s per core = "
        f"{verify_cores:.2f} cores. The per-process\n"
        "  protected-request throughput (HTTP included) is measured by the separate performance benchmark;\n"
        "  that figure sizes the app tier."
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sessions", type=int, default=TARGET_SESSIONS, help="sessions to store (default 1M)"
    )
    parser.add_argument("--access-ttl", type=int, default=900, help="access-token lifetime, seconds")
    parser.add_argument(
        "--requests-per-user-per-minute",
        type=float,
        default=2.0,
        help="protected API requests per session per minute (default 2)",
    )
    args = parser.parse_args(argv)
    if args.sessions < CHECKPOINTS[0]:
        parser.error(f"--sessions must be at least {CHECKPOINTS[0]}")
    if args.access_ttl < 1:
        parser.error("--access-ttl must be at least 1 second")
    return args


async def interruptible(url: str, args: argparse.Namespace) -> None:
    """:func:`measure`, stopped cleanly by Ctrl-C or SIGTERM: every ``finally`` inside the loop runs,
    so the connections close before the loop does."""
    main_task = asyncio.current_task()
    assert main_task is not None

    def stop() -> None:
        STOP.requested = True
        main_task.cancel()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    await measure(url, args)


def main() -> None:
    """Runs the benchmark against a private redis-server, which is stopped however the run ends."""
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="sr-capacity-") as data_dir:
        server = RedisServer(Path(data_dir), extra_args=["--appendfsync", "everysec"])
        server.start()
        try:
            asyncio.run(interruptible(server.url, args))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("\ninterrupted; redis-server stopped", file=sys.stderr)
            raise SystemExit(130) from None
        finally:
            server.stop()


if __name__ == "__main__":
    main()
