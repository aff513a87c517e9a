"""Sessions stored by release 0.1 (format 1) keep working: refreshed, moved into format 2, graced,
refused as reuse, revoked, listed, counted against the cap and ended by logout-all.

The sessions are planted by 0.1's own login script (tests/support/format1.py). Every test runs on
fakeredis and on a real redis-server (tests/store/conftest.py).
"""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from redis import exceptions as redis_errors

from starlette_refresh import InvalidGrant, session_records
from starlette_refresh.refresh_tokens import RefreshTokenCodec
from starlette_refresh.sessions import SessionService
from starlette_refresh.testing import ManualClock
from tests.store.helpers import ABSOLUTE_TTL, GRACE, REFRESH_TTL, store_of
from tests.support.format1 import create_format1_session

pytestmark = pytest.mark.anyio

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


async def plant(
    service: SessionService, subject: str, *, age: int = 0, user_agent: str = CHROME, claims: str = "{}"
) -> str:
    """A format-1 session of ``subject`` created ``age`` seconds ago; returns its generation-0 token."""
    codec: RefreshTokenCodec = service.refresh_codec
    tag, session_id = codec.user_tag(subject), codec.new_session_id()
    created = int(service.clock() * 1000) - age * 1000
    await create_format1_session(
        store_of(service).redis,
        tag,
        session_id,
        subject,
        now_ms=created,
        idle_expires_at_ms=created + REFRESH_TTL * 1000,
        absolute_expires_at_ms=created + ABSOLUTE_TTL * 1000,
        user_agent=user_agent,
        claims_json=claims,
    )
    return codec.mint(tag, session_id, 0)


async def keys(service: SessionService) -> list[str]:
    """Every session key in the store (the revocation record aside)."""
    revocations = store_of(service).layout.revocations
    return sorted(k.decode() for k in await store_of(service).redis.keys("*") if k.decode() != revocations)


async def format1_rotated_to(service: SessionService, token: str, generation: int) -> str:
    """Moves a planted session to ``generation`` the way a 0.1 rotation would (``gen`` and ``rot``)."""
    parsed = service.refresh_codec.parse(token)
    layout = store_of(service).layout
    now_ms = int(service.clock() * 1000)
    await store_of(service).redis.hset(
        layout.session(parsed.user_tag, parsed.session_id), mapping={"gen": generation, "rot": now_ms}
    )
    return service.refresh_codec.mint(parsed.user_tag, parsed.session_id, generation)


async def test_a_format1_session_refreshes_and_moves_into_the_users_string(
    service: SessionService, clock: ManualClock
) -> None:
    token = await plant(service, "alice", age=600, claims='{"role":"admin"}')
    parsed = service.refresh_codec.parse(token)
    layout = store_of(service).layout
    assert await keys(service) == sorted(
        [layout.session(parsed.user_tag, parsed.session_id), layout.index(parsed.user_tag)]
    )

    rotated = await service.refresh(token)

    claims = jwt.decode(rotated.access_token, options={"verify_signature": False})
    assert (claims["sub"], claims["role"], claims["sid"]) == ("alice", "admin", parsed.session_id)
    assert await keys(service) == [layout.user(parsed.user_tag)], "format-1 keys left behind"
    stored = await store_of(service).stored_session(parsed.user_tag, parsed.session_id)
    now_ms = int(clock() * 1000)
    assert stored == session_records.SessionRecord(
        session_id=parsed.session_id,
        generation=1,
        created_at_ms=now_ms - 600_000,
        rotated_at_ms=now_ms,
        idle_expires_at_ms=now_ms + REFRESH_TTL * 1000,
        absolute_expires_at_ms=now_ms - 600_000 + ABSOLUTE_TTL * 1000,
        label=CHROME,  # kept whole; the list shows its label
        claims_json='{"role":"admin"}',
    )
    listed = await service.list_sessions("alice", parsed.session_id)
    assert [(s.id, s.user_agent) for s in listed] == [(parsed.session_id, "Chrome 131 on Linux")]
    # from now on it is an ordinary format-2 session
    assert (await service.refresh(rotated.refresh_token)).refresh_token.split(".")[3] == "2"
    ttl = await store_of(service).redis.pttl(layout.user(parsed.user_tag))
    assert 0 < ttl <= REFRESH_TTL * 1000


async def test_a_format1_predecessor_within_grace_gets_the_same_child_and_stays_put(
    service: SessionService, clock: ManualClock
) -> None:
    first = await plant(service, "alice")
    current = await format1_rotated_to(service, first, 1)  # 0.1 rotated it just now
    clock.advance(GRACE / 2)

    graced = await service.refresh(first)

    assert graced.refresh_token == current  # the derived answer: the current token again
    parsed = service.refresh_codec.parse(first)
    assert await store_of(service).redis.exists(store_of(service).layout.user(parsed.user_tag)) == 0
    assert (await service.refresh(current)).refresh_token.split(".")[3] == "2"  # now it moves


async def test_a_format1_token_presented_again_is_reuse_and_ends_the_session(
    service: SessionService, clock: ManualClock
) -> None:
    first = await plant(service, "alice")
    current = await format1_rotated_to(service, first, 1)
    clock.advance(GRACE + 1)
    with pytest.raises(InvalidGrant, match="already used"):
        await service.refresh(first)
    with pytest.raises(InvalidGrant):
        await service.refresh(current)
    assert await keys(service) == []


async def test_an_expired_format1_session_is_refused_as_expired(
    service: SessionService, clock: ManualClock
) -> None:
    token = await plant(service, "alice")
    clock.advance(REFRESH_TTL)
    with pytest.raises(InvalidGrant, match="expired"):
        await service.refresh(token)


async def test_revoking_a_format1_session_checks_its_owner(service: SessionService) -> None:
    token = await plant(service, "alice")
    session_id = service.refresh_codec.parse(token).session_id
    assert await service.revoke("bob", session_id) is False
    assert await service.revoke("alice", session_id) is True
    with pytest.raises(InvalidGrant):
        await service.refresh(token)
    assert await keys(service) == []


async def test_logout_of_a_format1_session_ends_it(service: SessionService) -> None:
    token = await plant(service, "alice")
    await service.logout(token)
    with pytest.raises(InvalidGrant):
        await service.refresh(token)
    assert await keys(service) == []


async def test_listing_and_logout_all_cover_both_formats(service: SessionService, clock: ManualClock) -> None:
    old = await plant(service, "alice", age=60, user_agent="curl/8.5.0")
    moved = await service.refresh(await plant(service, "alice", age=30))
    new = await service.login("alice", user_agent="python-httpx/0.28.1")
    await service.login("bob")

    listed = await service.list_sessions("alice", new.session_id)

    ids = [service.refresh_codec.parse(t).session_id for t in (old, moved.refresh_token)]
    assert [(s.id, s.user_agent, s.current) for s in listed] == [
        (ids[0], "curl/8.5.0", False),
        (ids[1], "Chrome 131 on Linux", False),
        (new.session_id, "python-httpx/0.28.1", True),
    ]
    assert await service.logout_all("alice") == 3
    for token in (old, moved.refresh_token, new.refresh_token):
        with pytest.raises(InvalidGrant):
            await service.refresh(token)
    bob_tag = service.refresh_codec.user_tag("bob")
    assert await keys(service) == [store_of(service).layout.user(bob_tag)]


async def test_a_login_counts_format1_sessions_against_the_cap(service: SessionService) -> None:
    # max_sessions_per_user is 3 here: two format-1 sessions and one format-2 one fill it
    oldest = await plant(service, "alice", age=30)
    older = await plant(service, "alice", age=20)
    await service.login("alice")

    newest = await service.login("alice")

    with pytest.raises(InvalidGrant):
        await service.refresh(oldest)  # evicted, its record deleted
    parsed = service.refresh_codec.parse(oldest)
    assert await store_of(service).stored_session(parsed.user_tag, parsed.session_id) is None
    listed = await service.list_sessions("alice", newest.session_id)
    assert len(listed) == 3
    assert service.refresh_codec.parse(older).session_id in {s.id for s in listed}


async def test_a_value_in_an_unknown_format_fails_loudly_and_is_left_alone(service: SessionService) -> None:
    issued = await service.login("alice")
    parsed = service.refresh_codec.parse(issued.refresh_token)
    key = store_of(service).layout.user(parsed.user_tag)
    await store_of(service).redis.set(key, b"9 written by a newer release")
    for attempt in (service.refresh(issued.refresh_token), service.login("alice")):
        with pytest.raises(redis_errors.ResponseError, match="unknown session format 9"):
            await attempt
    assert await store_of(service).redis.get(key) == b"9 written by a newer release"


async def test_session_records_read_by_python_match_what_the_scripts_wrote(service: SessionService) -> None:
    first = await service.login("ålice:2", {"team": "a,b:c"}, user_agent="x" * 10)
    second = await service.refresh((await service.login("ålice:2", user_agent=CHROME)).refresh_token)
    tag = service.refresh_codec.user_tag("ålice:2")
    value: Any = await store_of(service).redis.get(store_of(service).layout.user(tag))

    user = session_records.decode(value)

    assert user.subject == "ålice:2"
    assert [(s.session_id, s.generation, s.label, s.claims_json) for s in user.sessions] == [
        (first.session_id, 0, "x" * 10, '{"team":"a,b:c"}'),
        (second.session_id, 1, "Chrome 131 on Linux", "{}"),
    ]
    assert session_records.encode(user) == value  # byte for byte what Lua wrote


async def test_while_older_processes_serve_sessions_are_written_in_format1_and_move_back_after(
    service: SessionService,
) -> None:
    store = store_of(service)
    before = await service.login("alice")  # format 2
    store.write_format = 1  # what FormatWatch sets while 0.1 processes share the store

    during = await service.login("alice")
    moved = await service.refresh(before.refresh_token)

    tag = service.refresh_codec.user_tag("alice")
    assert await keys(service) == sorted(
        [
            store.layout.index(tag),
            store.layout.session(tag, before.session_id),
            store.layout.session(tag, during.session_id),
        ]
    ), "0.1 must find both sessions where it looks"
    fields = await store.redis.hgetall(store.layout.session(tag, before.session_id))
    assert {k.decode(): v.decode() for k, v in fields.items() if k in (b"sub", b"gen", b"cl")} == {
        "sub": "alice",
        "gen": "1",
        "cl": "{}",
    }
    again = await service.refresh(moved.refresh_token)  # a format-1 rotation stays format 1
    assert (await store.stored_session(tag, before.session_id)).generation == 2  # type: ignore[union-attr]

    store.write_format = 2  # the old processes are gone
    await service.refresh(again.refresh_token)
    await service.refresh(during.refresh_token)
    assert await keys(service) == [store.layout.user(tag)]
    assert [s.id for s in await service.list_sessions("alice", before.session_id)] == [
        before.session_id,
        during.session_id,
    ]


async def test_older_processes_are_the_subscribers_without_the_format2_marker(
    service: SessionService,
) -> None:
    store = store_of(service)
    assert await store.older_processes() == 0
    async with store.subscription():  # this release: both channels in one SUBSCRIBE
        assert await store.older_processes() == 0
        old = store.redis.pubsub()
        await old.subscribe(store.layout.channel)  # what 0.1 subscribes to
        try:
            assert await store.older_processes() == 1
        finally:
            await old.unsubscribe()  # as its connection closing does (fakeredis needs it said)
            await old.aclose()
    assert await store.older_processes() == 0


async def test_a_subject_too_long_for_the_format_is_refused_before_anything_is_stored(
    service: SessionService,
) -> None:
    with pytest.raises(ValueError, match="at most 65535 bytes"):
        await service.login("é" * 40_000)  # 80,000 bytes of UTF-8
    assert await keys(service) == []
    longest = await service.login("x" * 65_535)
    assert (await service.refresh(longest.refresh_token)).subject == "x" * 65_535
