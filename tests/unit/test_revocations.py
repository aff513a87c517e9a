"""The in-process revocation list and what it does to access tokens, on fakeredis."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from starlette_refresh import StoreUnavailable, TokenAuth
from starlette_refresh.revocations import RevocationFeed, RevocationList, entry_for
from starlette_refresh.shared_clock import CLOCK_AGREEMENT_SECONDS
from starlette_refresh.testing import ManualClock
from tests.apps import build_app

TAG = "0123456789abcdef0123"
SID = "AAAAAAAAAAAAAAAAAAAAAA"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_entry_lasts_until_its_time_and_is_then_pruned(clock: ManualClock) -> None:
    revoked = RevocationList(clock)
    revoked.add([entry_for(TAG, SID)], clock() + 60)
    assert revoked.is_revoked(SID)
    assert not revoked.is_revoked("B" * 22)
    clock.advance(59)
    assert revoked.is_revoked(SID)
    clock.advance(1)
    assert not revoked.is_revoked(SID)
    assert len(revoked) == 1
    revoked.prune()
    assert len(revoked) == 0


def test_merge_adopts_the_durable_record_and_reports_what_it_lacks(clock: ManualClock) -> None:
    revoked = RevocationList(clock)
    known, expired = entry_for(TAG, SID), entry_for(TAG, "C" * 22)
    revoked.add([known], clock() + 60)
    revoked.add([expired], clock() - 1)
    durable = {entry_for(TAG, "B" * 22): int((clock() + 30) * 1000)}
    before = revoked.known()
    assert before == {known}  # the expired one is not worth repairing
    assert revoked.merge(durable, before) == {known: clock() + 60}
    assert revoked.is_revoked("B" * 22)
    assert revoked.merge({**durable, known: int((clock() + 60) * 1000)}, revoked.known()) == {}


def test_an_entry_added_while_the_record_was_read_is_not_missing_from_it(clock: ManualClock) -> None:
    """Issue 14, finding 5: a logout that lands between the load and the merge used to be reported
    as lost by the store ("restored from an older snapshot?") and written back."""
    revoked = RevocationList(clock)
    before = revoked.known()  # the feed reads the durable record...
    revoked.add([entry_for(TAG, SID)], clock() + 60)  # ...while a logout in this process lands
    assert revoked.merge({}, before) == {}
    assert revoked.is_revoked(SID)


def test_a_later_revocation_extends_an_earlier_one(clock: ManualClock) -> None:
    revoked = RevocationList(clock)
    revoked.add([entry_for(TAG, SID)], clock() + 60)
    revoked.add([entry_for(TAG, SID)], clock() + 10)  # an older announcement arriving late
    clock.advance(30)
    assert revoked.is_revoked(SID)


def test_watchers_hear_of_their_session_once_and_only_theirs(clock: ManualClock) -> None:
    revoked = RevocationList(clock)
    heard: list[str] = []
    revoked.watch(SID, lambda: heard.append("first"))
    revoked.watch(SID, lambda: heard.append("second"))
    revoked.watch("B" * 22, lambda: heard.append("other session"))
    stop = revoked.watch("C" * 22, lambda: heard.append("unwatched"))
    stop()
    revoked.add([entry_for(TAG, SID), entry_for(TAG, "C" * 22)], clock() + 60)
    assert sorted(heard) == ["first", "second"]
    revoked.add([entry_for(TAG, SID)], clock() + 90)  # a repeat announcement tells no one again
    assert sorted(heard) == ["first", "second"]


def test_watching_an_already_revoked_session_calls_back_at_once(clock: ManualClock) -> None:
    revoked = RevocationList(clock)
    revoked.add([entry_for(TAG, SID)], clock() + 60)
    heard: list[str] = []
    revoked.watch(SID, lambda: heard.append("revoked"))
    assert heard == ["revoked"]


def test_the_durable_record_wakes_watchers_of_live_revocations_only(clock: ManualClock) -> None:
    """merge() (the reload after the feed reconnects) tells watchers of what it learns, as add() does,
    but not of a revocation already over."""
    revoked = RevocationList(clock)
    heard: list[str] = []
    revoked.watch(SID, lambda: heard.append("expired one"))
    revoked.watch("B" * 22, lambda: heard.append("live one"))
    revoked.merge(
        {
            entry_for(TAG, SID): int((clock() - 1) * 1000),  # already over: nothing to stop
            entry_for(TAG, "B" * 22): int((clock() + 60) * 1000),
        },
        revoked.known(),
    )
    assert heard == ["live one"]


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[]", b'{"revoked": "x", "until": 1}', b'{"revoked": [], "until": "soon"}', b"{}"],
)
def test_malformed_messages_are_ignored_and_logged(
    data: bytes, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    revoked = RevocationList(clock)
    feed = RevocationFeed(store=None, revocations=revoked, clock=clock)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="starlette_refresh.revocations"):
        feed._receive(data)
    assert len(revoked) == 0
    assert "malformed revocation message" in caplog.text


@pytest.mark.parametrize("how", ["logout", "logout-all", "revoke", "reuse"])
def test_every_revocation_stops_the_sessions_access_tokens_at_once(
    how: str, make_auth: Callable[..., TokenAuth], clock: ManualClock
) -> None:
    auth = make_auth(refresh_grace=1)
    with TestClient(build_app(auth), base_url="https://testserver") as client:
        issued = client.post("/login", json={"transport": "body"}).json()
        other = client.post("/login", json={"transport": "body"}).json()
        sid = client.get("/me", headers=bearer(issued["access_token"])).json()["sid"]
        if how == "logout":
            client.post("/auth/logout", json={"refresh_token": issued["refresh_token"]})
        elif how == "logout-all":
            client.post("/auth/logout-all", headers=bearer(issued["access_token"]))
        elif how == "revoke":
            client.delete(f"/auth/sessions/{sid}", headers=bearer(other["access_token"]))
        else:
            client.post("/auth/refresh", json={"refresh_token": issued["refresh_token"]})
            clock.advance(2)
            client.post("/auth/refresh", json={"refresh_token": issued["refresh_token"]})
        refused = client.get("/me", headers=bearer(issued["access_token"]))
        assert refused.status_code == 401
        assert refused.json() == {"error": "invalid_token", "error_description": "token revoked"}
        assert 'error_description="token revoked"' in refused.headers["www-authenticate"]
        # the entry lasts as long as the access token could (access_ttl plus leeway), plus the most two
        # processes' clocks may disagree by
        lifetime = auth.settings.access_ttl + auth.settings.leeway + CLOCK_AGREEMENT_SECONDS
        clock.advance(lifetime - 1)
        assert auth.revocations.is_revoked(sid)
        clock.advance(1)
        assert not auth.revocations.is_revoked(sid)
        expected_other = 401 if how == "logout-all" else 200
        clock.advance(-lifetime)
        assert client.get("/me", headers=bearer(other["access_token"])).status_code == expected_other


def test_health_reports_the_store_and_the_feed(make_auth: Callable[..., TokenAuth]) -> None:
    auth = make_auth(exclude=["/login", "/health"])
    with TestClient(build_app(auth), base_url="https://testserver") as client:
        for _ in range(100):  # the feed connects in the background after startup
            health = client.get("/health").json()
            if health["revocations"] == "live":
                break
            time.sleep(0.01)
        assert health == {"store": "ok", "revocations": "live", "revoked_sessions": 0}


class _SubscriptionThatFailsOnce:
    """A store whose first subscription fails with a bug (not an outage), then works."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.subscriptions = 0

    def subscription(self) -> Any:
        self.subscriptions += 1
        if self.subscriptions == 1:
            raise self.error
        return _QuietSubscription()

    async def load_revocations(self, now_ms: int) -> dict[str, int]:
        return {}


class _QuietSubscription:
    async def __aenter__(self) -> _QuietSubscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def get_message(self, **_: object) -> None:
        await asyncio.sleep(0.01)

    async def ping(self) -> None:
        return None


@pytest.mark.parametrize(
    ("error", "level"),
    [(RuntimeError("a bug in the subscription"), logging.ERROR), (ConnectionError("refused"), None)],
)
def test_the_feed_reconnects_after_any_failure_and_names_a_bug_loudly(
    clock: ManualClock, caplog: pytest.LogCaptureFixture, error: Exception, level: int | None
) -> None:
    store = _SubscriptionThatFailsOnce(error)
    feed = RevocationFeed(store=store, revocations=RevocationList(clock), clock=clock)  # type: ignore[arg-type]

    async def run() -> bool:
        await feed.start()
        try:
            for _ in range(200):
                if feed.live:
                    return True
                await asyncio.sleep(0.01)
            return False
        finally:
            await feed.stop()

    with caplog.at_level(logging.INFO, logger="starlette_refresh.revocations"):
        assert asyncio.run(run()), "the feed did not come back after a failed subscription"

    assert store.subscriptions >= 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    if level is None:
        assert errors == []  # an outage before the feed was ever live is not worth an error
    else:
        assert [r.getMessage() for r in errors] == ["revocation feed failed unexpectedly; reconnecting"]
        assert errors[0].exc_info is not None
        assert errors[0].exc_info[1] is error


class _StoreWithALogoutDuringTheLoad:
    """A store that answers the load without an entry that a logout in this process adds meanwhile."""

    def __init__(self, revocations: RevocationList, clock: ManualClock) -> None:
        self.revocations = revocations
        self.clock = clock
        self.written_back: list[str] = []

    def subscription(self) -> Any:
        return _QuietSubscription()

    async def load_revocations(self, now_ms: int) -> dict[str, int]:
        self.revocations.add([entry_for(TAG, SID)], self.clock() + 60)  # the logout lands now
        return {}  # read before the logout wrote its entry

    async def revoke(self, user_tag: str, session_id: str, *_: object) -> None:
        self.written_back.append(entry_for(user_tag, session_id))

    async def publish_revocations(self, entries: list[str], *_: object) -> None:
        self.written_back.extend(entries)


def test_a_logout_during_the_feeds_load_is_no_lost_revocation(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 14, finding 5, through the feed: no "store lacks N revocations" warning, nothing
    written back or published again."""
    revocations = RevocationList(clock)
    store = _StoreWithALogoutDuringTheLoad(revocations, clock)
    feed = RevocationFeed(store=store, revocations=revocations, clock=clock)  # type: ignore[arg-type]

    async def run() -> None:
        await feed.start()
        try:
            await feed.ready(within=5)
        finally:
            await feed.stop()

    with caplog.at_level(logging.INFO, logger="starlette_refresh.revocations"):
        asyncio.run(run())

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert store.written_back == []
    assert revocations.is_revoked(SID)


def test_ready_gives_up_after_its_time_and_says_so(clock: ManualClock) -> None:
    class NeverLoads(_StoreWithALogoutDuringTheLoad):
        async def load_revocations(self, now_ms: int) -> dict[str, int]:
            await asyncio.sleep(60)
            return {}

    feed = RevocationFeed(
        store=NeverLoads(RevocationList(clock), clock), revocations=RevocationList(clock), clock=clock
    )  # type: ignore[arg-type]

    async def run() -> None:
        await feed.start()
        try:
            await feed.ready(within=0.2)
        finally:
            await feed.stop()

    with pytest.raises(
        StoreUnavailable, match=r"could not load the revoked sessions from the store within 0.2s"
    ):
        asyncio.run(run())
