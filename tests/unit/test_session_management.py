"""Server-side session management (issue 14, finding 8): ``TokenAuth.list_sessions``, ``end_session``
and ``end_sessions`` end a subject's sessions from server code, with no request from that subject,
exactly as the auth endpoints would: refresh tokens refused, access tokens refused as revoked.

In-process on fakeredis and the manual clock, through the app of ``tests/apps.py``; the methods are
called on the TestClient's event loop (its portal), as a route of the app would call them. The reach
to other processes is tests/integration/test_session_management_reach.py.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import fakeredis
import pytest
from starlette.testclient import TestClient

from starlette_refresh import StoreUnavailable, TokenAuth
from starlette_refresh.observe import NullObserver, RevocationKind
from starlette_refresh.sessions import SessionInfo
from starlette_refresh.store import SessionStore
from starlette_refresh.testing import ManualClock
from tests.apps import build_app
from tests.unit.test_contract import (
    BASE_URL,
    Login,
    assert_invalid_grant,
    assert_tokens,
    iso_utc,
    login,
    me,
    refresh_by_cookie,
    sessions_of,
)

T = TypeVar("T")
MakeAuth = Callable[..., TokenAuth]
REVOKED = {"error": "invalid_token", "error_description": "token revoked"}


def call(client: TestClient, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Runs ``await method(*args, **kwargs)`` on the app's event loop, as a route of the app would."""
    assert client.portal is not None, "the TestClient's lifespan is not running"
    return client.portal.call(functools.partial(method, *args, **kwargs))


def assert_ended(client: TestClient, session: Login) -> None:
    """The session is over: its access token is refused as revoked, its refresh token as invalid."""
    answer = me(client, session.access_token)
    assert answer.status_code == 401, answer.text
    assert answer.json() == REVOKED
    assert_invalid_grant(refresh_by_cookie(client, session.refresh_token))


def assert_alive(client: TestClient, session: Login) -> None:
    """The session carries on: its access token works and its refresh token rotates."""
    assert me(client, session.access_token).status_code == 200
    assert_tokens(refresh_by_cookie(client, session.refresh_token))


class RecordingObserver(NullObserver):
    """Remembers the revocations reported to it."""

    def __init__(self) -> None:
        self.revocations: list[tuple[RevocationKind, int]] = []

    def revocation(self, kind: RevocationKind, sessions: int) -> None:
        self.revocations.append((kind, sessions))


# ---------------------------------------------------------------------------------------------
# list_sessions
# ---------------------------------------------------------------------------------------------


def test_list_sessions_is_what_the_session_endpoint_shows(
    auth: TokenAuth, client: TestClient, clock: ManualClock
) -> None:
    first = login(client, headers={"User-Agent": "phone"})
    clock.advance(60)
    second = login(client, headers={"User-Agent": "laptop"})
    login(client, subject="someone else")

    listed = call(client, auth.list_sessions, "42")

    assert all(isinstance(s, SessionInfo) for s in listed)
    assert [(s.id, s.user_agent, s.created_at) for s in listed] == [
        (first.sid, "phone", iso_utc(clock() - 60)),
        (second.sid, "laptop", iso_utc(clock())),
    ]
    assert [s.current for s in listed] == [False, False]  # no request, so no session is "current"
    # the same data as GET /auth/sessions, which marks the caller's session
    assert [s.as_json() for s in call(client, auth.list_sessions, "42", current=second.sid)] == (
        sessions_of(client, second.access_token)
    )
    assert call(client, auth.list_sessions, "nobody") == []


# ---------------------------------------------------------------------------------------------
# end_session
# ---------------------------------------------------------------------------------------------


def test_end_session_ends_that_session_only(auth: TokenAuth, client: TestClient) -> None:
    doomed, other = login(client), login(client)
    bystander = login(client, subject="someone else")

    assert call(client, auth.end_session, "42", doomed.sid) is True

    assert_ended(client, doomed)
    assert_alive(client, other)
    assert_alive(client, bystander)
    assert [s.id for s in call(client, auth.list_sessions, "42")] == [other.sid]
    # ending it again: nothing left to end
    assert call(client, auth.end_session, "42", doomed.sid) is False


def test_end_session_of_another_subject_is_false_and_ends_nothing(
    auth: TokenAuth, client: TestClient
) -> None:
    theirs = login(client, subject="someone else")
    mine = login(client)

    assert call(client, auth.end_session, "42", theirs.sid) is False
    assert call(client, auth.end_session, "42", "no-such-session") is False

    assert_alive(client, theirs)
    assert_alive(client, mine)


# ---------------------------------------------------------------------------------------------
# end_sessions
# ---------------------------------------------------------------------------------------------


def test_end_sessions_ends_every_session_of_the_subject(auth: TokenAuth, client: TestClient) -> None:
    sessions = [login(client) for _ in range(3)]
    bystander = login(client, subject="someone else")

    assert call(client, auth.end_sessions, "42") == 3

    for session in sessions:
        assert_ended(client, session)
    assert_alive(client, bystander)
    assert call(client, auth.list_sessions, "42") == []
    assert call(client, auth.end_sessions, "42") == 0


def test_end_sessions_keep_ends_every_other_session(auth: TokenAuth, client: TestClient) -> None:
    kept, *others = [login(client) for _ in range(3)]
    bystander = login(client, subject="someone else")

    assert call(client, auth.end_sessions, "42", keep=kept.sid) == 2

    for session in others:
        assert_ended(client, session)
    assert_alive(client, kept)  # the kept one still refreshes
    assert_alive(client, bystander)
    assert [s.id for s in call(client, auth.list_sessions, "42")] == [kept.sid]
    assert call(client, auth.end_sessions, "42", keep=kept.sid) == 0


def test_end_sessions_keep_of_an_unknown_session_ends_them_all(auth: TokenAuth, client: TestClient) -> None:
    sessions = [login(client) for _ in range(2)]
    elsewhere = login(client, subject="someone else")

    # "all but the caller's" with a session id that is not the subject's keeps nothing of theirs
    assert call(client, auth.end_sessions, "42", keep=elsewhere.sid) == 2

    for session in sessions:
        assert_ended(client, session)
    assert_alive(client, elsewhere)


def test_ended_sessions_are_counted_as_the_endpoints_count_them(make_auth: MakeAuth) -> None:
    observer = RecordingObserver()
    auth = make_auth(observer=observer)
    with TestClient(build_app(auth), base_url=BASE_URL) as client:
        sessions = [login(client) for _ in range(4)]
        call(client, auth.end_session, "42", sessions[0].sid)
        call(client, auth.end_session, "42", sessions[0].sid)  # already ended: not counted again
        call(client, auth.end_sessions, "42", keep=sessions[1].sid)
        call(client, auth.end_sessions, "42")

    assert observer.revocations == [("session_revoke", 1), ("logout_all", 2), ("logout_all", 1)]


# ---------------------------------------------------------------------------------------------
# outages
# ---------------------------------------------------------------------------------------------


def test_every_method_raises_store_unavailable_in_an_outage_and_ends_nothing(
    auth: TokenAuth, client: TestClient, fake_server: fakeredis.FakeServer
) -> None:
    kept, other = login(client), login(client)

    fake_server.connected = False
    with pytest.raises(StoreUnavailable):
        call(client, auth.list_sessions, "42")
    with pytest.raises(StoreUnavailable):
        call(client, auth.end_session, "42", other.sid)
    with pytest.raises(StoreUnavailable):
        call(client, auth.end_sessions, "42")
    with pytest.raises(StoreUnavailable):
        call(client, auth.end_sessions, "42", keep=kept.sid)
    fake_server.connected = True

    assert_alive(client, kept)
    assert_alive(client, other)
    # once the store is back, the same call does it
    assert call(client, auth.end_sessions, "42", keep=kept.sid) == 1


def test_end_sessions_keep_that_fails_half_way_still_revokes_what_it_ended(
    auth: TokenAuth, client: TestClient, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage after some sessions ended: those lose their access tokens at once, because a retry
    would no longer list them and so could not announce them."""
    kept, first = login(client), login(client)
    clock.advance(1)  # so that the list, oldest first, has them in this order
    second = login(client)
    store: SessionStore = auth.store
    revoke = store.revoke
    calls: list[str] = []

    async def revoke_then_fail(user_tag: str, session_id: str, subject: str | None, now_ms: int) -> bool:
        calls.append(session_id)
        if len(calls) > 1:
            raise StoreUnavailable("Redis went away half-way")
        return await revoke(user_tag, session_id, subject, now_ms)

    monkeypatch.setattr(store, "revoke", revoke_then_fail)
    with pytest.raises(StoreUnavailable):
        call(client, auth.end_sessions, "42", keep=kept.sid)
    monkeypatch.undo()

    assert calls == [first.sid, second.sid]  # oldest first, the kept one skipped
    assert_ended(client, first)
    assert_alive(client, second)  # the retry ends it
    assert call(client, auth.end_sessions, "42", keep=kept.sid) == 1
    assert_ended(client, second)
    assert_alive(client, kept)
