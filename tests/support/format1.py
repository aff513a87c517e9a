"""Release 0.1's login script, verbatim: it writes a session the way 0.1 stored it (format 1).

Format 1 keeps a hash per session and a sorted set per user. The store suites plant sessions with it
to prove that this release reads them, refreshes them (moving them into format 2), revokes and lists
them. The end-to-end proof, with the real 0.1 wheel, is tests/integration/test_rolling_upgrade.py.
"""

from __future__ import annotations

from typing import Any

_PRELUDE = """
local function int(n) return string.format('%d', n) end
local function expire_index(index, now)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIRE', index, math.max(1, tonumber(last[2]) - now))
  end
end
"""

# KEYS: session, index. ARGV: session id, subject, claims, user agent, now, idle expiry,
# absolute expiry, max sessions per user.
CREATE = (
    _PRELUDE
    + """
local now = tonumber(ARGV[5])
local exp = tonumber(ARGV[6])
redis.call('HSET', KEYS[1], 'sub', ARGV[2], 'cl', ARGV[3], 'ua', ARGV[4], 'gen', '0',
  'rot', int(now), 'ca', int(now), 'lu', int(now), 'exp', int(exp), 'abs', ARGV[7])
redis.call('PEXPIRE', KEYS[1], math.max(1, exp - now))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(now))
-- make room before adding: the new session must never be the one evicted
local evicted = {}
local over = redis.call('ZCARD', KEYS[2]) + 1 - tonumber(ARGV[8])
if over > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #popped, 2 do evicted[#evicted + 1] = popped[i] end
end
redis.call('ZADD', KEYS[2], int(exp), ARGV[1])
expire_index(KEYS[2], now)
return evicted
"""
)


async def create_format1_session(
    redis: Any,
    user_tag: str,
    session_id: str,
    subject: str,
    *,
    now_ms: int,
    idle_expires_at_ms: int,
    absolute_expires_at_ms: int,
    user_agent: str = "",
    claims_json: str = "{}",
    max_sessions: int = 100,
    prefix: str = "sr:",
) -> list[str]:
    """Stores a session as release 0.1's login did; returns the ids it evicted."""
    keys = [f"{prefix}{{{user_tag}}}:s:{session_id}", f"{prefix}{{{user_tag}}}:u"]
    args = [session_id, subject, claims_json, user_agent, now_ms, idle_expires_at_ms]
    args += [absolute_expires_at_ms, max_sessions]
    evicted = await redis.eval(CREATE, len(keys), *keys, *args)
    return [e.decode() if isinstance(e, bytes) else e for e in evicted]
