"""Processes SIGKILLed under steady load: the Redis server, then one of two app processes.

Real processes throughout: one redis-server (append-only, ``appendfsync always``) and two uvicorn apps,
driven by :class:`tests.faults.load.LoadDriver` (20 clients, body transport). Nothing may answer 401
or 500, and no session may be lost: every session any client ever held refreshes at the end.
"""

from __future__ import annotations

import time

from harness.processes import AppServer, RedisServer
from tests.faults.load import Event, LoadConfig, LoadDriver, LoadReport
from tests.integration.helpers import app_env
from tests.support.fixtures import AppServerFactory

APP = "tests.apps:app_from_env"
CLIENTS = 20
OUTAGE_SECONDS = 3.0
APP_GAP_SECONDS = 1.5


def start_apps(factory: AppServerFactory, redis: RedisServer, count: int) -> list[AppServer]:
    # access tokens live 30 s: the clients refresh every few calls, and never hold an expired one
    env = app_env(redis, SR_ACCESS_TTL="30", SR_STORE_TIMEOUT="1")
    return [factory(APP, env, factory=True) for _ in range(count)]


def describe(events: list[Event], limit: int = 10) -> str:
    return "; ".join(
        f"{e.kind} client {e.client} app {e.app} @{e.started:.2f}s -> {e.status or e.error} {e.error}"
        for e in events[:limit]
    )


def assert_no_session_lost(report: LoadReport) -> None:
    assert report.lost == [], f"sessions lost: {report.lost[:5]}"
    assert len(report.final) >= CLIENTS
    assert report.final_failures() == {}, f"final refresh failed: {report.final_failures()}"


def test_redis_sigkill_and_restart_under_load(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    apps = start_apps(app_server_factory, redis_server, 2)
    # requests rotate over both apps: tokens minted by one process are used on the other
    driver = LoadDriver([a.url for a in apps], LoadConfig(clients=CLIENTS, sticky=False, refresh_every=4))
    driver.start()
    try:
        time.sleep(1.5)
        down = driver.mark("redis killed")
        redis_server.kill()
        killed = driver.mark("redis dead")
        time.sleep(OUTAGE_SECONDS)
        restarting = driver.mark("redis restarting")
        redis_server.restart()
        up = driver.mark("redis up")
        assert driver.wait_all_refreshed(after=up, timeout=15), "some client never refreshed after restart"
        time.sleep(1.0)
    finally:
        report = driver.stop()
    print(f"\n{report.summary()}")  # the numbers for the suite's report (pytest -s)

    events = report.events
    # Never a connection error (both apps stayed up), never a 401 or 500, anywhere in the run.
    assert [e for e in events if not e.answered] == [], describe([e for e in events if not e.answered])
    bad_me = [e for e in report.of("me") if e.status != 200]
    assert bad_me == [], describe(bad_me)
    bad_auth = [e for e in events if e.kind != "me" and e.status not in (200, 503)]
    assert bad_auth == [], describe(bad_auth)
    assert all(e.error == "temporarily_unavailable" for e in events if e.status == 503)

    # While Redis was certainly down, every login and refresh answered 503 (none slipped through).
    in_outage = [e for e in events if e.kind != "me" and e.started >= killed and e.finished <= restarting]
    assert len(in_outage) >= CLIENTS, f"the outage saw only {len(in_outage)} auth requests"
    assert {e.status for e in in_outage} == {503}, describe([e for e in in_outage if e.status != 503])
    assert max(e.latency for e in in_outage) < 2.0, "a 503 took too long during the outage"
    # ... and access validation kept answering 200 without Redis
    me_in_outage = report.of("me", started_after=killed, finished_before=restarting)
    assert len(me_in_outage) >= CLIENTS
    assert {e.status for e in me_in_outage} == {200}

    unavailable = [e for e in events if e.status == 503]
    assert all(e.finished >= down and e.started <= up + 1.0 for e in unavailable), describe(
        [e for e in unavailable if not (e.finished >= down and e.started <= up + 1.0)]
    )
    print(
        f"redis outage: {restarting - down:.2f}s down + {up - restarting:.2f}s restart; "
        f"{len(unavailable)} answers 503 ({sum(e.kind == 'refresh' for e in unavailable)} refresh, "
        f"{sum(e.kind == 'login' for e in unavailable)} login); "
        f"max 503 latency {max(e.latency for e in unavailable) * 1000:.0f} ms"
    )
    assert_no_session_lost(report)


def test_app_sigkill_and_restart_under_load(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    apps = start_apps(app_server_factory, redis_server, 2)
    victim = apps[0]
    # client i always talks to app i % 2: clients 0, 2, 4, ... lose their server for a while
    driver = LoadDriver([a.url for a in apps], LoadConfig(clients=CLIENTS, sticky=True, refresh_every=4))
    driver.start()
    try:
        time.sleep(1.5)
        killing = driver.mark("app killing")
        victim.kill()
        time.sleep(APP_GAP_SECONDS)
        driver.mark("app restarting")
        victim.start()
        up = driver.mark("app up")
        assert driver.wait_all_refreshed(after=up, timeout=15), "some client never refreshed after restart"
        time.sleep(1.0)
    finally:
        report = driver.stop()
    print(f"\n{report.summary()}")

    events = report.events
    failed = [e for e in events if not e.answered]
    # Connection errors only for the killed app's clients, and only around the gap.
    stray = [e for e in failed if e.app != 0 or e.finished < killing or e.started > up + 0.5]
    assert stray == [], describe(stray)
    assert failed, "the killed app's clients never noticed the gap"
    # Everything that was answered was a 200: Redis was fine, so no 503 either; never a 401 or 500.
    answered_badly = [e for e in events if e.answered and e.status != 200]
    assert answered_badly == [], describe(answered_badly)
    # The surviving app's clients did not notice anything.
    survivors = report.of(overlapping=(killing, up), apps=[1])
    assert survivors
    assert {e.status for e in survivors} == {200}
    print(
        f"app gap: {up - killing:.2f}s; {len(failed)} connection errors "
        f"({dict(report.statuses(failed))}) for clients of the killed app"
    )
    assert_no_session_lost(report)
