"""Redis Sentinel failovers under steady load, and revocations across a failover.

Real processes throughout: a Sentinel group (a primary, two replicas, three sentinels with a 1 s
``down-after``) and two uvicorn apps on its ``redis+sentinel://`` URL with ``replica_acks=1``, driven by
:class:`tests.faults.load.LoadDriver` (16 clients, requests rotating over both apps). Whether the
primary is SIGKILLed or handed over with ``SENTINEL FAILOVER``, nothing may answer 401 or 500, the
protected route keeps answering 200, the auth endpoints answer only 200 or 503 for a bounded window,
and no session may be lost, not even one whose login was acknowledged just before the failover.

Why two replicas: ``replica_acks=1`` makes a login or a revocation wait (``WAIT 1``) until one replica
holds it, and answer 503 when none does in time. With a single replica, the failover promotes it and
leaves the new primary with no replica at all until the old primary comes back as one, so every
login and logout would answer 503 for that whole time (for a real outage: until someone repairs the
old node). With two, the sentinels re-point the second replica at the new primary within about a
second of the promotion, and logins and revocations are durable again long before the old node returns.

Planned failovers follow the deployment guide's runbook (``SentinelGroup.failover(fence=True)``):
``min-replicas-to-write <its replica count>`` and ``CLIENT PAUSE 5000 WRITE`` on the primary, then
``SENTINEL FAILOVER``, then the setting back to 0 once the sentinels have demoted the old primary.
Without a fence, the old primary keeps taking writes on the apps' pooled connections between the
promotion and its demotion (2-3 s here), the second replica (still attached to it) satisfies
``WAIT 1``, and the full resyncs that follow discard those writes: 31-59 of ~700 logins made at ~80
logins/s were lost per run. With ``min-replicas-to-write`` alone, 1 of 755 was lost once: a write in
flight to the replica being promoted, acknowledged by the other one; the pause closes that too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import httpx2
import pytest

from harness.processes import AppServer, RedisServer
from tests.faults.load import Event, LoadConfig, LoadDriver, LoadReport
from tests.integration.helpers import login, me, refresh
from tests.integration.test_revocation import seconds_until_refused
from tests.support.fixtures import AppServerFactory
from tests.support.topologies import SentinelGroup
from tests.support.topology_fixtures import SentinelGroupFactory

APP = "tests.apps:app_from_env"
CLIENTS = 16
#: Generous bound on the time from the failover's start to the first refresh answered 200 after it.
WINDOW_BOUND_SECONDS = 15.0
#: A 503 may still come this long after the group settled (a request already in flight, a retry).
SETTLE_SLACK_SECONDS = 1.0
#: Requests rotate over both apps, so tokens minted by one process are used on the other.
LOAD = LoadConfig(clients=CLIENTS, sticky=False, refresh_every=4)
#: The same clients, but logging in again on ~30% of their steps (a login storm: ~80 logins/s).
LOGIN_STORM = LoadConfig(clients=CLIENTS, sticky=False, refresh_every=4, login_probability=0.3)


class SessionLost(AssertionError):
    """A session the library acknowledged answered 401 later (or failed its final refresh)."""


@pytest.fixture
def group(sentinel_group_factory: SentinelGroupFactory) -> SentinelGroup:
    """Primary + 2 replicas + 3 sentinels (see the module docstring for why two replicas)."""
    return sentinel_group_factory(replicas=2)


def start_apps(factory: AppServerFactory, group: SentinelGroup, count: int = 2) -> list[AppServer]:
    env = {
        "SR_REDIS_URL": group.url,
        "SR_ACCESS_TTL": "30",  # the clients refresh every few calls and never hold an expired token
        "SR_STORE_TIMEOUT": "1",
        "SR_REPLICA_ACKS": "1",
    }
    return [factory(APP, env, factory=True) for _ in range(count)]


def describe(events: list[Event], limit: int = 10) -> str:
    return "; ".join(
        f"{e.kind} client {e.client} app {e.app} @{e.started:.2f}s -> {e.status or e.error} {e.error}"
        for e in events[:limit]
    )


def failover_under_load(
    group: SentinelGroup,
    apps: list[AppServer],
    monkeypatch: pytest.MonkeyPatch,
    *,
    kill: bool,
    config: LoadConfig = LOAD,
) -> LoadReport:
    """Runs the load, fails the primary over (then brings a killed one back), and reports.

    Marks: ``failover`` (the failover is asked for), ``killed`` (the SIGKILL itself, with
    ``kill=True``), ``promoted`` (every sentinel reports the new primary, which says ``role:master``),
    ``settled`` (the old primary is a linked replica again and the group agrees on every role).
    """
    driver = LoadDriver([a.url for a in apps], config)
    driver.start()
    try:
        time.sleep(1.5)
        group.wait_settled()
        old = group.primary()
        kill_now = old.kill

        def mark_and_kill() -> None:
            driver.mark("killed")
            kill_now()

        # failover(kill=True) first checks that the group is settled, then kills: mark the kill itself
        monkeypatch.setattr(old, "kill", mark_and_kill)
        driver.mark("failover")
        new = group.failover(kill=kill, fence=not kill)
        promoted = driver.mark("promoted")
        assert new is not old
        assert driver.wait_all_refreshed(after=promoted, timeout=15), "a client never refreshed after it"
        if kill:
            group.restart_old(old)
        else:
            group.wait_replica(old)  # the sentinels demote the old primary themselves
            group.unfence(old)  # the runbook's last step
        group.wait_settled()
        settled = driver.mark("settled")
        assert driver.wait_all_refreshed(after=settled, timeout=15), "a client never refreshed after it"
        time.sleep(1.0)
    finally:
        report = driver.stop()
    print(f"\n{report.summary()}")  # the numbers for the suite's report (pytest -s)
    return report


def assert_failover_was_survived(report: LoadReport, label: str, group: SentinelGroup) -> None:
    events = report.events
    started, promoted, settled = (report.marks[k] for k in ("failover", "promoted", "settled"))
    # the fault itself: the SIGKILL, or the SENTINEL FAILOVER request
    fault = report.marks.get("killed", started)

    # Never a connection error (both apps stayed up), never a 401 or a 500, anywhere in the run. A
    # refresh answered 400 invalid_grant is a lost session: assert_no_session_lost reports those last.
    assert [e for e in events if not e.answered] == [], describe([e for e in events if not e.answered])
    lost_session = {"kind": "refresh", "status": 400, "error": "invalid_grant"}
    bad_auth = [
        e
        for e in events
        if e.kind != "me"
        and e.status not in (200, 503)
        and {"kind": e.kind, "status": e.status, "error": e.error} != lost_session
    ]
    assert bad_auth == [], describe(bad_auth)
    unavailable = [e for e in events if e.status == 503]
    assert all(e.error == "temporarily_unavailable" for e in unavailable), describe(unavailable)

    # The protected route never needs Redis: 200 throughout, during the failover too.
    bad_me = [e for e in report.of("me") if e.status != 200]
    assert bad_me == [], describe(bad_me)
    me_during = report.of("me", overlapping=(started, promoted))
    assert len(me_during) >= CLIENTS, f"only {len(me_during)} /me calls during the failover"

    # 503s only between the fault and shortly after the group settled again (after it,
    # every node is where it belongs and every login finds its replica).
    stray = [e for e in unavailable if e.finished < fault or e.started > settled + SETTLE_SLACK_SECONDS]
    assert stray == [], describe(stray)

    # The 503 window: from the fault to the first refresh, sent after it, that answered 200.
    first_ok = min(e.finished for e in report.of("refresh", started_after=fault) if e.status == 200)
    window = first_ok - fault
    last_503 = max((e.finished for e in unavailable), default=fault) - fault
    refreshes_503 = sum(e.kind == "refresh" for e in unavailable)
    logins_503 = sum(e.kind == "login" for e in unavailable)
    print(
        f"{label}: promoted after {promoted - fault:.2f}s, settled after {settled - fault:.2f}s; "
        f"first refresh 200 after {window:.2f}s; last 503 after {last_503:.2f}s; "
        f"{len(unavailable)} answers 503 ({refreshes_503} refresh, {logins_503} login); "
        f"{len(me_during)} /me calls during the failover, all 200"
    )
    assert window < WINDOW_BOUND_SECONDS, f"no refresh succeeded for {window:.1f}s after the failover"

    assert_no_session_lost(report, label, group)


def replication_evidence(group: SentinelGroup) -> str:
    """The Sentinel and replication log lines that tell how the failover went, for a failure message."""
    wanted = ("+promoted-slave", "+slave-reconf-sent", "+switch-master", "MASTER MODE enabled",
              "Partial resynchronization not accepted", "Full resync from master")  # fmt: skip
    lines = [
        f"{node.port}: {line}"
        for node in [*group.data_nodes, group.sentinels[0]]
        for line in node.log_text().splitlines()
        if any(w in line for w in wanted)
    ]
    return "\n" + "\n".join(lines)


def assert_no_session_lost(report: LoadReport, label: str, group: SentinelGroup) -> None:
    """Every session any client ever held, including every login acknowledged before the failover,
    refreshes at the end; raises :class:`SessionLost` (with the numbers) otherwise."""
    started, promoted = report.marks["failover"], report.marks["promoted"]
    fault = report.marks.get("killed", started)
    logins_ok = [e for e in report.of("login") if e.status == 200]
    before = [e for e in logins_ok if e.finished < fault]
    during = [e for e in logins_ok if fault <= e.finished <= promoted]
    assert len(before) >= CLIENTS
    assert len(report.final) == len(logins_ok), "a session acknowledged by a login was not checked"
    refused_refreshes = [e for e in report.of("refresh") if e.status == 400]
    if report.lost or refused_refreshes or report.final_failures():
        lost_at = ", ".join(f"{lost.at - fault:.2f}s" for lost in report.lost[:10])
        raise SessionLost(
            f"{label}: {len(report.lost)} of {len(logins_ok)} acknowledged sessions lost: "
            f"{len(refused_refreshes)} refreshes answered 400 invalid_grant (at {lost_at} after the "
            f"failover began; promoted after "
            f"{promoted - fault:.2f}s); {len(during)} logins were answered 200 between the failover's "
            f"start and the promotion; final refresh failures: {len(report.final_failures())}; "
            f"lost: {report.lost[:3]}{replication_evidence(group)}"
        )
    print(
        f"{label}: {len(before)} logins acknowledged before the failover, {len(logins_ok)} in all: none lost"
    )


def print_rotations_lost(apps: list[AppServer], label: str) -> None:
    """How many refreshes presented a token ahead of the store: rotations the failover lost."""
    ahead = sum(app.log_text().count("refresh ahead of store") for app in apps)
    print(f"{label}: {ahead} refreshes presented a token ahead of the store (lost rotations) and rotated")


def test_primary_sigkill_under_load(
    group: SentinelGroup, app_server_factory: AppServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL the primary: Sentinel promotes a replica; clients see 503s for a few seconds, then 200s."""
    apps = start_apps(app_server_factory, group)
    report = failover_under_load(group, apps, monkeypatch, kill=True)
    assert_failover_was_survived(report, "primary SIGKILLed", group)
    print_rotations_lost(apps, "primary SIGKILLed")
    # the primary was really gone for a while: refreshes in that time could only answer 503
    assert any(e.kind == "refresh" and e.status == 503 for e in report.events)


def test_planned_failover_under_load(
    group: SentinelGroup, app_server_factory: AppServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``SENTINEL FAILOVER`` with the runbook's fence: the same promises hold."""
    apps = start_apps(app_server_factory, group)
    report = failover_under_load(group, apps, monkeypatch, kill=False)
    assert_failover_was_survived(report, "planned failover", group)
    # With the fence nothing lands on the old primary after the promotion, so no rotation is lost.
    print_rotations_lost(apps, "planned failover")


@pytest.mark.parametrize("kill", [pytest.param(True, id="sigkill"), pytest.param(False, id="planned")])
def test_login_storm_through_a_failover(
    kill: bool, group: SentinelGroup, app_server_factory: AppServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """~80 logins/s through the failover: with ``replica_acks=1`` an acknowledged login is on a replica,
    so no failover may lose it; every other promise of the tests above holds as well."""
    apps = start_apps(app_server_factory, group)
    report = failover_under_load(group, apps, monkeypatch, kill=kill, config=LOGIN_STORM)
    assert_failover_was_survived(report, f"login storm, {'SIGKILL' if kill else 'planned'} failover", group)


# --------------------------------------------------------------------------------------
# Revocation across a failover
# --------------------------------------------------------------------------------------


def until_answered(
    call: Callable[[], httpx2.Response], expected: int, limit: float = 10.0
) -> httpx2.Response:
    """Repeats ``call`` while it answers 503 (as a client would); returns the first other answer."""
    deadline = time.monotonic() + limit
    while True:
        answer = call()
        if answer.status_code != 503 or time.monotonic() > deadline:
            assert answer.status_code == expected, answer.text
            return answer
        assert answer.json()["error"] == "temporarily_unavailable"
        time.sleep(0.05)


def refused(app: AppServer, access_token: str) -> bool:
    answer = me(app, access_token)
    assert answer.status_code in (200, 401), answer.text
    return answer.status_code == 401


def logout(app: AppServer, issued: dict[str, str]) -> None:
    body = {"refresh_token": issued["refresh_token"]}
    until_answered(lambda: httpx2.post(f"{app.url}/auth/logout", json=body, timeout=10), 204)


def assert_session_refreshes(app: AppServer, issued: dict[str, str]) -> None:
    answer = until_answered(lambda: refresh(app, issued["refresh_token"]), 200)
    assert me(app, answer.json()["access_token"]).status_code == 200


def wait_feed_live(app: AppServer, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while httpx2.get(f"{app.url}/health", timeout=5).json()["revocations"] != "live":
        assert time.monotonic() < deadline, f"{app!r}: revocation feed not live after {timeout}s"
        time.sleep(0.05)


def test_revocations_hold_across_a_failover(
    group: SentinelGroup, app_server_factory: AppServerFactory
) -> None:
    """A logout before a SIGKILL failover stays in force after it (on both processes, and on a process
    started after it, which only has the store's record); one right after it propagates within 1 s."""
    one, two = start_apps(app_server_factory, group)
    ended = login(one, "ended-before")
    ended_after = login(one, "ended-after")
    logout(one, ended)
    assert seconds_until_refused(two, ended["access_token"]) < 1.0

    old: RedisServer = group.primary()
    group.failover(kill=True)
    promoted = time.monotonic()

    # Right after the failover: a logout through one process reaches the other within a second.
    logout(one, ended_after)
    logged_out = time.monotonic()
    elapsed = seconds_until_refused(two, ended_after["access_token"])
    print(
        f"\nlogout after the failover: answered 204 {logged_out - promoted:.2f}s after the promotion, "
        f"refused on the other process {elapsed:.2f}s later"
    )
    assert elapsed < 1.0
    assert refused(one, ended_after["access_token"])

    # The logout made before the failover is still in force on both processes, and both sessions'
    # refresh tokens answer 400 on both (503 only while the new primary has no replica for WAIT yet).
    for app in (one, two):
        assert refused(app, ended["access_token"])
        for issued in (ended, ended_after):
            answer = until_answered(partial(refresh, app, issued["refresh_token"]), 400)
            assert answer.json()["error"] == "invalid_grant"
    # ... and on a process started after the failover, which knows them only from the store
    three = start_apps(app_server_factory, group, count=1)[0]
    wait_feed_live(three)
    for issued in (ended, ended_after):
        assert refused(three, issued["access_token"])
        until_answered(partial(refresh, three, issued["refresh_token"]), 400)

    # The old primary coming back with its older data (in which "ended-after" is alive) resurrects
    # nothing: the apps never read from it, and it is resynchronised from the new primary.
    group.restart_old(old)
    for app in (one, two, three):
        for issued in (ended, ended_after):
            assert refused(app, issued["access_token"])
            until_answered(partial(refresh, app, issued["refresh_token"]), 400)
    # while a session that was never revoked still refreshes
    assert_session_refreshes(three, login(two, "kept"))
