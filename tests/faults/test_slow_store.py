"""Redis answering slower than the store timeout: 503 within a bounded time, no hung request, recovery.

Three stalls of a real redis-server (apps at ``SR_STORE_TIMEOUT=0.5`` unless said otherwise):

- ``DEBUG SLEEP 2``: the server accepts commands and answers them only after two seconds; 20 concurrent
  refreshes fired meanwhile must each answer 503 in well under 3 s;
- ``DEBUG SLEEP 0.5`` (a hiccup well inside the timeout, apps at ``SR_STORE_TIMEOUT=2``) while one
  process holds 150 concurrent refreshes: every one must wait for Redis and answer 200, none may be
  refused because the process ran out of pooled connections;
- ``SIGSTOP`` for 3 s under the steady load of :class:`tests.faults.load.LoadDriver`: every refresh and
  login is 200 or a quick 503, access validation keeps answering 200, and afterwards every client
  refreshes again on the same connection pools.

A refresh that timed out may still run on the server once it wakes up (the command was already sent):
the client's retry with the same token then falls inside the grace window and gets the same child.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass

import httpx2
import redis

from harness.processes import AppServer, RedisServer
from tests.faults.load import SHARED_TLS, Event, LoadConfig, LoadDriver
from tests.integration.helpers import app_env, login
from tests.support.fixtures import AppServerFactory, RedisServerFactory

APP = "tests.apps:app_from_env"
STORE_TIMEOUT = 0.5
BOUND = 3.0  # seconds: no answer may take longer while Redis stalls
CONCURRENT = 20


@dataclass(frozen=True, slots=True)
class Timed:
    """One HTTP answer and how long it took."""

    status: int
    body: dict[str, object]
    retry_after: str | None
    seconds: float


def start_apps(factory: AppServerFactory, server: RedisServer, count: int) -> list[AppServer]:
    env = app_env(server, SR_STORE_TIMEOUT=str(STORE_TIMEOUT), SR_ACCESS_TTL="30")
    return [factory(APP, env, factory=True) for _ in range(count)]


class Fleet:
    """One HTTP client (own connection) per token, created up front so a burst starts at once."""

    def __init__(self, apps: list[AppServer], count: int) -> None:
        self.apps = apps
        self.clients = [httpx2.AsyncClient(timeout=20, verify=SHARED_TLS) for _ in range(count)]

    async def refresh_all(self, tokens: list[str], *, shift: int = 0) -> list[Timed]:
        """Refreshes every token at once, spread over the apps (``shift`` picks other apps)."""

        async def one(i: int, token: str) -> Timed:
            url = f"{self.apps[(i + shift) % len(self.apps)].url}/auth/refresh"
            started = time.monotonic()
            answer = await self.clients[i].post(url, json={"refresh_token": token})
            return Timed(
                answer.status_code,
                answer.json(),
                answer.headers.get("retry-after"),
                time.monotonic() - started,
            )

        return await asyncio.gather(*(one(i, t) for i, t in enumerate(tokens)))

    async def warm(self) -> None:
        """Opens every client's connection (GET /public needs no store)."""
        answers = await asyncio.gather(
            *(c.get(f"{self.apps[i % len(self.apps)].url}/public") for i, c in enumerate(self.clients))
        )
        assert {a.status_code for a in answers} == {200}

    async def close(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.clients))


def start_debug_sleep(server: RedisServer, seconds: str) -> threading.Thread:
    """Runs ``DEBUG SLEEP seconds`` in a thread: the server answers nobody until it is over."""

    def sleep() -> None:
        with server.client(socket_timeout=10) as client:
            client.execute_command("DEBUG", "SLEEP", seconds)

    sleeper = threading.Thread(target=sleep, daemon=True)
    sleeper.start()
    return sleeper


def is_stalled(server: RedisServer) -> bool:
    """True while the server does not answer a PING within 0.1 s."""
    with server.client(socket_timeout=0.1, retry=None) as client:
        try:
            client.ping()
        except redis.exceptions.TimeoutError:
            return True
    return False


def test_debug_sleep_turns_twenty_concurrent_refreshes_into_quick_503s(
    redis_server_factory: RedisServerFactory, app_server_factory: AppServerFactory
) -> None:
    server = redis_server_factory(extra_args=["--enable-debug-command", "local"])
    apps = start_apps(app_server_factory, server, 2)
    sessions = [login(apps[i % 2], subject=f"slow-{i}") for i in range(CONCURRENT)]
    asyncio.run(stall_and_recover(server, apps, [s["refresh_token"] for s in sessions]))


async def stall_and_recover(server: RedisServer, apps: list[AppServer], tokens: list[str]) -> None:
    fleet = Fleet(apps, CONCURRENT)
    try:
        # warm each app's Redis pool and our connections, so the stall hits pooled connections
        warm = await fleet.refresh_all(tokens)
        assert [w.status for w in warm] == [200] * CONCURRENT
        tokens = [str(w.body["refresh_token"]) for w in warm]

        sleeper = start_debug_sleep(server, "2")
        started = time.monotonic()
        while not is_stalled(server):
            assert time.monotonic() - started < 1, "DEBUG SLEEP did not take effect"
        stalled = await fleet.refresh_all(tokens)
        burst_ended = time.monotonic() - started
        await asyncio.to_thread(sleeper.join, 10)
        assert not sleeper.is_alive()

        latencies = sorted(t.seconds for t in stalled)
        print(  # the numbers for the suite's report (pytest -s)
            f"\nDEBUG SLEEP 2: {CONCURRENT} refreshes -> {[t.status for t in stalled].count(503)} x 503, "
            f"latency min {latencies[0]:.2f}s max {latencies[-1]:.2f}s; burst over {burst_ended:.2f}s "
            "after the stall began"
        )
        assert burst_ended < 2.0, "the burst outlived the stall; its answers prove nothing"
        assert [t.status for t in stalled] == [503] * CONCURRENT, [t.body for t in stalled]
        assert all(t.body["error"] == "temporarily_unavailable" for t in stalled)
        assert all(t.retry_after == "2" for t in stalled)
        assert latencies[-1] < BOUND
        assert latencies[0] >= STORE_TIMEOUT * 0.9  # it really waited for Redis, then gave up

        # The pool recovers: every client refreshes with the token it still holds (the stalled rotation
        # may have run late on the server: then this is a grace answer), and the child rotates again.
        recovered = await fleet.refresh_all(tokens)
        assert [r.status for r in recovered] == [200] * CONCURRENT, [r.body for r in recovered]
        children = [str(r.body["refresh_token"]) for r in recovered]
        again = await fleet.refresh_all(children, shift=1)
        assert [a.status for a in again] == [200] * CONCURRENT, [a.body for a in again]
    finally:
        await fleet.close()


def test_sigstop_under_load_answers_503_quickly_and_recovers(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    apps = start_apps(app_server_factory, redis_server, 2)
    driver = LoadDriver(
        [a.url for a in apps],
        LoadConfig(clients=CONCURRENT, refresh_every=3, request_timeout=BOUND + 5),
    )
    driver.start()
    assert redis_server.pid is not None
    try:
        time.sleep(1.0)
        stopped = driver.mark("redis SIGSTOP")
        os.kill(redis_server.pid, signal.SIGSTOP)
        try:
            time.sleep(3.0)
        finally:
            resumed = driver.mark("redis SIGCONT")
            os.kill(redis_server.pid, signal.SIGCONT)
        assert driver.wait_all_refreshed(after=resumed, timeout=10), "the pool did not recover"
        time.sleep(0.5)
    finally:
        report = driver.stop()
    print(f"\n{report.summary()}")

    def show(events: list[Event]) -> str:
        return "; ".join(
            f"{e.kind} @{e.started:.2f}s {e.status or e.error} in {e.latency:.2f}s" for e in events[:8]
        )

    # no hung request (a hang would end as a ReadTimeout after BOUND + 5 s), no connection error
    unanswered = [e for e in report.events if not e.answered]
    assert unanswered == [], show(unanswered)
    slow = [e for e in report.events if e.latency >= BOUND]
    assert slow == [], show(slow)
    assert {e.status for e in report.of("me")} == {200}
    bad = [e for e in report.events if e.kind != "me" and e.status not in (200, 503)]
    assert bad == [], show(bad)
    # the auth requests sent while Redis was certainly paused all answered 503 in bounded time
    stalled = [e for e in report.events if e.kind != "me" and e.started >= stopped and e.finished <= resumed]
    assert len(stalled) >= CONCURRENT
    assert {e.status for e in stalled} == {503}, show([e for e in stalled if e.status != 503])
    unavailable = [e for e in report.events if e.status == 503]
    print(
        f"SIGSTOP {resumed - stopped:.2f}s: {len(unavailable)} x 503, max latency "
        f"{max(e.latency for e in unavailable):.2f}s; max latency of any request "
        f"{max(e.latency for e in report.events):.2f}s"
    )
    assert report.lost == [], report.lost[:5]
    assert report.final_failures() == {}


HICCUP_BURST = 150


def test_hiccup_within_the_timeout_with_150_concurrent_refreshes_on_one_process_answers_200(
    redis_server_factory: RedisServerFactory, app_server_factory: AppServerFactory
) -> None:
    server = redis_server_factory(extra_args=["--enable-debug-command", "local"])
    app = app_server_factory(APP, app_env(server, SR_STORE_TIMEOUT="2"), factory=True)
    token = login(app, subject="hiccup")["refresh_token"]
    answers = asyncio.run(_burst_during_hiccup(server, app, token))
    statuses = Counter(a.status for a in answers)
    refused = [a.body for a in answers if a.status != 200]
    print(
        f"\nDEBUG SLEEP 0.5 + {HICCUP_BURST} concurrent refreshes on one process: {dict(statuses)}, "
        f"max latency {max(a.seconds for a in answers):.2f}s"
    )
    assert statuses == {200: HICCUP_BURST}, refused[:3]
    assert len({str(a.body["refresh_token"]) for a in answers}) == 1


async def _burst_during_hiccup(server: RedisServer, app: AppServer, token: str) -> list[Timed]:
    fleet = Fleet([app], HICCUP_BURST)
    try:
        await fleet.warm()
        sleeper = start_debug_sleep(server, "0.5")
        started = time.monotonic()
        while not is_stalled(server):
            assert time.monotonic() - started < 0.3, "DEBUG SLEEP did not take effect"
        answers = await fleet.refresh_all([token] * HICCUP_BURST)
        await asyncio.to_thread(sleeper.join, 10)
        return answers
    finally:
        await fleet.close()
