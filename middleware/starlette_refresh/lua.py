"""The Redis scripts behind every session change.

Each script touches only keys that share one hash tag (the user tag), so they run unchanged on Redis
Cluster. Times are integer milliseconds passed in by the caller (the injected clock); key TTLs are
set relative to that clock and only reclaim memory, while every decision compares against the
stored expiry fields, so a test clock and Redis's own clock can never disagree about a verdict.

A user's sessions live in one string in format 2 (:mod:`.session_records` describes it): a session
is alive while its record is in the string, the key expires with its latest session, and
logout-all is one ``DEL``. A refresh is ``GET`` and ``SET ... PX`` (plus ``TIME`` for its deadline),
on one key.

Format 1, written by release 0.1, kept a hash per session (``sub``, ``cl``, ``gen``, ``rot``,
``exp``, ``abs``, ``ca``, ``lu``, ``ua``) and a sorted set per user of the live session ids scored by
idle expiry. ROTATE_ANY and REVOKE_FORMAT1 still read it, called only when the user's string does
not hold a session: a format-1 session moves into its user's string on its next rotation, and
revoking it works as before. While processes of 0.1 share the store (:mod:`.format_watch`), CREATE
and ROTATE_ANY write format 1 instead, the layout those processes read.
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

# Format 2, in three parts so that each script defines only the functions it calls (a definition
# costs time on every call). Offsets are those of session_records: a record that starts at byte `p`
# holds its length at p, idle expiry at p+2, id at p+8, generation at p+30, created at p+37, rotated
# at p+43, absolute expiry at p+49, label length at p+55, then label and claims.
_READ = """
local byte, char, sub = string.byte, string.char, string.sub
local function n16(s, i)
  local a, b = byte(s, i, i + 1)
  return a * 256 + b
end
local function n48(s, i)
  local a, b, c, d, e, f = byte(s, i, i + 5)
  return ((a * 256 + b) * 256 + c) * 16777216 + (d * 256 + e) * 256 + f
end

-- The user's string: its subject, and where its first session record starts.
local function read_user(value)
  if sub(value, 1, 1) ~= '2' then
    return redis.error_reply('starlette-refresh: unknown session format ' .. sub(value, 1, 1))
  end
  local n = n16(value, 2)
  return sub(value, 4, 3 + n), 4 + n
end

-- Walks the records from `at`: returns the first and last byte of the session's record (nil when
-- absent), and the latest idle expiry among the other sessions.
local function find(value, at, sid)
  local first, last, latest = nil, nil, 0
  local size = #value
  while at <= size do
    local e = at + 1 + n16(value, at)
    if sub(value, at + 8, at + 29) == sid then
      first, last = at, e
    else
      latest = math.max(latest, n48(value, at + 2))
    end
    at = e + 1
  end
  return first, last, latest
end
"""

# Fixed-width big-endian integers (doubles hold them exactly: times need 48 bits, generations 50),
# and the one way the user's string is written.
_WRITE = """
local function u16(n) return char(math.floor(n / 256), n % 256) end
local function u48(n)
  local low = n % 16777216
  local high = (n - low) / 16777216
  return char(math.floor(high / 65536), math.floor(high / 256) % 256, high % 256,
    math.floor(low / 65536), math.floor(low / 256) % 256, low % 256)
end
local function u56(n)
  local last = n % 256
  return u48((n - last) / 256) .. char(last)
end

-- Stores the user's records (the concatenation `records`), or deletes the key when none is left.
-- The key lives until `latest`, the latest idle expiry it holds; without it (a session left), it
-- keeps its expiry, which already outlasts every session that remains.
local function write_user(key, subject, records, latest, now)
  if records == '' then
    redis.call('DEL', key)
  elseif latest then
    redis.call('SET', key, '2' .. u16(#subject) .. subject .. records, 'PX', math.max(1, latest - now))
  else
    redis.call('SET', key, '2' .. u16(#subject) .. subject .. records, 'KEEPTTL')
  end
end
"""

# A whole session record as a table {sid, gen, ca, rot, exp, abs, label, claims}; claims '' stands
# for '{}'.
_RECORD = """
local function n56(s, i) return n48(s, i) * 256 + byte(s, i + 6) end

local function decode(value, p, e)
  local n = byte(value, p + 55)
  return {exp = n48(value, p + 2), sid = sub(value, p + 8, p + 29), gen = n56(value, p + 30),
    ca = n48(value, p + 37), rot = n48(value, p + 43), abs = n48(value, p + 49),
    label = sub(value, p + 56, p + 55 + n), claims = sub(value, p + 56 + n, e)}
end

local function encode(r)
  local label = sub(r.label, 1, 255)
  return u16(54 + #label + #r.claims) .. u48(r.exp) .. r.sid .. u56(r.gen) .. u48(r.ca) .. u48(r.rot)
    .. u48(r.abs) .. char(#label) .. label .. r.claims
end
"""

# The rotation rules and the reply, shared by the format-2 and format-1 rotations. ARGV: session
# id, presented generation, now, grace (ms), idle ttl (ms), deadline (Redis TIME, ms; 0 for none). A
# call that reaches Redis after its deadline changes nothing ('late'): the app has already answered
# 503, and a rotation nobody will ever see would turn the client's retry into a "reuse" once the
# grace window has passed.
_ROTATION = """
local function too_late()
  local deadline = tonumber(ARGV[6])
  if deadline == 0 then return false end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > deadline
end

-- Decides, and moves `s` on when it rotates.
local function rotation(s, now)
  if now >= s.exp or now >= s.abs then return 'expired' end
  local presented = tonumber(ARGV[2])
  if presented >= s.gen then
    -- presented > gen only when the store lost acknowledged rotations (restored from an older
    -- snapshot): the MAC proves we minted that newer token, so carry on from it.
    s.gen, s.rot, s.exp = presented + 1, now, math.min(now + tonumber(ARGV[5]), s.abs)
    return 'rotated'
  end
  if presented == s.gen - 1 and now - s.rot < tonumber(ARGV[4]) then return 'grace' end
  return 'reused'
end

-- {outcome, generation, idle expiry, subject, claims, generation stored before the call}
local function reply(outcome, s, subject, stored, claims)
  if outcome == 'expired' then return {'expired', s.gen} end
  if claims == '' then claims = '{}' end
  return {outcome, s.gen, s.exp, subject, claims, stored}
end
"""

# Format 1 (a hash and an index entry per session), read until its sessions have moved or ended.
_FORMAT1 = """
-- A format-1 session as a table and its subject, or nil and why ('revoked' when its record
-- outlived its index entry).
local function read_format1(hash, index, sid)
  local f = redis.call('HMGET', hash, 'gen', 'rot', 'exp', 'abs', 'sub', 'cl', 'ca', 'ua')
  if not f[1] then return nil, 'missing' end
  if not redis.call('ZSCORE', index, sid) then
    redis.call('DEL', hash)
    return nil, 'revoked'
  end
  local claims = f[6] or '{}'
  if claims == '{}' then claims = '' end
  return {sid = sid, gen = tonumber(f[1]), rot = tonumber(f[2]), exp = tonumber(f[3]),
    abs = tonumber(f[4]), ca = tonumber(f[7] or f[2]), label = f[8] or '', claims = claims}, f[5]
end

local function drop_format1(hash, index, sid)
  redis.call('DEL', hash)
  redis.call('ZREM', index, sid)
  if redis.call('ZCARD', index) == 0 then redis.call('DEL', index) end
end

-- Writes a session as 0.1 stored it: what this release does while 0.1 processes still serve.
local function write_format1(hash, index, s, subject, now)
  local claims = s.claims
  if claims == '' then claims = '{}' end
  redis.call('HSET', hash, 'sub', subject, 'cl', claims, 'ua', s.label, 'gen', int(s.gen), 'rot', int(s.rot),
    'ca', int(s.ca), 'lu', int(s.rot), 'exp', int(s.exp), 'abs', int(s.abs))
  redis.call('PEXPIRE', hash, math.max(1, s.exp - now))
  redis.call('ZADD', index, int(s.exp), s.sid)
  expire_index(index, now)
end
"""

# KEYS: user, format-1 index, the new session's format-1 hash. ARGV: session id, subject, claims,
# device label, now, idle expiry, absolute expiry, max sessions per user, the format to write (2, or
# 1 while 0.1 processes serve). Returns the ids of the sessions evicted to make room (the caller
# deletes their format-1 hashes, if any).
CREATE = (
    _PRELUDE
    + _READ
    + _WRITE
    + _RECORD
    + _FORMAT1
    + """
local sid, subject, now, exp = ARGV[1], ARGV[2], tonumber(ARGV[5]), tonumber(ARGV[6])
local claims = ARGV[3]
if claims == '{}' then claims = '' end
-- every live session of the user, either format: {idle expiry, id, format-2 record or false}
local live = {}
local value = redis.call('GET', KEYS[1])
if value then
  local stored, at = read_user(value)
  if type(stored) == 'table' then return stored end
  if stored ~= subject then
    return redis.error_reply('starlette-refresh: user tag collision between two subjects')
  end
  while at <= #value do
    local e = at + 1 + n16(value, at)
    local r = decode(value, at, e)
    if now < r.exp and now < r.abs then live[#live + 1] = {r.exp, r.sid, sub(value, at, e)} end
    at = e + 1
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(now))
local format1 = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #format1, 2 do live[#live + 1] = {tonumber(format1[i + 1]), format1[i], false} end
-- make room before adding, earliest idle expiry first (ties by id, as a sorted set orders them): the
-- new session must never be the one evicted
table.sort(live, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
local evicted, kept, latest = {}, {}, exp
local over = #live + 1 - tonumber(ARGV[8])
for i, s in ipairs(live) do
  if i <= over then
    evicted[#evicted + 1] = s[2]
    if not s[3] then redis.call('ZREM', KEYS[2], s[2]) end
  elseif s[3] then
    kept[#kept + 1] = s[3]
    latest = math.max(latest, s[1])
  end
end
local new = {sid = sid, gen = 0, ca = now, rot = now, exp = exp, abs = tonumber(ARGV[7]), label = ARGV[4],
  claims = claims}
if ARGV[9] == '1' then
  write_format1(KEYS[3], KEYS[2], new, subject, now)
  if #kept > 0 then
    write_user(KEYS[1], subject, table.concat(kept))
  elseif value then
    redis.call('DEL', KEYS[1])
  end
else
  kept[#kept + 1] = encode(new)
  write_user(KEYS[1], subject, table.concat(kept), latest, now)
end
return evicted
"""
)

# KEYS: user. ARGV: see _ROTATION. The refresh: TIME (for the deadline), GET and, when it rotates or
# ends the session, SET. Replies {'absent'} when the user's string does not hold the session, which
# the caller then looks for in format 1 (ROTATE_ANY).
ROTATE = (
    _READ
    + _WRITE
    + _ROTATION
    + """
if too_late() then return {'late'} end
local sid, now = ARGV[1], tonumber(ARGV[3])
local value = redis.call('GET', KEYS[1])
if not value then return {'absent'} end
local subject, at = read_user(value)
if type(subject) == 'table' then return subject end
local p, e, latest = find(value, at, sid)
if not p then return {'absent'} end
local s = {exp = n48(value, p + 2), gen = n48(value, p + 30) * 256 + byte(value, p + 36),
  rot = n48(value, p + 43), abs = n48(value, p + 49)}
local stored = s.gen
local outcome = rotation(s, now)
local claims = sub(value, p + 56 + byte(value, p + 55), e)
if outcome == 'rotated' then
  -- only the idle expiry, generation and rotation time change: write them in place
  local moved = sub(value, 1, p + 1) .. u48(s.exp) .. sub(value, p + 8, p + 29) .. u56(s.gen)
    .. sub(value, p + 37, p + 42) .. u48(now) .. sub(value, p + 49)
  redis.call('SET', KEYS[1], moved, 'PX', math.max(1, math.max(latest, s.exp) - now))
elseif outcome ~= 'grace' then
  write_user(KEYS[1], subject, sub(value, at, p - 1) .. sub(value, e + 1))
end
return reply(outcome, s, subject, stored, claims)
"""
)

# KEYS: user, format-1 session, format-1 index. ARGV: see _ROTATION, then the format to write (2,
# or 1 while 0.1 processes serve). The same rules on a session stored in either format; a rotation
# stores it in the format asked for and removes it from the other.
ROTATE_ANY = (
    _PRELUDE
    + _READ
    + _WRITE
    + _RECORD
    + _ROTATION
    + _FORMAT1
    + """
if too_late() then return {'late'} end
local sid, now, target = ARGV[1], tonumber(ARGV[3]), ARGV[7]
local value = redis.call('GET', KEYS[1])
local subject, at, first, last, latest = nil, nil, nil, nil, 0
if value then
  subject, at = read_user(value)
  if type(subject) == 'table' then return subject end
  first, last, latest = find(value, at, sid)
end
local s, why
if first then
  s = decode(value, first, last)
else
  s, why = read_format1(KEYS[2], KEYS[3], sid)
  if not s then return {why} end
  subject = subject or why
end
-- the user's other format-2 records
local others = ''
if value then others = sub(value, at, (first or #value + 1) - 1) .. sub(value, (last or #value) + 1) end
local stored = s.gen
local outcome = rotation(s, now)
if outcome == 'rotated' and target == '2' then
  if not first then drop_format1(KEYS[2], KEYS[3], sid) end
  write_user(KEYS[1], subject, others .. encode(s), math.max(latest, s.exp), now)
elseif outcome == 'rotated' then
  if first then write_user(KEYS[1], subject, others) end
  write_format1(KEYS[2], KEYS[3], s, subject, now)
elseif outcome ~= 'grace' then
  if first then write_user(KEYS[1], subject, others) else drop_format1(KEYS[2], KEYS[3], sid) end
end
return reply(outcome, s, subject, stored, s.claims)
"""
)

# KEYS: user. ARGV: session id, subject ('' for any), now. Returns 1 when a live session ended, 0
# when it was not that subject's or had expired (as in the session list), and -1 when the user's
# string does not hold it (the caller then tries REVOKE_FORMAT1).
REVOKE = (
    _READ
    + _WRITE
    + """
local sid, now = ARGV[1], tonumber(ARGV[3])
local value = redis.call('GET', KEYS[1])
if not value then return -1 end
local subject, at = read_user(value)
if type(subject) == 'table' then return subject end
local first, last = find(value, at, sid)
if not first then return -1 end
if ARGV[2] ~= '' and subject ~= ARGV[2] then return 0 end
local alive = now < n48(value, first + 2) and now < n48(value, first + 49)
write_user(KEYS[1], subject, sub(value, at, first - 1) .. sub(value, last + 1))
if alive then return 1 end
return 0
"""
)

# KEYS: format-1 session, format-1 index. ARGV: as REVOKE. Returns 1 or 0 as REVOKE does.
REVOKE_FORMAT1 = """
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

# KEYS: user, then (when the user has format-1 sessions) their index and the session keys the
# caller read from it. ARGV: now. Deleting the user's string and index ends every session at once,
# including any the caller did not see; the rest only frees memory. Returns the ids of the sessions
# that were alive.
REVOKE_ALL = (
    _READ
    + """
local now = tonumber(ARGV[1])
local alive = {}
if KEYS[2] then alive = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf') end
local value = redis.call('GET', KEYS[1])
if value then
  local subject, at = read_user(value)
  if type(subject) == 'table' then return subject end
  while at <= #value do
    local e = at + 1 + n16(value, at)
    if now < n48(value, at + 2) and now < n48(value, at + 49) then
      alive[#alive + 1] = sub(value, at + 8, at + 29)
    end
    at = e + 1
  end
end
redis.call('DEL', unpack(KEYS))
return alive
"""
)

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
    "rotate_any": ROTATE_ANY,
    "revoke": REVOKE,
    "revoke_format1": REVOKE_FORMAT1,
    "revoke_all": REVOKE_ALL,
    "publish_revocations": PUBLISH_REVOCATIONS,
}
