"""A bounded memory of access tokens that passed every check, so that a repeat costs a dict lookup.

An access token's verdict depends only on the token itself, the time and revocation. The keys, the
algorithms, the issuer and the audience are fixed for the life of the process. A token that passed
every check once therefore keeps passing them for exactly one window of time, from its ``iat``/``nbf``
to its ``exp`` (each widened by the leeway). The cache keeps that window, and the caller still checks
revocation on every request. Every other case takes the full path, which can say precisely why a
token fails: a token seen for the first time, one outside its window (expired, or not yet valid when
the clock went back), or one evicted to keep the size bound.

Only tokens that verified are stored, so garbage sent by a client never displaces real entries. The
key is whatever carried the whole token (the middleware uses the raw ``Authorization`` header), so a
hit needs the same bytes, signature included.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .clock import Clock

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


@dataclass(frozen=True, slots=True)
class _Verified(Generic[Value]):
    value: Value
    valid_from: float
    valid_until: float


class VerifiedTokens(Generic[Key, Value]):
    """At most ``capacity`` verified tokens; the oldest one leaves first. ``capacity=0`` disables it.

    The key is the token (or the raw header that carried it); the value is what verifying it gave.
    """

    def __init__(self, capacity: int, clock: Clock) -> None:
        self._capacity = capacity
        self._clock = clock
        self._entries: dict[Key, _Verified[Value]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> Value | None:
        """What ``key`` verified to, if its window is still open now; else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.valid_from <= self._clock() < entry.valid_until:
            return entry.value
        del self._entries[key]
        return None

    def remember(self, key: Key, value: Value, valid_from: float, valid_until: float) -> None:
        """Keeps a token that has just passed every check, valid for ``valid_from <= now < valid_until``."""
        if self._capacity == 0:
            return
        if len(self._entries) >= self._capacity:
            # Insertion order: the oldest token is the likeliest to have expired already.
            del self._entries[next(iter(self._entries))]
        self._entries[key] = _Verified(value, valid_from, valid_until)
