"""The Redis scripts behind every session change.

Each script touches only keys that share one hash tag (the user tag), so they run unchanged on Redis
Cluster. Times are integer milliseconds passed in by the caller (the injected clock); key TTLs are
set relative to that clock and only reclaim memory, while every decision compares against the
stored expiry fields, so a test clock and Redis's own clock can never disagree about a verdict.

Session hash fields: ``sub`` subject, ``cl`` app claims (JSON), ``gen`` current generation, ``rot``
time of the last rotation, ``exp`` idle expiry, ``abs`` absolute expiry, ``ca`` created, ``lu`` last
used, ``ua`` user agent. The user index is a sorted set of session ids scored by idle expiry; a session
is alive only while it is in its user's index, which makes logout-all a single atomic ``DEL``.
"""

from __future__ import annotations

# Lua numbers are doubles and Redis would print them with %.14g; format integers explicitly.
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

# KEYS: session, index. ARGV: session id, presented generation, now, grace (ms), idle ttl (ms),
# deadline (Redis TIME, ms; 0 for none). Returns {outcome, generation, idle expiry, subject, claims,
# stored generation}. A call that reaches Redis after its deadline changes nothing ('late'): the app
# has already answered 503, and a rotation nobody will ever see would turn the client's retry into
# a "reuse" once the grace window has passed.
ROTATE = (
    _PRELUDE
    + """
local deadline = tonumber(ARGV[6])
if deadline > 0 then
  local t = redis.call('TIME')
  if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > deadline then return {'late'} end
end
local f = redis.call('HMGET', KEYS[1], 'gen', 'rot', 'exp', 'abs', 'sub', 'cl')
if not f[1] then return {'missing'} end
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return {'revoked'}
end
local now = tonumber(ARGV[3])
local gen, rot, exp, abs = tonumber(f[1]), tonumber(f[2]), tonumber(f[3]), tonumber(f[4])
if now >= exp or now >= abs then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'expired', gen}
end
local presented = tonumber(ARGV[2])
if presented >= gen then
  -- presented > gen only when the store lost acknowledged rotations (restored from an older
  -- snapshot): the MAC proves we minted that newer token, so carry on from it.
  local new = presented + 1
  local new_exp = math.min(now + tonumber(ARGV[5]), abs)
  redis.call('HSET', KEYS[1], 'gen', int(new), 'rot', int(now), 'exp', int(new_exp), 'lu', int(now))
  redis.call('PEXPIRE', KEYS[1], math.max(1, new_exp - now))
  redis.call('ZADD', KEYS[2], int(new_exp), ARGV[1])
  expire_index(KEYS[2], now)
  return {'rotated', new, new_exp, f[5], f[6], gen}
end
if presented == gen - 1 and now - rot < tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'lu', int(now))
  return {'grace', gen, exp, f[5], f[6], gen}
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return {'reused', gen, exp, f[5], f[6], gen}
"""
)

# KEYS: session, index. ARGV: session id, subject ('' for any), now. Returns 1 when a live session
# ended (an expired one is cleaned up but counts as not found, as in the session list).
REVOKE = """
local sub = redis.call('HGET', KEYS[1], 'sub')
if ARGV[2] ~= '' and sub and sub ~= ARGV[2] then return 0 end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
-- no session record: only the index can prove ownership (the tag is derived from the subject)
if ARGV[2] ~= '' and not sub and not score then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('DEL', KEYS[2]) end
if score and tonumber(score) > tonumber(ARGV[3]) then return 1 end
return 0
"""

# KEYS: index, then the session keys known when the caller read the index. ARGV: now. Deleting the
# index ends every session at once, including any the caller did not see; the rest only frees
# memory. Returns the ids of the sessions that were alive.
REVOKE_ALL = """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
redis.call('DEL', unpack(KEYS))
return members
"""

# KEYS: the revocations record. ARGV: channel, until, now, message, entries...
# One script rather than a pipeline: atomic, one round trip, and it runs on Cluster, where
# redis-py refuses PUBLISH inside a pipeline. PUBLISH reaches subscribers on every node.
PUBLISH_REVOCATIONS = (
    _PRELUDE
    + """
local now = tonumber(ARGV[3])
for i = 5, #ARGV do redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', int(now))
expire_index(KEYS[1], now)
return redis.call('PUBLISH', ARGV[1], ARGV[4])
"""
)

SCRIPTS = {
    "create": CREATE,
    "rotate": ROTATE,
    "revoke": REVOKE,
    "revoke_all": REVOKE_ALL,
    "publish_revocations": PUBLISH_REVOCATIONS,
}
