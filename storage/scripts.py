"""Lua scripts: every multi-step write, and every action that must see a valid session first.

Session scripts take KEYS[1] = the user hash and KEYS[2] = the token's session key, ARGV[1] = the
token's session generation and ARGV[2] = what KEYS[2] is: `marker` (for a token issued before
families, its denylist entry `revoked:{<name>}:<jti>`, which must not exist), else KEYS[2] is the
token's family, which must exist, and ARGV[2] names the token's denylist entry, which must not.
(The entry is named in ARGV, not KEYS: a key that does not exist among a script's KEYS makes a
cluster answer TRYAGAIN while the slot migrates, and the entry almost never exists. Looking for it
then fails, and is skipped: `pcall`. A token on the denylist has had its family ended as well, and
the family is checked.) They answer
`{status, ...}` where status is one of the SESSION_* codes below; the action runs only when the
session is valid, in the same round trip. The action's own KEYS and ARGV come after.

Keys that scripts build themselves (a family's, from its id) start with a prefix that
storage.keys made and the caller passed: they share KEYS[1]'s hash tag, so the same cluster slot.
"""

from __future__ import annotations

SESSION_OK = 0
SESSION_REVOKED = 1
SESSION_ENDED = 2
SESSION_UNKNOWN_USER = 3
SESSION_MARKER = "marker"

_SESSION_PRELUDE = """
local generation = redis.call('HGET', KEYS[1], 'generation')
if not generation then return {3} end
if generation ~= ARGV[1] then return {2} end
if ARGV[2] == 'marker' then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {1} end
elseif redis.call('EXISTS', KEYS[2]) == 0 or redis.pcall('EXISTS', ARGV[2]) == 1 then
  return {1}
end
"""

# Families: the Lua functions the family scripts share.
_FAMILIES = """
-- A family's score is when its key expires; a new login's has the milliseconds of its start as
-- a fraction, so that of logins in one second the first to begin is the first to go.
local function index_add(index, score, id, now)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. now)
  redis.call('ZADD', index, score, id)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  redis.call('EXPIREAT', index, math.ceil(tonumber(last[2])))
end
local function end_family(family, used, index, id)
  redis.call('DEL', family, used)
  redis.call('ZREM', index, id)
end
local function end_families(index, family_prefix, used_prefix)
  for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    redis.call('DEL', family_prefix .. id, used_prefix .. id)
  end
  redis.call('DEL', index)
end
-- fields: created_at, user_agent, refresh digest, refresh expiry, deadline, csrf digest
local function start_family(family, index, id, generation, expires_at, now, fields, score)
  redis.call('HSET', family, 'generation', generation, 'created_at', fields[1],
    'last_used_at', fields[1], 'user_agent', fields[2], 'refresh', fields[3],
    'refresh_expires', fields[4], 'deadline', fields[5], 'csrf', fields[6])
  redis.call('EXPIREAT', family, expires_at)
  index_add(index, score or expires_at, id, now)
end
-- At most `keep` families: those that expire first go (a bounded number per call), never
-- `new`, the one just begun.
local function cap_families(index, family_prefix, used_prefix, keep, new)
  local surplus = math.min(redis.call('ZCARD', index) - keep, 2 * keep)
  if surplus <= 0 then return end
  for _, id in ipairs(redis.call('ZRANGE', index, 0, surplus)) do
    if id ~= new and surplus > 0 then
      redis.call('DEL', family_prefix .. id, used_prefix .. id)
      redis.call('ZREM', index, id)
      surplus = surplus - 1
    end
  end
end
-- The live families, at most `keep` of them (those that expire last).
local function list_families(index, family_prefix, generation, now, keep)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. now)
  local found = {}
  for _, id in ipairs(redis.call('ZRANGE', index, -tonumber(keep), -1)) do
    local f = redis.call('HMGET', family_prefix .. id,
      'generation', 'created_at', 'last_used_at', 'user_agent')
    if f[1] == generation then table.insert(found, {id, f[2], f[3], f[4]}) end
  end
  return found
end
"""

# The denylist: an entry per logged-out token (`revoked:{<name>}:<jti>`, expiring when the token
# would have), indexed by expiry so that deleting the account finds every one; at most `keep`
# (past that, those that expire first go: their tokens' families have ended too). deny() answers
# the error reply of a write Redis refused (full memory), else nil.
_DENYLIST = """
local function deny(entry, index, jti, ttl, now, prefix, keep)
  local set = redis.pcall('SET', entry, '1', 'EX', ttl)
  if type(set) == 'table' and set.err then return set end
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  if type(redis.pcall('ZADD', index, now + ttl, jti)) == 'table' then return nil end
  local surplus = redis.call('ZCARD', index) - keep
  if surplus > 0 then
    for _, old in ipairs(redis.call('ZRANGE', index, 0, surplus - 1)) do
      redis.call('DEL', prefix .. old)
    end
    redis.call('ZREMRANGEBYRANK', index, 0, surplus - 1)
  end
  redis.call('EXPIREAT', index, redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')[2])
  return nil
end
local function clear_denylist(index, prefix)
  for _, jti in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    redis.call('DEL', prefix .. jti)
  end
  redis.call('DEL', index)
end
"""

# ARGV[1] = password hash, ARGV[2] = creation time, ARGV[3] = the first session generation: random,
# so that no token of an earlier account of the same name (lost data, a flush) matches a new one.
CREATE_USER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'password_hash', ARGV[1], 'created_at', ARGV[2], 'generation', ARGV[3])
return 1
"""

# The password hash and session generation of a user (nils if there is none).
READ_CREDENTIALS = "return redis.call('HMGET', KEYS[1], 'password_hash', 'generation')"

# ARGV[1] = the hash the login verified, ARGV[2] = its replacement; only if it is still the same.
REPLACE_HASH = """
if redis.call('HGET', KEYS[1], 'password_hash') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'password_hash', ARGV[2])
return 1
"""

CHECK_SESSION = _SESSION_PRELUDE + "return {0}"

# KEYS[3] = messages list; ARGV[3] = encoded message, ARGV[4] = history cap.
APPEND_MESSAGE = (
    _SESSION_PRELUDE
    + """
redis.call('LPUSH', KEYS[3], ARGV[3])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
return {0}
"""
)

# KEYS[3] = messages list; ARGV[3] = how many, newest first.
LAST_MESSAGES = (
    _SESSION_PRELUDE
    + """
return {0, redis.call('LRANGE', KEYS[3], 0, tonumber(ARGV[3]) - 1)}
"""
)

# Ends every session of the user issued until now, and every family (log out everywhere).
# KEYS[3] = families index; ARGV[3] = family key prefix, ARGV[4] = used-tokens key prefix.
END_SESSIONS = (
    _FAMILIES
    + _SESSION_PRELUDE
    + """
redis.call('HINCRBY', KEYS[1], 'generation', 1)
end_families(KEYS[3], ARGV[3], ARGV[4])
return {0}
"""
)

# A login's family. KEYS[1] = user, KEYS[2] = family, KEYS[3] = families index; ARGV[1] = family
# id, ARGV[2] = the generation the login read, ARGV[3] = when the key expires, ARGV[4] = now,
# ARGV[5..10] = the fields of start_family, ARGV[11] = family key prefix, ARGV[12] = used-tokens
# key prefix, ARGV[13] = most live families kept (past it, those that expire first end), ARGV[14]
# = the milliseconds of now. 0 if the account changed since the login read it.
START_FAMILY = (
    _FAMILIES
    + """
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[2] then return 0 end
start_family(KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], {unpack(ARGV, 5, 10)},
  tonumber(ARGV[3]) + tonumber(ARGV[14]) / 1000)
cap_families(KEYS[3], ARGV[11], ARGV[12], tonumber(ARGV[13]), ARGV[1])
return 1
"""
)

REFRESH_OK = 0
REFRESH_INVALID = 1
REFRESH_REUSED = 2
REFRESH_CSRF_FAILED = 3

# Rotation with reuse detection (RFC 9700 4.14.2). KEYS[1] = user, KEYS[2] = family, KEYS[3] =
# its used tokens, KEYS[4] = families index; ARGV[1] = digest of the presented refresh token,
# ARGV[2] = digest of the X-CSRF-Token sent with a cookie ('' for a token sent in the body),
# ARGV[3] = now, ARGV[4] = family id, ARGV[5] = digest of the next refresh token, ARGV[6] = digest
# of the next CSRF value, ARGV[7] = refresh token lifetime, ARGV[8] = access token lifetime plus
# leeway, ARGV[9] = now as text, ARGV[10] = used tokens kept.
# {REFRESH_OK, generation, refresh expiry} or {status}: a used token ends the family.
REFRESH = (
    _FAMILIES
    + """
local f = redis.call('HMGET', KEYS[2], 'generation', 'refresh', 'refresh_expires', 'csrf',
  'deadline')
if not f[1] then return {1} end
local now = tonumber(ARGV[3])
if redis.call('HGET', KEYS[1], 'generation') ~= f[1] then
  end_family(KEYS[2], KEYS[3], KEYS[4], ARGV[4])
  return {1}
end
if ARGV[2] ~= '' and ARGV[2] ~= f[4] then return {3} end
if ARGV[1] ~= f[2] then
  if redis.call('ZSCORE', KEYS[3], ARGV[1]) then
    end_family(KEYS[2], KEYS[3], KEYS[4], ARGV[4])
    return {2}
  end
  return {1}
end
local refresh_expires = math.min(now + tonumber(ARGV[7]), tonumber(f[5]))
if tonumber(f[3]) <= now or refresh_expires <= now then return {1} end
local expires_at = math.max(refresh_expires, now + tonumber(ARGV[8]))
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[7]))
local surplus = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[10])
if surplus > 0 then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, surplus - 1) end
redis.call('HSET', KEYS[2], 'refresh', ARGV[5], 'refresh_expires', refresh_expires,
  'csrf', ARGV[6], 'last_used_at', ARGV[9])
redis.call('EXPIREAT', KEYS[2], expires_at)
redis.call('EXPIREAT', KEYS[3], expires_at)
index_add(KEYS[4], expires_at, ARGV[4], now)
return {0, f[1], refresh_expires}
"""
)

# Ends a family. KEYS[1] = family, KEYS[2] = its used tokens, KEYS[3] = families index; ARGV[1] =
# family id, ARGV[2] = digest of a refresh token of the family ('' to end it unconditionally).
# 1 if it was ended; with a digest, only if it is the family's current or a used token.
END_FAMILY = (
    _FAMILIES
    + """
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'refresh') ~= ARGV[2]
    and not redis.call('ZSCORE', KEYS[2], ARGV[2]) then
  return 0
end
local existed = redis.call('EXISTS', KEYS[1])
end_family(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
return existed
"""
)

# One of the caller's sessions, ended by id. KEYS[3] = that family, KEYS[4] = its used tokens,
# KEYS[5] = families index; ARGV[3] = its id. {0, 1} if it was live, {0, 0} if not.
END_OWN_FAMILY = (
    _FAMILIES
    + _SESSION_PRELUDE
    + """
if redis.call('EXISTS', KEYS[3]) == 0 then return {0, 0} end
end_family(KEYS[3], KEYS[4], KEYS[5], ARGV[3])
return {0, 1}
"""
)

# KEYS[3] = families index; ARGV[3] = now, ARGV[4] = family key prefix, ARGV[5] = most listed.
# {0, {{id, created_at, last_used_at, user_agent}, ...}} for the live families.
LIST_FAMILIES = (
    _FAMILIES
    + _SESSION_PRELUDE
    + """
return {0, list_families(KEYS[3], ARGV[4], generation, ARGV[3], ARGV[5])}
"""
)

# Everything kept about the user. KEYS[3] = messages, KEYS[4] = families index; ARGV[3] = now,
# ARGV[4] = family key prefix, ARGV[5] = most families listed. {0, created_at, messages newest
# first, families}.
EXPORT = (
    _FAMILIES
    + _SESSION_PRELUDE
    + """
return {0, redis.call('HGET', KEYS[1], 'created_at'), redis.call('LRANGE', KEYS[3], 0, -1),
  list_families(KEYS[4], ARGV[4], generation, ARGV[3], ARGV[5])}
"""
)

# A new password: every session and family ends and one new family begins. KEYS[3] = families
# index, KEYS[4] = the new family; ARGV[3] = new hash, ARGV[4] = family key prefix, ARGV[5] =
# used-tokens key prefix, ARGV[6] = new family id, ARGV[7] = when it expires, ARGV[8] = now,
# ARGV[9..14] = the fields of start_family. {0, the new generation, the old hash}.
CHANGE_PASSWORD = (
    _FAMILIES
    + _SESSION_PRELUDE
    + """
local old = redis.call('HGET', KEYS[1], 'password_hash')
redis.call('HSET', KEYS[1], 'password_hash', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'generation', 1)
-- As stored: a Lua number that large could be written back in exponent notation.
local next_generation = redis.call('HGET', KEYS[1], 'generation')
end_families(KEYS[3], ARGV[4], ARGV[5])
start_family(KEYS[4], KEYS[3], ARGV[6], next_generation, ARGV[7], ARGV[8],
  {unpack(ARGV, 9, 14)})
return {0, next_generation, old}
"""
)

# The account and everything of it, at once. KEYS[3] = messages, KEYS[4] = families index,
# KEYS[5] = the account's failed-login counter, KEYS[6] = its denylist index; ARGV[3] = family
# key prefix, ARGV[4] = used-tokens key prefix, ARGV[5] = denylist key prefix. {0, the deleted
# password hash}.
DELETE_USER = (
    _FAMILIES
    + _DENYLIST
    + _SESSION_PRELUDE
    + """
local hash = redis.call('HGET', KEYS[1], 'password_hash')
end_families(KEYS[4], ARGV[3], ARGV[4])
clear_denylist(KEYS[6], ARGV[5])
redis.call('DEL', KEYS[1], KEYS[3], KEYS[5])
return {0, hash}
"""
)

# Logout of one token: end its family (if it has one) and put its id on the denylist for as
# long as it could still be used. KEYS[1] = the denylist entry, KEYS[2] = its index, and for a
# token of a family KEYS[3] = the family, KEYS[4] = its used tokens, KEYS[5] = families index;
# ARGV[1] = the token's jti, ARGV[2] = seconds the entry lives (none if 0), ARGV[3] = now, ARGV[4] =
# denylist key prefix, ARGV[5] = most entries kept, ARGV[6] = the family id ('' for a token
# issued before families). 1 if a live family ended, else 0. The family ends first: ending it only
# deletes, which a Redis whose memory is full still allows, and then the logout holds even if the
# denylist entry cannot be written; a token of before families has only the entry (an error reply
# if it cannot be written).
LOGOUT = (
    _FAMILIES
    + _DENYLIST
    + """
local ended = 0
if ARGV[6] ~= '' then
  ended = redis.call('EXISTS', KEYS[3])
  end_family(KEYS[3], KEYS[4], KEYS[5], ARGV[6])
end
if tonumber(ARGV[2]) > 0 then
  local refused = deny(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4],
    tonumber(ARGV[5]))
  if refused and ARGV[6] == '' then return refused end
end
return ended
"""
)

# KEYS[1] = counter; ARGV[1] = limit, ARGV[2] = window in seconds. Takes one attempt if the
# window has room: {1, count}; else {0, milliseconds until the window ends}. The window starts at
# the first attempt; a counter found without an expiry gets one.
RESERVE = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
    ttl = tonumber(ARGV[2]) * 1000
  end
  return {0, ttl}
end
count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return {1, count}
"""

# KEYS[1] = counter: give back one attempt (never below zero, never reviving an ended window).
REFUND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end
return 1
"""

# KEYS[1] = counter: forget every attempt of the window.
CLEAR = "return redis.call('DEL', KEYS[1])"

# KEYS[1] = password costs: cost, count... as a flat list.
READ_COSTS = "return redis.call('HGETALL', KEYS[1])"

# KEYS[1] = password costs; ARGV = cost, change, cost, change...: never below zero.
COUNT_COSTS = """
for i = 1, #ARGV, 2 do
  local count = redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  if count <= 0 then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 1
"""

# KEYS[1] = password costs; ARGV = cost, count...: the census of hashes stored before the counts
# were kept, added once (by whichever instance finishes first).
ADD_CENSUS = """
if redis.call('HEXISTS', KEYS[1], 'census') == 1 then return 0 end
for i = 1, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'census', 1)
return 1
"""
