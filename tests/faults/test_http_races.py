"""Races over real HTTP across three app processes sharing one redis-server.

(a) 300 concurrent refreshes of one token, each on its own connection: exactly one rotation, every
    answer 200 with the same child, the family alive afterwards;
(b) a refresh racing a logout of the same session, many rounds: the session always ends revoked
    (its key gone, out of the user's index, every token it ever had refused), never half-revoked;
(c) refreshes racing a logout-all: every session of the subject ends revoked, including any child a
    refresh minted during the race.

Each request gets its own pre-connected HTTP client, so the requests leave at the same moment and the
three processes really run them concurrently. Small random delays spread the interleavings.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from harness.processes import AppServer, RedisServer
from starlette_refresh.refresh_tokens import RefreshTokenCodec
from tests.apps import SECRET
from tests.faults.load import SHARED_TLS
from tests.support.stored import stored_generation, stored_session, user_key

APP = "tests.apps:app_from_env"
GRACE = 10.0
CODEC = RefreshTokenCodec(SECRET.encode())
INVALID_GRANT = {"error": "invalid_grant", "error_description": "refresh token is invalid or revoked"}


@dataclass(frozen=True, slots=True)
class Cluster:
    """One redis-server and three app processes, shared by the tests of this module."""

    redis: RedisServer
    apps: list[AppServer]

    def url(self, i: int, path: str) -> str:
        return self.apps[i % len(self.apps)].url + path

    def generation(self, token: str) -> int:
        client = self.redis.client()
        try:
            return stored_generation(client, token)
        finally:
            client.close()

    def stored(self, token: str) -> bool:
        """Whether Redis still holds the token's session in any form."""
        client = self.redis.client()
        try:
            return stored_session(client, token) is not None
        finally:
            client.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root: Path = tmp_path_factory.mktemp("races")
    redis = RedisServer(root / "redis")
    apps: list[AppServer] = []
    redis.start()
    try:
        # a generous store timeout: on two cores 300 requests at once may queue for a while, and a
        # correct 503 under overload would hide what these tests look at (the rotation outcome)
        env = {"SR_REDIS_URL": redis.url, "SR_STORE_TIMEOUT": "5", "SR_GRACE": str(GRACE)}
        for i in range(3):
            app = AppServer(APP, env, factory=True, log_dir=root / f"app-{i}")
            apps.append(app)
            app.start()
        yield Cluster(redis, apps)
    finally:
        for app in reversed(apps):
            app.stop()
        redis.stop()


class Pool:
    """``count`` HTTP clients, each with one open keep-alive connection to its app."""

    def __init__(self, cluster: Cluster, count: int) -> None:
        self.cluster = cluster
        self.clients = [httpx2.AsyncClient(timeout=30, verify=SHARED_TLS) for _ in range(count)]

    async def __aenter__(self) -> Pool:
        # open every connection now (GET /public touches no store), so the burst needs no handshakes
        answers = await asyncio.gather(
            *(c.get(self.cluster.url(i, "/public")) for i, c in enumerate(self.clients))
        )
        assert {a.status_code for a in answers} == {200}
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(c.aclose() for c in self.clients))

    async def post(self, i: int, path: str, *, delay: float = 0.0, **kwargs: Any) -> httpx2.Response:
        if delay:
            await asyncio.sleep(delay)
        return await self.clients[i].post(self.cluster.url(i, path), **kwargs)


async def login(client: httpx2.AsyncClient, url: str, subject: str) -> dict[str, Any]:
    answer = await client.post(url, json={"subject": subject, "transport": "body"})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def refresh(client: httpx2.AsyncClient, url: str, token: str) -> httpx2.Response:
    return await client.post(url, json={"refresh_token": token})


# ----------------------------------------------------------------------------------------------
# (a) hundreds of concurrent refreshes with one token
# ----------------------------------------------------------------------------------------------

CONCURRENT = 300


def test_300_concurrent_refreshes_of_one_token_rotate_exactly_once(cluster: Cluster) -> None:
    asyncio.run(_concurrent_refreshes(cluster))


async def _concurrent_refreshes(cluster: Cluster) -> None:
    async with Pool(cluster, CONCURRENT) as pool:
        issued = await login(pool.clients[0], cluster.url(0, "/login"), "race-a")
        token = issued["refresh_token"]
        loop = asyncio.get_running_loop()
        started = loop.time()
        answers = await asyncio.gather(
            *(pool.post(i, "/auth/refresh", json={"refresh_token": token}) for i in range(CONCURRENT))
        )
        took = loop.time() - started
        statuses = Counter(a.status_code for a in answers)
        print(f"\n{CONCURRENT} concurrent refreshes over 3 processes in {took:.2f}s: {dict(statuses)}")
        assert took < GRACE, "the burst outlasted the grace window; late answers would be reuse"
        assert statuses == {200: CONCURRENT}, [a.text for a in answers if a.status_code != 200][:5]
        children = {a.json()["refresh_token"] for a in answers}
        assert len(children) == 1, f"{len(children)} different children"
        assert len({a.json()["access_token"] for a in answers}) == CONCURRENT
        child = children.pop()
        assert CODEC.parse(child).generation == 1
        assert cluster.generation(child) == 1  # exactly one rotation happened
        # the family is alive: the child rotates normally, on every process in turn
        for i in range(3):
            answer = await refresh(pool.clients[i], cluster.url(i, "/auth/refresh"), child)
            assert answer.status_code == 200, answer.text
            child = answer.json()["refresh_token"]
            assert cluster.generation(child) == 2 + i


# ----------------------------------------------------------------------------------------------
# (b) refresh racing logout
# ----------------------------------------------------------------------------------------------

LOGOUT_ROUNDS = 60
BATCH = 10


def test_refresh_racing_logout_always_ends_revoked(cluster: Cluster) -> None:
    outcomes = asyncio.run(_refresh_vs_logout(cluster))
    print(f"\nrefresh vs logout, {LOGOUT_ROUNDS} rounds: {dict(outcomes)}")


async def _refresh_vs_logout(cluster: Cluster) -> Counter[str]:
    rng = random.Random(20240611)  # not for security: reproducible jitter
    outcomes: Counter[str] = Counter()
    async with Pool(cluster, 2 * BATCH + 1) as pool:
        setup = pool.clients[-1]
        for batch in range(LOGOUT_ROUNDS // BATCH):
            rounds = [batch * BATCH + r for r in range(BATCH)]
            # Each round: a session rotated once, so it has a predecessor still inside the grace window.
            tokens = []
            for n in rounds:
                first = await login(setup, cluster.url(n, "/login"), f"race-b-{n}")
                second = await refresh(setup, cluster.url(n + 1, "/auth/refresh"), first["refresh_token"])
                assert second.status_code == 200, second.text
                tokens.append((first["refresh_token"], second.json()["refresh_token"]))

            async def race(slot: int, n: int, old: str, current: str) -> tuple[str, list[str]]:
                # refresh with the current token (a rotation) or the predecessor (a grace answer);
                # log out with either; the two requests go to different processes
                presented = current if n % 2 == 0 else old
                logout_token = current if n % 4 < 2 else old
                jitter = [rng.uniform(0, 0.004), rng.uniform(0, 0.004)]
                refreshed, logged_out = await asyncio.gather(
                    pool.post(2 * slot, "/auth/refresh", delay=jitter[0], json={"refresh_token": presented}),
                    pool.post(
                        2 * slot + 1, "/auth/logout", delay=jitter[1], json={"refresh_token": logout_token}
                    ),
                )
                assert logged_out.status_code == 204, logged_out.text
                assert refreshed.status_code in (200, 400), refreshed.text
                if refreshed.status_code == 400:
                    assert refreshed.json() == INVALID_GRANT
                    return "logout first", [old, current]
                kind = "refresh first (rotated)" if presented == current else "refresh first (grace)"
                return kind, [old, current, refreshed.json()["refresh_token"]]

            results = await asyncio.gather(
                *(
                    race(slot, n, old, cur)
                    for slot, (n, (old, cur)) in enumerate(zip(rounds, tokens, strict=True))
                )
            )
            for n, (kind, seen) in zip(rounds, results, strict=True):
                outcomes[kind] += 1
                # Redis first (a refresh probe could clean up a half-revoked record and hide it) ...
                assert not cluster.stored(seen[0]), f"round {n} ({kind}) half-revoked"
                # ... then every token the session ever had, including a child minted in the race
                for token in seen:
                    probe = await refresh(setup, cluster.url(n, "/auth/refresh"), token)
                    assert probe.status_code == 400, f"round {n} ({kind}): {probe.text}"
                    assert probe.json() == INVALID_GRANT
    return outcomes


# ----------------------------------------------------------------------------------------------
# (c) refresh racing logout-all
# ----------------------------------------------------------------------------------------------

LOGOUT_ALL_ROUNDS = 20
SESSIONS_PER_SUBJECT = 3


def test_refresh_racing_logout_all_ends_every_session(cluster: Cluster) -> None:
    outcomes = asyncio.run(_refresh_vs_logout_all(cluster))
    print(f"\nrefresh vs logout-all, {LOGOUT_ALL_ROUNDS} rounds: {dict(outcomes)}")


async def _refresh_vs_logout_all(cluster: Cluster) -> Counter[str]:
    rng = random.Random(20240612)  # not for security: reproducible jitter
    outcomes: Counter[str] = Counter()
    per_round = 2 * SESSIONS_PER_SUBJECT + 1
    batch = 5
    async with Pool(cluster, batch * per_round + 1) as pool:
        setup = pool.clients[-1]
        for first_round in range(0, LOGOUT_ALL_ROUNDS, batch):
            rounds = list(range(first_round, first_round + batch))
            subjects: list[list[dict[str, Any]]] = []
            for n in rounds:
                subjects.append(
                    [
                        await login(setup, cluster.url(n + s, "/login"), f"race-c-{n}")
                        for s in range(SESSIONS_PER_SUBJECT)
                    ]
                )

            async def race(slot: int, sessions: list[dict[str, Any]]) -> tuple[list[int], list[str]]:
                base = slot * per_round
                refreshes = [
                    pool.post(
                        base + k,
                        "/auth/refresh",
                        delay=rng.uniform(0, 0.004),
                        json={"refresh_token": sessions[k // 2]["refresh_token"]},
                    )
                    for k in range(2 * SESSIONS_PER_SUBJECT)  # two refreshes per session
                ]
                everything = pool.post(
                    base + per_round - 1,
                    "/auth/logout-all",
                    delay=rng.uniform(0, 0.004),
                    headers={"Authorization": f"Bearer {sessions[0]['access_token']}"},
                )
                *answers, ended = await asyncio.gather(*refreshes, everything)
                assert ended.status_code == 204, ended.text
                seen = [s["refresh_token"] for s in sessions]
                for answer in answers:
                    assert answer.status_code in (200, 400), answer.text
                    if answer.status_code == 200:
                        seen.append(answer.json()["refresh_token"])
                    else:
                        assert answer.json() == INVALID_GRANT
                return [a.status_code for a in answers], seen

            results = await asyncio.gather(*(race(slot, s) for slot, s in enumerate(subjects)))
            for n, (statuses, seen) in zip(rounds, results, strict=True):
                outcomes[f"{statuses.count(200)} of {len(statuses)} refreshes before logout-all"] += 1
                client = cluster.redis.client()
                try:
                    assert client.exists(user_key(seen[0])) == 0, f"round {n}: the user's sessions survived"
                finally:
                    client.close()
                for token in seen:
                    assert not cluster.stored(token), f"round {n}: half-revoked"
                for token in seen:
                    probe = await refresh(setup, cluster.url(n, "/auth/refresh"), token)
                    assert probe.status_code == 400, f"round {n}: {probe.text}"
                    assert probe.json() == INVALID_GRANT
    return outcomes
