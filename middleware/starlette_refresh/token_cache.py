"""A bounded memory of access tokens that passed every check, so that a repeat costs a dict lookup.

An access token's verdict depends only on the token itself, the time and revocation. The keys, the
algorithms, the issuer and the audience are fixed for the life of the process. A token that passed
every check once therefore keeps passing them for exactly one window of time, from its ``iat``/``nbf``
to its ``exp`` (each widened by the leeway). The cache keeps that window, and the caller still checks
revocation on every request. Every other case takes the full path, which can say precisely why a
token fails: a token seen for the first time, one outside its window (expired, or not yet valid when
the clock went back), or one evicted to keep the size bound.

Only tokens that verified are stored, so garbage sent by a client never displaces real entries. The
key is the whole token string, so a hit needs the same bytes, signature included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .clock import Clock


@dataclass(frozen=True, slots=True)
class _Verified:
    claims: Mapping[str, Any]
    valid_from: float
    valid_until: float


class VerifiedTokens:
    """At most ``capacity`` verified tokens; the oldest one leaves first. ``capacity=0`` disables it."""

    def __init__(self, capacity: int, clock: Clock) -> None:
        self._capacity = capacity
        self._clock = clock
        self._entries: dict[str, _Verified] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> Mapping[str, Any] | None:
        """The claims of ``token`` if it verified and its window is still open now; else None."""
        entry = self._entries.get(token)
        if entry is None:
            return None
        if entry.valid_from <= self._clock() < entry.valid_until:
            return entry.claims
        del self._entries[token]
        return None

    def remember(self, token: str, claims: Mapping[str, Any], valid_from: float, valid_until: float) -> None:
        """Keeps a token that has just passed every check, valid for ``valid_from <= now < valid_until``."""
        if self._capacity == 0:
            return
        if len(self._entries) >= self._capacity:
            # Insertion order: the oldest token is the likeliest to have expired already.
            del self._entries[next(iter(self._entries))]
        self._entries[token] = _Verified(claims, valid_from, valid_until)
