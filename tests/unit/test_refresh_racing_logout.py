"""A refresh racing a logout: the access token it mints never outlives the logout's revocation.

The store decides a refresh, then the process mints the access token. A logout that the store runs
between the two announces a revocation that lasts ``access_ttl`` plus leeway from the announcement.
If the token's lifetime counted from its minting, a slow mint (an event-loop stall, a GC pause) would
leave it valid after its revocation entry is gone. Its lifetime counts from the moment the refresh
was decided, which is before the logout, so the entry always outlasts it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from starlette_refresh import InvalidToken, TokenAuth
from starlette_refresh.testing import ManualClock

# Between the store's rotation and the mint: the logout lands 1 s after the rotation, the mint 4 s
# after that.
LOGOUT_AFTER_ROTATION = 1.0
MINT_AFTER_LOGOUT = 4.0


def test_a_token_minted_after_a_racing_logout_is_refused_until_it_expires(
    make_auth: Callable[..., TokenAuth], clock: ManualClock
) -> None:
    auth = make_auth()
    logged_out_at: list[float] = []

    async def scenario() -> str:
        issued = await auth.sessions.login("42")
        rotate = auth.store.rotate

        async def rotate_then_logout(*args: Any, **kwargs: Any) -> Any:
            verdict = await rotate(*args, **kwargs)
            clock.advance(LOGOUT_AFTER_ROTATION)
            await auth.sessions.logout(issued.refresh_token)  # another tab, another process
            logged_out_at.append(clock())
            clock.advance(MINT_AFTER_LOGOUT)  # this process stalls before it mints
            return verdict

        auth.store.rotate = rotate_then_logout  # type: ignore[method-assign]
        refreshed = await auth.sessions.refresh(issued.refresh_token)
        return refreshed.access_token

    token = asyncio.run(scenario())
    # From the logout until well past the token's own expiry, second by second, it never passes.
    settings = auth.settings
    refused: dict[str, int] = {}
    end = logged_out_at[0] + MINT_AFTER_LOGOUT + settings.access_ttl + settings.leeway + 5
    while clock() < end:
        with pytest.raises(InvalidToken) as refusal:
            auth.verify_access_token(token)
        reason = str(refusal.value)
        refused[reason] = refused.get(reason, 0) + 1
        clock.advance(1)
    # Refused as revoked while the entry lasts, then as expired: both reasons were seen.
    assert set(refused) == {"token revoked", "token expired"}, refused
