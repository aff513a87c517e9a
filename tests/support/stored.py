"""What Redis holds for a session, read the way the scripts read it (format 2, else format 1).

For integration tests that look past the HTTP answers at the store, with a plain synchronous client
(standalone or Cluster, bytes or ``decode_responses=True``).
"""

from __future__ import annotations

from typing import Any

from starlette_refresh import session_records
from starlette_refresh.session_records import SessionRecord


def parts(refresh_token: str) -> tuple[str, str]:
    """``(user tag, session id)`` of ``srt1.<user tag>.<session id>.<gen>.<mac>``."""
    _, user_tag, session_id, _, _ = refresh_token.split(".")
    return user_tag, session_id


def user_key(refresh_token: str, prefix: str = "sr:") -> str:
    """The key of the string that holds every session of the token's user."""
    return f"{prefix}{{{parts(refresh_token)[0]}}}"


def stored_session(client: Any, refresh_token: str, prefix: str = "sr:") -> SessionRecord | None:
    """The token's session as stored, or None when Redis holds nothing for it."""
    user_tag, session_id = parts(refresh_token)
    # the value is binary: read it undecoded, whatever the client's decode_responses
    value = client.execute_command("GET", f"{prefix}{{{user_tag}}}", NEVER_DECODE=True)
    if value is not None:
        found = session_records.decode(value).find(session_id)
        if found is not None:
            return found
    gen = client.hget(f"{prefix}{{{user_tag}}}:s:{session_id}", "gen")
    if gen is None:
        return None
    return SessionRecord(session_id, int(gen), 0, 0, 0, 0)


def stored_generation(client: Any, refresh_token: str, prefix: str = "sr:") -> int:
    """The generation Redis holds for the token's session; fails when the session is not stored."""
    stored = stored_session(client, refresh_token, prefix)
    assert stored is not None, "the session is not stored"
    return stored.generation
