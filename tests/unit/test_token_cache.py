"""The verified-token cache: every answer it gives equals the full check's, at every moment.

The cache adds states a token can be in (remembered, remembered but past its window, evicted); each
test drives one of them with a manual clock. The last test runs random sequences of verifications,
clock moves (forward and back), revocations and evictions against a codec with the cache and one
without, and requires the same claims or the same error, every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from starlette_refresh import InvalidToken, ManualClock
from starlette_refresh.access_tokens import AccessTokenCodec
from starlette_refresh.keys import KeyRing, SigningKey
from starlette_refresh.revocations import RevocationList, entry_for
from starlette_refresh.settings import Settings
from starlette_refresh.token_cache import VerifiedTokens
from tests.apps import SECRET

ACCESS_TTL = 300
LEEWAY = 10
START = 1_800_000_000.0


def codec(clock: ManualClock, revoked: RevocationList, cache_size: int = 100) -> AccessTokenCodec:
    settings = Settings(access_ttl=ACCESS_TTL, leeway=LEEWAY, access_cache_size=cache_size)
    return AccessTokenCodec(KeyRing([SigningKey.hmac(SECRET)]), settings, clock, revoked.is_revoked)


def outcome(verify: Callable[[str], Any], token: str) -> object:
    try:
        return dict(verify(token))
    except InvalidToken as error:
        return error.description


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def revoked(clock: ManualClock) -> RevocationList:
    return RevocationList(clock)


def test_a_second_verification_is_answered_from_the_cache(
    clock: ManualClock, revoked: RevocationList
) -> None:
    tokens = codec(clock, revoked)
    token = tokens.issue("ana", "S" * 22).token

    first = tokens.verify(token)
    assert tokens.verify(token) is first  # the same read-only mapping: no JWT work the second time
    assert len(tokens._verified) == 1


def test_a_cached_token_expires_exactly_when_an_uncached_one_does(
    clock: ManualClock, revoked: RevocationList
) -> None:
    tokens = codec(clock, revoked)
    token = tokens.issue("ana", "S" * 22).token
    tokens.verify(token)

    clock.advance(ACCESS_TTL + LEEWAY - 0.001)
    assert tokens.verify(token)["sub"] == "ana"
    clock.advance(0.001)
    with pytest.raises(InvalidToken, match="token expired"):
        tokens.verify(token)
    assert len(tokens._verified) == 0  # dropped, not kept to fail again


def test_a_cached_token_is_refused_the_moment_its_session_is_revoked(
    clock: ManualClock, revoked: RevocationList
) -> None:
    tokens = codec(clock, revoked)
    token = tokens.issue("ana", "S" * 22).token
    tokens.verify(token)

    revoked.add([entry_for("t" * 20, "S" * 22)], clock() + ACCESS_TTL + LEEWAY)

    with pytest.raises(InvalidToken, match="token revoked"):
        tokens.verify(token)


def test_a_clock_that_goes_back_before_the_tokens_issue_takes_the_full_path(
    clock: ManualClock, revoked: RevocationList
) -> None:
    tokens = codec(clock, revoked)
    token = tokens.issue("ana", "S" * 22).token
    tokens.verify(token)

    clock.now = START - LEEWAY - 1

    with pytest.raises(InvalidToken, match="token issued in the future"):
        tokens.verify(token)


def test_a_tampered_copy_of_a_cached_token_is_not_a_hit(clock: ManualClock, revoked: RevocationList) -> None:
    tokens = codec(clock, revoked)
    token = tokens.issue("ana", "S" * 22).token
    tokens.verify(token)
    signature = token.rsplit(".", 1)[1]
    tampered = token[: -len(signature)] + ("A" if signature[0] != "A" else "B") + signature[1:]

    with pytest.raises(InvalidToken, match="signature verification failed"):
        tokens.verify(tampered)


def test_invalid_tokens_are_never_remembered(clock: ManualClock, revoked: RevocationList) -> None:
    tokens = codec(clock, revoked)
    for garbage in ("x.y.z", "a" * 100, tokens.issue("ana", "S" * 22).token + "x"):
        with pytest.raises(InvalidToken):
            tokens.verify(garbage)
    assert len(tokens._verified) == 0


def test_the_cache_is_bounded_and_evicted_tokens_still_verify(
    clock: ManualClock, revoked: RevocationList
) -> None:
    tokens = codec(clock, revoked, cache_size=8)
    issued = [tokens.issue(f"user-{i}", "S" * 22).token for i in range(20)]
    for token in issued:
        tokens.verify(token)

    assert len(tokens._verified) == 8
    assert tokens.verify(issued[0])["sub"] == "user-0"  # evicted long ago: the full path answers


def test_cached_claims_cannot_be_changed_by_the_app(clock: ManualClock, revoked: RevocationList) -> None:
    tokens = codec(clock, revoked)
    token = tokens.issue("ana", "S" * 22, {"role": "reader"}).token

    claims = tokens.verify(token)
    with pytest.raises(TypeError):
        claims["role"] = "admin"  # type: ignore[index]
    assert tokens.verify(token)["role"] == "reader"


def test_cache_size_zero_turns_it_off(clock: ManualClock, revoked: RevocationList) -> None:
    tokens = codec(clock, revoked, cache_size=0)
    token = tokens.issue("ana", "S" * 22).token

    assert tokens.verify(token) is not tokens.verify(token)
    assert len(tokens._verified) == 0


def test_verified_tokens_keeps_the_window_it_was_given(clock: ManualClock) -> None:
    cache = VerifiedTokens(2, clock)
    cache.remember("t", {"sub": "a"}, START - 1, START + 1)

    assert cache.get("t") == {"sub": "a"}
    clock.now = START - 1.001
    assert cache.get("t") is None  # before its window: dropped
    assert cache.get("unknown") is None


# Steps that land near the edges of a window (expiry, issue time, the leeway), and anything else.
EDGES = [ACCESS_TTL + LEEWAY, ACCESS_TTL - LEEWAY, LEEWAY, -LEEWAY, ACCESS_TTL, 1.0]
ADVANCES = st.one_of(
    st.sampled_from(EDGES + [-edge for edge in EDGES]).flatmap(
        lambda edge: st.sampled_from([edge - 0.001, edge, edge + 0.001, edge / 2])
    ),
    st.floats(-400, 400, allow_nan=False),
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("verify"), st.integers(0, 5)),
        st.tuples(st.just("advance"), ADVANCES),
        st.tuples(st.just("revoke"), st.integers(0, 2)),
        st.tuples(st.just("issue"), st.integers(0, 2)),
    ),
    max_size=60,
)


@settings(max_examples=500, deadline=None)
@given(steps=STEPS)
@example(steps=[("verify", 0), ("advance", ACCESS_TTL + LEEWAY), ("verify", 0)])
@example(steps=[("verify", 0), ("advance", ACCESS_TTL + LEEWAY - 0.001), ("verify", 0)])
@example(steps=[("verify", 0), ("advance", -LEEWAY - 0.001), ("verify", 0)])
@example(steps=[("verify", 0), ("advance", -LEEWAY), ("verify", 0)])
@example(steps=[("verify", 1), ("revoke", 1), ("verify", 1), ("advance", ACCESS_TTL + LEEWAY), ("verify", 1)])
def test_the_cache_never_changes_a_verdict(steps: list[tuple[str, Any]]) -> None:
    clock = ManualClock(START)
    revoked = RevocationList(clock)
    cached, uncached = codec(clock, revoked, cache_size=3), codec(clock, revoked, cache_size=0)
    sessions = ["A" * 22, "B" * 22, "C" * 22]
    tokens = [cached.issue(f"user-{i % 3}", sessions[i % 3]).token for i in range(3)]
    for action, value in steps:
        if action == "verify":
            token = tokens[value % len(tokens)]
            assert outcome(cached.verify, token) == outcome(uncached.verify, token)
        elif action == "advance":
            clock.now += value
        elif action == "revoke":
            revoked.add([entry_for("t" * 20, sessions[value])], clock() + ACCESS_TTL + LEEWAY)
        else:
            tokens.append(cached.issue(f"user-{value}", sessions[value]).token)
