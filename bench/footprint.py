"""Per-process memory that authentication keeps: the verified-token cache and the revocation list.

Both are bounded. The token cache holds at most ``access_cache_size`` tokens (default 10,000). The
revocation list holds the sessions revoked within the last access lifetime, and nothing older. This
measures the bytes per entry with ``tracemalloc``, counting everything an entry keeps alive: the
token string, the claims, and the entry itself. It then prints the bound at the default size.

Run: ``.venv/bin/python -m bench.footprint`` (or ``scripts/bench footprint``).
"""

from __future__ import annotations

import gc
import tracemalloc

from starlette.types import Receive, Scope, Send

from bench import SECRET
from starlette_refresh import TokenAuth
from starlette_refresh.middleware import TokenAuthMiddleware
from starlette_refresh.revocations import RevocationList, entry_for
from starlette_refresh.testing import ManualClock

ENTRIES = 10_000


def token_cache_bytes_per_entry(clock: ManualClock) -> tuple[float, int]:
    """Bytes per remembered Authorization header (header bytes included) and one token's length.

    Drives the middleware's own full path, which is what fills its cache on a miss.
    """
    auth = TokenAuth(secret_key=SECRET, redis_url="redis://127.0.0.1:1/0", clock=clock)
    entry = auth.middleware()
    middleware = TokenAuthMiddleware(_unused_app, **entry.kwargs)
    tokens = [
        auth.access.issue(f"user-{i}", f"{i:022d}", {"email": f"user-{i}@example.com"}).token
        for i in range(ENTRIES)
    ]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for token in tokens:
        # A fresh header, as each request brings; the cache keeps it.
        scope = {"type": "http", "headers": [(b"authorization", f"Bearer {token}".encode())]}
        middleware._principal(scope, "http")
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / ENTRIES, len(tokens[0])


async def _unused_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("never called")


def revocation_bytes_per_entry(clock: ManualClock) -> float:
    revoked = RevocationList(clock)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    # Built inside the measurement: the list keeps each entry string, as announcements bring them.
    revoked.add([entry_for(f"{i:020x}", f"{i:022d}") for i in range(ENTRIES)], clock() + 910)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename")) / ENTRIES


def main() -> None:
    clock = ManualClock(1_800_000_000.0)
    per_token, token_length = token_cache_bytes_per_entry(clock)
    per_revocation = revocation_bytes_per_entry(clock)
    print(f"remembered Authorization headers: {per_token:,.0f} bytes each ({token_length}-character tokens,")
    print("  claims sub/sid/jti/iat/exp + one email), the header bytes, claims and user included")
    print(f"  bound at the default access_cache_size=10,000: {per_token * 10_000 / 1e6:.1f} MB per process")
    print(f"revocation list: {per_revocation:,.0f} bytes per revoked session")
    print("  entries live access_ttl + leeway (910 s by default): 1,000 revocations a minute keep")
    print(f"  about {per_revocation * 1_000 * 910 / 60 / 1e6:.1f} MB per process")


if __name__ == "__main__":
    main()
