"""The rotation rules of DESIGN.md, checked at the store level on fakeredis and on a real redis-server.

Every test runs twice: once on fakeredis (with Lua) and once on a real ``redis-server`` this module
starts on a free port, so the Lua scripts are proven on the real interpreter too.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from starlette_refresh import InvalidGrant, session_records
from starlette_refresh.revocations import entry_for
from starlette_refresh.sessions import SessionService
from starlette_refresh.testing import ManualClock
from tests.store.helpers import ABSOLUTE_TTL, GRACE, REFRESH_TTL, store_of


async def generation_in_store(service: SessionService, token: str) -> int:
    parsed = service.refresh_codec.parse(token)
    stored = await store_of(service).stored_session(parsed.user_tag, parsed.session_id)
    assert stored is not None, "the session is not stored"
    return stored.generation


pytestmark = pytest.mark.anyio


async def test_rotation_moves_generation_and_derives_tokens(service: SessionService) -> None:
    first = await service.login("alice", {"email": "a@example.com"})
    second = await service.refresh(first.refresh_token)
    third = await service.refresh(second.refresh_token)
    assert [await generation_in_store(service, t.refresh_token) for t in (third,)] == [2]
    assert len({first.refresh_token, second.refresh_token, third.refresh_token}) == 3
    assert first.session_id == second.session_id == third.session_id
    assert service.access.verify(third.access_token)["email"] == "a@example.com"


async def test_predecessor_within_grace_gets_the_same_child(
    service: SessionService, clock: ManualClock
) -> None:
    first = await service.login("alice")
    child = await service.refresh(first.refresh_token)
    clock.advance(GRACE - 1)
    again = await service.refresh(first.refresh_token)
    assert again.refresh_token == child.refresh_token
    assert again.access_token != child.access_token
    assert await generation_in_store(service, child.refresh_token) == 1
    # the child is still the current token and rotates normally
    grandchild = await service.refresh(child.refresh_token)
    assert await generation_in_store(service, grandchild.refresh_token) == 2


async def test_predecessor_after_grace_revokes_the_family(
    service: SessionService, clock: ManualClock
) -> None:
    first = await service.login("alice")
    child = await service.refresh(first.refresh_token)
    clock.advance(GRACE)
    with pytest.raises(InvalidGrant, match="already used"):
        await service.refresh(first.refresh_token)
    with pytest.raises(InvalidGrant, match="invalid or revoked"):
        await service.refresh(child.refresh_token)


async def test_older_than_predecessor_is_reuse_even_within_grace(service: SessionService) -> None:
    first = await service.login("alice")
    second = await service.refresh(first.refresh_token)
    third = await service.refresh(second.refresh_token)
    with pytest.raises(InvalidGrant, match="already used"):
        await service.refresh(first.refresh_token)
    with pytest.raises(InvalidGrant):
        await service.refresh(third.refresh_token)


async def test_token_ahead_of_store_is_accepted_after_lost_writes(service: SessionService) -> None:
    first = await service.login("alice")
    second = await service.refresh(first.refresh_token)
    third = await service.refresh(second.refresh_token)
    # Simulate a store restored from a snapshot taken before the last two rotations.
    parsed = service.refresh_codec.parse(third.refresh_token)
    store = store_of(service)
    user = session_records.decode(await store.redis.get(store.layout.user(parsed.user_tag)))
    forgotten = [replace(s, generation=0) for s in user.sessions]
    await store.redis.set(
        store.layout.user(parsed.user_tag),
        session_records.encode(replace(user, sessions=tuple(forgotten))),
        keepttl=True,
    )
    fourth = await service.refresh(third.refresh_token)
    assert await generation_in_store(service, fourth.refresh_token) == 3
    # and the older tokens that the store "forgot" are still refused as reuse afterwards
    with pytest.raises(InvalidGrant):
        await service.refresh(first.refresh_token)


async def test_idle_lifetime_slides_and_absolute_lifetime_caps(
    service: SessionService, clock: ManualClock
) -> None:
    current = await service.login("alice")
    elapsed = 0
    for _ in range(4):  # 4 x 55 minutes > one idle lifetime, fine while refreshing
        clock.advance(REFRESH_TTL - 300)
        elapsed += REFRESH_TTL - 300
        current = await service.refresh(current.refresh_token)
        assert current.refresh_expires_in == min(REFRESH_TTL, ABSOLUTE_TTL - elapsed)
    clock.advance(ABSOLUTE_TTL - 4 * (REFRESH_TTL - 300) - 60)
    current = await service.refresh(current.refresh_token)
    assert current.refresh_expires_in == 60  # capped by the absolute lifetime
    clock.advance(60)
    with pytest.raises(InvalidGrant, match="session expired"):
        await service.refresh(current.refresh_token)


async def test_idle_expiry_without_refresh(service: SessionService, clock: ManualClock) -> None:
    issued = await service.login("alice")
    clock.advance(REFRESH_TTL)
    with pytest.raises(InvalidGrant, match="session expired"):
        await service.refresh(issued.refresh_token)


async def test_logout_all_ends_every_session_and_later_logins_live(service: SessionService) -> None:
    sessions = [await service.login("alice") for _ in range(3)]
    other = await service.login("bob")
    assert await service.logout_all("alice") == 3
    for issued in sessions:
        with pytest.raises(InvalidGrant):
            await service.refresh(issued.refresh_token)
    await service.refresh(other.refresh_token)
    fresh = await service.login("alice")
    await service.refresh(fresh.refresh_token)


async def test_session_limit_evicts_least_recently_refreshed(
    service: SessionService, clock: ManualClock
) -> None:
    oldest = await service.login("alice")
    clock.advance(1)
    middle = await service.login("alice")
    clock.advance(1)
    newest = await service.login("alice")
    clock.advance(1)
    oldest = await service.refresh(oldest.refresh_token)  # now the most recently used
    clock.advance(1)
    await service.login("alice")  # a fourth session: over the limit of three
    with pytest.raises(InvalidGrant):
        await service.refresh(middle.refresh_token)
    await service.refresh(oldest.refresh_token)
    await service.refresh(newest.refresh_token)
    listed = await service.list_sessions("alice", oldest.session_id)
    assert len(listed) == 3
    assert middle.session_id not in {s.id for s in listed}


async def test_revoke_checks_ownership(service: SessionService) -> None:
    alice = await service.login("alice")
    bob = await service.login("bob")
    assert await service.revoke("bob", alice.session_id) is False
    await service.refresh(alice.refresh_token)
    assert await service.revoke("alice", alice.session_id) is True
    assert await service.revoke("alice", alice.session_id) is False
    with pytest.raises(InvalidGrant):
        await service.refresh(alice.refresh_token)
    await service.refresh(bob.refresh_token)


async def test_every_key_has_a_ttl_and_one_hash_tag(service: SessionService) -> None:
    issued = await service.login("alice")
    issued = await service.refresh(issued.refresh_token)
    await service.login("alice")
    redis = store_of(service).redis
    keys = [k.decode() for k in await redis.keys("*")]
    assert len(keys) == 1, "one key per user, however many sessions"
    tag = service.refresh_codec.parse(issued.refresh_token).user_tag
    for key in keys:
        assert f"{{{tag}}}" in key
        ttl = await redis.pttl(key)
        assert 0 < ttl <= REFRESH_TTL * 1000


async def test_script_cache_loss_is_transparent(service: SessionService) -> None:
    issued = await service.login("alice")
    await store_of(service).redis.script_flush()
    rotated = await service.refresh(issued.refresh_token)
    assert await generation_in_store(service, rotated.refresh_token) == 1


async def test_concurrent_refreshes_rotate_once(service: SessionService) -> None:
    issued = await service.login("alice")
    answers = await asyncio.gather(*(service.refresh(issued.refresh_token) for _ in range(50)))
    assert {a.refresh_token for a in answers} == {answers[0].refresh_token}
    assert len({a.access_token for a in answers}) == 50
    assert await generation_in_store(service, answers[0].refresh_token) == 1
    await service.refresh(answers[0].refresh_token)


async def test_a_rotation_that_reaches_redis_after_its_deadline_changes_nothing(
    service: SessionService,
) -> None:
    issued = await service.login("alice")
    store = store_of(service)
    parsed = service.refresh_codec.parse(issued.refresh_token)
    keys = store.layout.for_session(parsed.user_tag, parsed.session_id)
    rotate = store._scripts["rotate"]
    late = await rotate(store.redis, keys, [parsed.session_id, 0, 1_800_000_000_000, 10_000, 3_600_000, 1])
    assert [x.decode() if isinstance(x, bytes) else x for x in late] == ["late"]
    assert await generation_in_store(service, issued.refresh_token) == 0
    rotated = await service.refresh(issued.refresh_token)  # the real call has a future deadline
    assert await generation_in_store(service, rotated.refresh_token) == 1


async def test_expired_sessions_count_as_gone_for_revoke_and_logout_all(
    service: SessionService, clock: ManualClock
) -> None:
    stale = await service.login("alice")
    clock.advance(REFRESH_TTL - 10)
    fresh = await service.login("alice")
    clock.advance(10)  # the first session's idle lifetime is over; it is still in the index
    assert [s.id for s in await service.list_sessions("alice", fresh.session_id)] == [fresh.session_id]
    assert await service.revoke("alice", stale.session_id) is False  # like the list: not found
    again = await service.login("alice")
    clock.advance(REFRESH_TTL - 5)
    assert await service.logout_all("alice") == 1  # only `again` was alive; `fresh` had expired
    with pytest.raises(InvalidGrant):
        await service.refresh(again.refresh_token)


async def test_the_revocation_record_keeps_the_latest_time_and_lives_as_long_as_its_last_entry(
    service: SessionService, clock: ManualClock
) -> None:
    store, now_ms = store_of(service), int(clock() * 1000)
    first, second = entry_for("t" * 20, "A" * 22), entry_for("t" * 20, "B" * 22)
    await store.publish_revocations([first], now_ms + 60_000, now_ms)
    # A repair writes back an older entry with an earlier time: it must neither shorten the record's
    # life nor pull an entry's time back.
    await store.publish_revocations([second, first], now_ms + 10_000, now_ms)

    assert await store.load_revocations(now_ms) == {first: now_ms + 60_000, second: now_ms + 10_000}
    assert 50_000 < await store.redis.pttl(store.layout.revocations) <= 60_000
    # Entries whose access tokens have all expired are dropped on the next write.
    third = entry_for("t" * 20, "C" * 22)
    await store.publish_revocations([third], now_ms + 80_000, now_ms + 20_000)
    assert set(await store.load_revocations(now_ms)) == {first, third}
