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
-- The user's streams hear of each family that ends ('*': all of them) on the user's channel,
-- events:{<name>} (storage.keys.channel), in the slot of the key given.
local function ended(key, id)
  redis.call('SPUBLISH', 'events:' .. string.match(key, '{[^}]*}'), 'end ' .. id)
end
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
  ended(index, id)
end
local function end_families(index, family_prefix, used_prefix)
  for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    redis.call('DEL', family_prefix .. id, used_prefix .. id)
  end
  redis.call('DEL', index)
  ended(index, '*')
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
      ended(index, id)
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

# KEYS[3] = messages list; ARGV[3] = how many, newest first.
LAST_MESSAGES = (
    _SESSION_PRELUDE
    + """
return {0, redis.call('LRANGE', KEYS[3], 0, tonumber(ARGV[3]) - 1)}
"""
)

# Messages. A user's history is the list messages:{<name>}, newest first, capped; every message
# that enters it is numbered by the user hash's `seq` (its offset in the user's stream: the
# element at index i has number seq - i, since a push adds exactly one at the head). A history
# written before the numbers were kept counts its elements: `seq` starts at its length.
MESSAGE_OK = 0
MESSAGE_UNKNOWN_RECIPIENT = 10
MESSAGE_BLOCKED = 11
MESSAGE_RATE_LIMITED = 12
MESSAGE_KEY_REUSED = 13
MESSAGE_KEY_IN_USE = 14
MESSAGE_REPLAYED = 15

_MESSAGES = """
local function top_of(user, list)
  return tonumber(redis.call('HGET', user, 'seq') or redis.call('LLEN', list))
end
-- Push `entry` at the head of a history (trimmed to `cap`), number it, and publish it on the
-- user's channel (`command`: PUBLISH or SPUBLISH, '' for none) as "<number> <entry>".
local function push(user, list, entry, cap, channel, command)
  if not redis.call('HGET', user, 'seq') then
    redis.call('HSET', user, 'seq', redis.call('LLEN', list))
  end
  local seq = redis.call('HINCRBY', user, 'seq', 1)
  redis.call('LPUSH', list, entry)
  redis.call('LTRIM', list, 0, cap - 1)
  if command ~= '' then redis.call(command, channel, seq .. ' ' .. entry) end
  return seq
end
-- The token bucket of a sender's messages to others: `capacity` a minute, refilled
-- continuously. 0 if a message may go now (and it is taken), else milliseconds to wait.
local function take_token(bucket, capacity, now)
  local b = redis.call('HMGET', bucket, 't', 'at')
  local tokens = capacity
  if b[1] then
    tokens = math.min(capacity, tonumber(b[1]) + (now - tonumber(b[2])) * capacity / 60000)
  end
  if tokens < 1 then return math.ceil((1 - tokens) * 60000 / capacity) end
  redis.call('HSET', bucket, 't', string.format('%.6f', tokens - 1), 'at', now)
  redis.call('PEXPIRE', bucket, 60000)
  return 0
end
local function refund_token(bucket, capacity)
  local t = redis.call('HGET', bucket, 't')
  if not t then return end
  local tokens = tonumber(t) + 1
  if tokens >= capacity then
    redis.call('DEL', bucket)  -- full: as if nothing had been taken
  else
    redis.call('HSET', bucket, 't', string.format('%.6f', tokens))
  end
end
-- Idempotency records: records[key] = "<r|d> <fingerprint> <id> <lease end, ms>", indexed by
-- when each was made. nil if the key is new (or its holder's lease ran out: then also its id),
-- else the status to answer with.
local function recall(records, key, fingerprint, now)
  local record = redis.call('HGET', records, key)
  if not record then return nil end
  local state, fp, id, lease = string.match(record, '^(%a) (%x+) (%S+) (%d+)$')
  if fp ~= fingerprint then return {13} end
  if state == 'd' then return {15, id} end
  if tonumber(lease) > now then return {14, tonumber(lease) - now} end
  return nil, id
end
local function remember(records, index, key, record, now, ttl, cap)
  for _, old in ipairs(redis.call('ZRANGEBYSCORE', index, '-inf', now - ttl, 'LIMIT', 0, 100)) do
    redis.call('HDEL', records, old)
    redis.call('ZREM', index, old)
  end
  redis.call('HSET', records, key, record)
  if redis.call('ZADD', index, 'NX', now, key) == 1 then
    local surplus = redis.call('ZCARD', index) - cap
    if surplus > 0 then
      for _, old in ipairs(redis.call('ZRANGE', index, 0, surplus - 1)) do
        redis.call('HDEL', records, old)
      end
      redis.call('ZREMRANGEBYRANK', index, 0, surplus - 1)
    end
  end
  redis.call('PEXPIRE', records, ttl)
  redis.call('PEXPIRE', index, ttl)
end
"""

# Keys a message script touches only when it needs them (an idempotency key's records, the rate
# bucket, blocks) are named in ARGV, not KEYS: a key among KEYS that does not exist makes a
# cluster answer TRYAGAIN while its slot migrates, and these mostly do not. (They share the
# declared keys' hash tag, so their slot; while it migrates, a script that needs one that is not
# on its node fails: a 503, as a write that would create a key there.)

# A message, in one script (one Redis, or a message to oneself). KEYS[3] = the sender's history;
# to another user also KEYS[4] = the recipient's user hash, KEYS[5] = their history, KEYS[6] =
# their blocks. ARGV[3] = the entry, ARGV[4] = history cap, ARGV[5] = now (ms), ARGV[6] = the
# idempotency key ('' for none), ARGV[7] = the request's fingerprint, ARGV[8] = the message id,
# ARGV[9] = the sender's name, ARGV[10] = messages a minute to others, ARGV[11] = how long a key
# is remembered (ms), ARGV[12] = most keys remembered, ARGV[13] = the publish command ('' none),
# ARGV[14] = the sender's channel, ARGV[15] = the recipient's, ARGV[16] = the sender's idempotency
# records, ARGV[17] = their index, ARGV[18] = the sender's rate bucket. {0, id} when stored, {15,
# id} for a repeat of a stored request, else {status, ...}.
SEND_MESSAGE = (
    _MESSAGES
    + _SESSION_PRELUDE
    + """
local now, key = tonumber(ARGV[5]), ARGV[6]
if key ~= '' then
  local known = recall(ARGV[16], key, ARGV[7], now)
  if known then return known end
end
if KEYS[4] then
  if redis.call('EXISTS', KEYS[4]) == 0 then return {10} end
  if redis.call('SISMEMBER', KEYS[6], ARGV[9]) == 1 then return {11} end
  local wait = take_token(ARGV[18], tonumber(ARGV[10]), now)
  if wait > 0 then return {12, wait} end
  push(KEYS[4], KEYS[5], ARGV[3], tonumber(ARGV[4]), ARGV[15], ARGV[13])
end
push(KEYS[1], KEYS[3], ARGV[3], tonumber(ARGV[4]), ARGV[14], ARGV[13])
if key ~= '' then
  remember(ARGV[16], ARGV[17], key, 'd ' .. ARGV[7] .. ' ' .. ARGV[8] .. ' 0', now,
    tonumber(ARGV[11]), tonumber(ARGV[12]))
end
return {0, ARGV[8]}
"""
)

# On a cluster, a message to another user takes steps in two slots. 1. CLAIM_MESSAGE, in the
# sender's: the session, the rate limit, the idempotency key (claimed for `lease` ms with the
# message id). ARGV[3] = now (ms), ARGV[4] = key ('' none), ARGV[5] = fingerprint, ARGV[6] =
# message id, ARGV[7] = messages a minute, ARGV[8] = lease (ms), ARGV[9] = key memory (ms),
# ARGV[10] = most keys, ARGV[11..13] = the sender's idempotency records, their index, rate bucket.
# {0, id, 1 if the claim was taken over from a request that died (its id), else 0} or a status.
CLAIM_MESSAGE = (
    _MESSAGES
    + _SESSION_PRELUDE
    + """
local now, key, id, taken_over = tonumber(ARGV[3]), ARGV[4], ARGV[6], 0
if key ~= '' then
  local known, held = recall(ARGV[11], key, ARGV[5], now)
  if known then return known end
  if held then id, taken_over = held, 1 end
end
local wait = take_token(ARGV[13], tonumber(ARGV[7]), now)
if wait > 0 then return {12, wait} end
if key ~= '' then
  local lease = now + tonumber(ARGV[8])
  remember(ARGV[11], ARGV[12], key, 'r ' .. ARGV[5] .. ' ' .. id .. ' ' .. lease, now,
    tonumber(ARGV[9]), tonumber(ARGV[10]))
end
return {0, id, taken_over}
"""
)

# 2. DELIVER_MESSAGE, in the recipient's slot: KEYS[1] = their user hash, KEYS[2] = history;
# ARGV[1] = the sender, ARGV[2] = the entry, ARGV[3] = history cap, ARGV[4] = the message id,
# ARGV[5] = 1 to look for it first (a retry of a request that may have got this far), ARGV[6] =
# publish command, ARGV[7] = channel, ARGV[8] = their blocks. {0} or {10} or {11}.
DELIVER_MESSAGE = (
    _MESSAGES
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {10} end
if redis.call('SISMEMBER', ARGV[8], ARGV[1]) == 1 then return {11} end
if ARGV[5] == '1' then
  local needle = '"id":"' .. ARGV[4] .. '"'
  for _, entry in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    if string.find(entry, needle, 1, true) then return {0} end
  end
end
push(KEYS[1], KEYS[2], ARGV[2], tonumber(ARGV[3]), ARGV[7], ARGV[6])
return {0}
"""
)

# 3. COMMIT_MESSAGE, in the sender's slot, once the recipient has it: the sender's copy, and the
# idempotency key marked done. KEYS[1] = the sender's user hash, KEYS[2] = history; ARGV[1] = the
# entry, ARGV[2] = history cap, ARGV[3] = now (ms), ARGV[4] = key ('' none), ARGV[5] =
# fingerprint, ARGV[6] = id, ARGV[7] = key memory (ms), ARGV[8] = most keys, ARGV[9] = publish
# command, ARGV[10] = channel, ARGV[11] = idempotency records, ARGV[12] = their index. 1.
COMMIT_MESSAGE = (
    _MESSAGES
    + """
local key = ARGV[4]
if key ~= '' then
  local record = redis.call('HGET', ARGV[11], key)
  if record and string.sub(record, 1, 1) == 'd' then return 1 end
end
push(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[10], ARGV[9])
if key ~= '' then
  remember(ARGV[11], ARGV[12], key, 'd ' .. ARGV[5] .. ' ' .. ARGV[6] .. ' 0', tonumber(ARGV[3]),
    tonumber(ARGV[7]), tonumber(ARGV[8]))
end
return 1
"""
)

# When the recipient's step refused (404, 403): the sender's claim and token go back. KEYS[1] =
# the sender's user hash (for the slot); ARGV[1] = key ('' none), ARGV[2] = the message id,
# ARGV[3] = messages a minute, ARGV[4..6] = idempotency records, their index, rate bucket. 1.
RELEASE_MESSAGE = (
    _MESSAGES
    + """
if ARGV[1] ~= '' then
  local record = redis.call('HGET', ARGV[4], ARGV[1])
  if record and string.match(record, '^r %x+ (%S+) ') == ARGV[2] then
    redis.call('HDEL', ARGV[4], ARGV[1])
    redis.call('ZREM', ARGV[5], ARGV[1])
  end
end
refund_token(ARGV[6], tonumber(ARGV[3]))
return 1
"""
)

# A page of the user's history, newest first. KEYS[3] = history; ARGV[3] = most messages,
# ARGV[4] = the number of the last message of the page before ('' for the newest), ARGV[5] and
# ARGV[6] = how a message of the conversation asked for begins (both '' for the whole history),
# ARGV[7] = 1 if messages of before the numbers, which are the user's notes to themselves, belong
# to it. {0, the newest number, number, entry, number, entry...}: at most one more than asked
# for (so the caller knows whether more are left), a conversation scanned in chunks of the
# (capped) history.
PAGE_MESSAGES = (
    _MESSAGES
    + _SESSION_PRELUDE
    + """
local top = top_of(KEYS[1], KEYS[3])
local want = tonumber(ARGV[3]) + 1
local start = 0
if ARGV[4] ~= '' then start = math.max(0, top - tonumber(ARGV[4]) + 1) end
local found = {0, top}
if ARGV[5] == '' then
  for i, entry in ipairs(redis.call('LRANGE', KEYS[3], start, start + want - 1)) do
    table.insert(found, top - start - i + 1)
    table.insert(found, entry)
  end
  return found
end
local a, b, legacy = ARGV[5], ARGV[6], ARGV[7] == '1'
local matched = 0
while matched < want do
  local chunk = redis.call('LRANGE', KEYS[3], start, start + 99)
  if #chunk == 0 then break end
  for i, entry in ipairs(chunk) do
    local head = string.sub(entry, 1, #a)
    if head == a or string.sub(entry, 1, #b) == b
        or (legacy and string.sub(entry, 1, 8) == '{"text":') then
      table.insert(found, top - start - i + 1)
      table.insert(found, entry)
      matched = matched + 1
      if matched == want then break end
    end
  end
  start = start + #chunk
end
return found
"""
)

BLOCKS_FULL = 16

# KEYS[3] = the user's blocks; ARGV[3] = the name to block, ARGV[4] = most blocks. {0} or {16}.
BLOCK = (
    _SESSION_PRELUDE
    + """
if redis.call('SISMEMBER', KEYS[3], ARGV[3]) == 1 then return {0} end
if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[4]) then return {16} end
redis.call('SADD', KEYS[3], ARGV[3])
return {0}
"""
)

# KEYS[3] = the user's blocks; ARGV[3] = the name. {0, 1 if it was blocked, else 0}.
UNBLOCK = _SESSION_PRELUDE + "return {0, redis.call('SREM', KEYS[3], ARGV[3])}"

# KEYS[3] = the user's blocks. {0, names}.
LIST_BLOCKS = _SESSION_PRELUDE + "return {0, redis.call('SMEMBERS', KEYS[3])}"

# KEYS[1] = a skeleton's key; ARGV[1] = the name claiming it. 1 if it is the name's now, 2 if it
# was already, 0 if another name holds it.
CLAIM_SKELETON = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1])
  return 1
end
if holder == ARGV[1] then return 2 end
return 0
"""

# KEYS[1] = a skeleton's key; ARGV[1] = a name: the key goes if that name holds it.
RELEASE_SKELETON = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS[1] = the census key, ARGV[1] = the confusables version: 1 the first time, else 0.
MARK_SKELETON_CENSUS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

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

# Everything kept about the user. KEYS[3] = messages, KEYS[4] = families index, KEYS[5] = blocks;
# ARGV[3] = now, ARGV[4] = family key prefix, ARGV[5] = most families listed. {0, created_at,
# messages newest first, families, blocks, the newest message's number}.
EXPORT = (
    _FAMILIES
    + _MESSAGES
    + _SESSION_PRELUDE
    + """
return {0, redis.call('HGET', KEYS[1], 'created_at'), redis.call('LRANGE', KEYS[3], 0, -1),
  list_families(KEYS[4], ARGV[4], generation, ARGV[3], ARGV[5]),
  redis.call('SMEMBERS', KEYS[5]), top_of(KEYS[1], KEYS[3])}
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
# KEYS[5] = the account's failed-login counter, KEYS[6] = its denylist index, KEYS[7..] = its other
# keys (blocks, idempotency records, rate bucket); ARGV[3] = family key prefix, ARGV[4] =
# used-tokens key prefix, ARGV[5] = denylist key prefix. {0, the deleted password hash}.
DELETE_USER = (
    _FAMILIES
    + _DENYLIST
    + _SESSION_PRELUDE
    + """
local hash = redis.call('HGET', KEYS[1], 'password_hash')
end_families(KEYS[4], ARGV[3], ARGV[4])
clear_denylist(KEYS[6], ARGV[5])
redis.call('DEL', KEYS[1], KEYS[3], KEYS[5], unpack(KEYS, 7))
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

# Live streams. A user's open streams, on every worker and instance, are counted in the sorted set
# live:{<name>} (stream id -> when it stops counting unless renewed). STREAM_FULL: the user has
# as many streams open as they may.
STREAM_FULL = 17
STREAM_RESET = "reset"

_LIVE = """
-- The messages of the history after number `after` that has id `id`, oldest first, or nil if
-- the history no longer holds them all (trimmed, or not the same history: data lost, an old
-- id). `after` = '' asks for none: the stream starts at the newest.
local function since(user, list, after, id)
  local top = top_of(user, list)
  if after == '' then return top, {} end
  local n = tonumber(after)
  if n == nil or n > top or n < 0 then return top, nil end
  local index = top - n
  -- Every message after n must still be there, and message n must be the one the stream had
  -- (the id '' when it does not know it: after a reset).
  if index > redis.call('LLEN', list) then return top, nil end
  if n > 0 and id ~= '' then
    local entry = redis.call('LINDEX', list, index)
    if not entry then return top, nil end
    local found = string.find(entry, '"id":"' .. id .. '"', 1, true)
    local legacy = string.sub(entry, 1, 8) == '{"text":' and id == '.' .. n
    if not (found or legacy) then return top, nil end
  end
  if index == 0 then return top, {} end
  local newest_first = redis.call('LRANGE', list, 0, index - 1)
  local oldest_first = {}
  for i = #newest_first, 1, -1 do table.insert(oldest_first, newest_first[i]) end
  return top, oldest_first
end
"""

# A stream opens: its session checked, its place among the user's streams taken, and where it
# starts read. KEYS[3] = history, KEYS[4] = the user's streams; ARGV[3] = the stream's id, ARGV[4]
# = now (ms), ARGV[5] = how long its place lasts unless renewed (ms), ARGV[6] = most streams,
# ARGV[7] = the event number to resume after ('' none), ARGV[8] = the id of that event's message.
# {0, top, 'ok', messages after it, oldest first} or {0, top, 'reset'} or {17}.
OPEN_STREAM = (
    _MESSAGES
    + _LIVE
    + _SESSION_PRELUDE
    + """
local now = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
if redis.call('ZCARD', KEYS[4]) >= tonumber(ARGV[6]) then return {17} end
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[5]), ARGV[3])
redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[5]))
local top, missed = since(KEYS[1], KEYS[3], ARGV[7], ARGV[8])
if missed == nil then return {0, top, 'reset'} end
return {0, top, 'ok', missed}
"""
)

# A stream catches up (a gap, a resubscription): KEYS[3] = history; ARGV[3] = the last number it
# has, ARGV[4] = that message's id. {0, top, 'ok', messages after it} or {0, top, 'reset'}.
READ_SINCE = (
    _MESSAGES
    + _LIVE
    + _SESSION_PRELUDE
    + """
local top, missed = since(KEYS[1], KEYS[3], ARGV[3], ARGV[4])
if missed == nil then return {0, top, 'reset'} end
return {0, top, 'ok', missed}
"""
)

# The streams still open on a worker keep their places: KEYS[1] = the user's streams; ARGV[1] =
# until when (ms), ARGV[2...] = their ids. ARGV[1] = 0: they close (their places go).
RENEW_STREAMS = """
if ARGV[1] == '0' then
  redis.call('ZREM', KEYS[1], unpack(ARGV, 2))
  return 1
end
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i]) end
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
"""
