"""The stored format 2 (starlette_refresh.session_records) against the Lua scripts that write it.

Python reads what Lua wrote and Lua reads what Python wrote, for any subject, label and claims:
the two sides agree byte for byte, and no text a user controls (their User-Agent, the app's claims,
the subject) can make a script read one session's record as another's.
"""

from __future__ import annotations

import asyncio
import string
from typing import Any

import fakeredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlette_refresh import Settings, session_records
from starlette_refresh.session_records import FormatError, SessionRecord, UserRecord
from starlette_refresh.store import RedisStore

TAG = "0" * 20
NOW = 1_800_000_000_000
HOUR = 3_600_000
session_ids = st.text(string.ascii_letters + string.digits + "-_", min_size=22, max_size=22)
# What a user can put in their User-Agent or an app in its claims, separators included.
free_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
times = st.integers(min_value=0, max_value=2**48 - 1)

records = st.builds(
    SessionRecord,
    session_id=session_ids,
    generation=st.integers(min_value=0, max_value=10**15),
    created_at_ms=times,
    rotated_at_ms=times,
    idle_expires_at_ms=times,
    absolute_expires_at_ms=times,
    label=free_text,
    claims_json=st.one_of(st.just("{}"), free_text.map(lambda t: '{"x":' + repr(t) + "}")),
)


@given(st.text(min_size=1, max_size=40), st.lists(records, max_size=4, unique_by=lambda r: r.session_id))
def test_encode_then_decode_gives_back_every_field(subject: str, sessions: list[SessionRecord]) -> None:
    user = UserRecord(subject, tuple(sessions))
    assert session_records.decode(session_records.encode(user)) == user


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"1abc",  # another format
        b"2\x00",  # a length cut short
        b"2\x00\x05ali",  # a subject longer than the value
        b"2\x00\x01a\x00\x40short",  # a record longer than the value
        b"2\x00\x01a\x00\x02xy",  # a record shorter than its fixed fields
    ],
)
def test_anything_else_is_a_format_error(value: bytes) -> None:
    with pytest.raises(FormatError):
        session_records.decode(value)


def test_the_format_is_compact() -> None:
    user = UserRecord(
        "user-000001",
        (
            SessionRecord(
                "A" * 22,
                3,
                NOW,
                NOW + 60_000,
                NOW + 7 * 24 * HOUR,
                NOW + 30 * 24 * HOUR,
                "Chrome 131 on Linux",
            ),
        ),
    )
    # 14 bytes for the user, 75 for the session (19 of them its label)
    assert len(session_records.encode(user)) == 89


async def run_script(redis: Any, store: RedisStore, name: str, keys: list[str], args: list[Any]) -> Any:
    return await store._scripts[name](redis, keys, args)


@settings(max_examples=60, deadline=None)
@given(
    subject=st.text(min_size=1, max_size=30),
    stored=st.lists(records, min_size=1, max_size=4, unique_by=lambda r: r.session_id),
    pick=st.integers(min_value=0, max_value=3),
)
def test_a_script_rotates_the_session_python_wrote_and_leaves_the_others_byte_for_byte(
    subject: str, stored: list[SessionRecord], pick: int
) -> None:
    # every session alive at NOW, at generation 5 and last rotated an hour ago
    alive = [
        SessionRecord(
            r.session_id, 5, NOW - 2 * HOUR, NOW - HOUR, NOW + HOUR, NOW + 10 * HOUR, r.label, r.claims_json
        )
        for r in stored
    ]
    target = alive[pick % len(alive)]
    # a label that spells out the target's id and a record header must not fool the walk
    alive[-1] = SessionRecord(
        **{**_fields(alive[-1]), "label": f"{target.session_id}5,1:{target.session_id}"}
    )
    target = alive[pick % len(alive)]

    async def scenario() -> tuple[list[Any], UserRecord]:
        redis = fakeredis.aioredis.FakeRedis(server=fakeredis.FakeServer())
        store = RedisStore(redis, settings=Settings())
        key = store.layout.user(TAG)
        await redis.set(key, session_records.encode(UserRecord(subject, tuple(alive))), px=HOUR)
        reply = await run_script(
            redis, store, "rotate", [key], [target.session_id, 5, NOW, 10_000, 2 * HOUR, 0]
        )
        after = session_records.decode(await redis.get(key))
        await redis.aclose()
        return reply, after

    reply, after = asyncio.run(scenario())

    assert [x.decode() if isinstance(x, bytes) else x for x in reply] == [
        "rotated", 6, NOW + 2 * HOUR, subject, target.claims_json, 5,
    ]  # fmt: skip
    expected = [
        SessionRecord(
            **{**_fields(r), "generation": 6, "rotated_at_ms": NOW, "idle_expires_at_ms": NOW + 2 * HOUR}
        )
        if r.session_id == target.session_id
        else r
        for r in alive
    ]
    # the rotated record changes in place; every other byte of the value stays as it was
    assert after == UserRecord(subject, tuple(expected))


def _fields(record: SessionRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in SessionRecord.__slots__}
