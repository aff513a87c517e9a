"""NOSCRIPT: the server's script cache emptied (``SCRIPT FLUSH``) under steady load fails no request.

Two app processes and 20 clients of :class:`tests.faults.load.LoadDriver`; meanwhile the test flushes
the script cache of the real redis-server again and again. Every login, refresh and protected call
must answer 200: after NOSCRIPT the store sends the script's source (EVAL). (NOSCRIPT after a
Redis restart, the other way to lose the cache, happens in test_process_kills.py.)

The second test is the adversarial version: the cache is flushed back to back for two seconds, so
a store that loaded the script and then called it by SHA again would often find the cache empty once
more. EVAL carries the source and cannot miss the cache.
"""

from __future__ import annotations

import threading
import time

from harness.processes import RedisServer
from tests.faults.load import LoadConfig, LoadDriver
from tests.integration.helpers import app_env
from tests.support.fixtures import AppServerFactory

APP = "tests.apps:app_from_env"
CLIENTS = 20
FLUSHES = 12
RELOAD_LOG = "not cached on the server (NOSCRIPT); sending its source"


def test_script_flush_under_load_fails_no_request(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    env = app_env(redis_server, SR_ACCESS_TTL="30")
    apps = [app_server_factory(APP, env, factory=True) for _ in range(2)]
    # refresh every other call and log in often: the rotate and create scripts both run constantly
    driver = LoadDriver(
        [a.url for a in apps],
        LoadConfig(clients=CLIENTS, sticky=False, refresh_every=2, login_probability=0.05),
    )
    admin = redis_server.client()
    driver.start()
    try:
        time.sleep(0.5)
        for i in range(FLUSHES):
            driver.mark(f"flush {i}")
            admin.script_flush("SYNC")
            time.sleep(0.25)
        time.sleep(0.5)
    finally:
        report = driver.stop()
        admin.close()
    reloads = sum(app.log_text().count(RELOAD_LOG) for app in apps)
    print(f"\n{report.summary()}\n{FLUSHES} x SCRIPT FLUSH; scripts reloaded after NOSCRIPT {reloads} times")

    first_flush = report.marks["flush 0"]
    during = report.of(overlapping=(first_flush, report.marks[f"flush {FLUSHES - 1}"] + 0.25))
    assert len(report.of("refresh", started_after=first_flush)) >= 5 * FLUSHES
    assert len(report.of("login", started_after=first_flush)) >= FLUSHES
    failures = [e for e in report.events if e.status != 200]
    assert failures == [], [(e.kind, e.app, round(e.started, 2), e.status, e.error) for e in failures[:10]]
    assert len(during) > 0
    assert reloads >= FLUSHES, "the flushes never reached a script call; the test proved nothing"
    assert report.lost == []
    assert report.final_failures() == {}


def test_script_flush_storm_fails_no_request(
    redis_server: RedisServer, app_server_factory: AppServerFactory
) -> None:
    env = app_env(redis_server, SR_ACCESS_TTL="30")
    apps = [app_server_factory(APP, env, factory=True) for _ in range(2)]
    driver = LoadDriver(
        [a.url for a in apps],
        LoadConfig(clients=10, sticky=False, refresh_every=1, login_probability=0.05),
    )
    calm = threading.Event()
    flushes = 0

    def storm() -> None:
        nonlocal flushes
        admin = redis_server.client()
        try:
            while not calm.is_set():
                admin.script_flush("SYNC")
                flushes += 1
        finally:
            admin.close()

    flusher = threading.Thread(target=storm, daemon=True)
    driver.start()
    try:
        time.sleep(0.3)
        storm_began = driver.mark("storm")
        flusher.start()
        time.sleep(2.0)
        calm.set()
        flusher.join(10)
        driver.mark("calm")
        time.sleep(0.3)
    finally:
        calm.set()
        report = driver.stop()
    print(f"\n{report.summary()}\nSCRIPT FLUSH storm: {flushes} flushes in 2 s")

    assert flushes > 100, "the storm never got going"
    assert len(report.of("refresh", started_after=storm_began)) >= 50
    failures = [e for e in report.events if e.status != 200]
    assert failures == [], f"{len(failures)} failed: {dict(report.statuses(failures))}; first: " + "; ".join(
        f"{e.kind} @{e.started:.2f}s -> {e.status} {e.error}" for e in failures[:5]
    )
    assert report.lost == []
    assert report.final_failures() == {}
