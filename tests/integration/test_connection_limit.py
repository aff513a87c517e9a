"""More concurrent store operations than connections: every one waits its turn, none fails.

redis-py's blocking pool is not fair: a task that releases a connection can take it straight back
before a waiting task wakes, so with more operations in flight than ``store_max_connections`` some
waited the whole ``store_timeout`` and answered 503 while Redis sat idle. That is exactly the burst
that follows an outage, when every client retries at once. The store now queues operations in
arrival order in front of the pool.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from harness.processes import RedisServer
from starlette_refresh import StoreUnavailable, TokenAuth
from tests.apps import SECRET

pytestmark = pytest.mark.integration


async def seconds_per_refresh(auth: TokenAuth, samples: int = 50) -> float:
    """One refresh's time on this machine now, measured one after another (no waiting for the pool)."""
    token = (await auth.sessions.login("baseline", {}, "test")).refresh_token
    started = time.perf_counter()
    for _ in range(samples):
        token = (await auth.sessions.refresh(token)).refresh_token
    return (time.perf_counter() - started) / samples


async def burst(url: str, connections: int, in_flight: int, rounds: int) -> Counter[str]:
    # The last of ``in_flight`` operations queued in arrival order waits for the ones before it: about
    # in_flight refreshes' time on one event loop. The store timeout is three times that (at least
    # 1 s), so a slow or busy machine passes while a task that the pool starves, waiting through
    # many rounds of the others, still runs into it.
    probe = TokenAuth(secret_key=SECRET, redis_url=url, store_max_connections=connections)
    await probe.startup()
    try:
        timeout = max(1.0, 3 * in_flight * await seconds_per_refresh(probe))
    finally:
        await probe.shutdown()
    auth = TokenAuth(
        secret_key=SECRET, redis_url=url, store_max_connections=connections, store_timeout=timeout
    )
    await auth.startup()
    try:
        issued = [await auth.sessions.login(f"user-{i}", {}, "test") for i in range(in_flight)]
        outcomes: Counter[str] = Counter()

        async def keep_refreshing(token: str) -> None:
            # Like a busy worker: the moment one operation ends the next begins, so a task that
            # just released a connection competes with the tasks still waiting for one.
            for _ in range(rounds):
                try:
                    token = (await auth.sessions.refresh(token)).refresh_token
                except StoreUnavailable:
                    outcomes["503"] += 1
                else:
                    outcomes["200"] += 1

        await asyncio.gather(*(keep_refreshing(s.refresh_token) for s in issued))
        return outcomes
    finally:
        await auth.shutdown()


@pytest.mark.parametrize(("connections", "in_flight"), [(4, 100), (10, 300)])
def test_a_burst_larger_than_the_pool_is_served_without_a_503(
    redis_server: RedisServer, connections: int, in_flight: int
) -> None:
    outcomes = asyncio.run(burst(redis_server.url, connections, in_flight, rounds=20))

    assert outcomes == Counter({"200": 20 * in_flight})
    clients = redis_server.client().info("clients")["connected_clients"]
    assert clients <= 2  # the test's own probe, once the app has closed its pool
