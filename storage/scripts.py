"""Lua scripts: every multi-step write, and every action that must see a valid session first.

Session scripts take KEYS[1] = the user hash, KEYS[2] = the token's revocation marker and
ARGV[1] = the token's session generation. They answer `{status, ...}` where status is one of the
SESSION_* codes below; the action runs only when the session is valid, in the same round trip.
"""

from __future__ import annotations

SESSION_OK = 0
SESSION_REVOKED = 1
SESSION_ENDED = 2
SESSION_UNKNOWN_USER = 3

_SESSION_PRELUDE = """
local generation = redis.call('HGET', KEYS[1], 'generation')
if not generation then return {3} end
if generation ~= ARGV[1] then return {2} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {1} end
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

# KEYS[3] = messages list; ARGV[2] = encoded message, ARGV[3] = history cap.
APPEND_MESSAGE = (
    _SESSION_PRELUDE
    + """
redis.call('LPUSH', KEYS[3], ARGV[2])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
return {0}
"""
)

# KEYS[3] = messages list; ARGV[2] = how many, newest first.
LAST_MESSAGES = (
    _SESSION_PRELUDE
    + """
return {0, redis.call('LRANGE', KEYS[3], 0, tonumber(ARGV[2]) - 1)}
"""
)

# Ends every session of the user issued until now (log out everywhere).
END_SESSIONS = (
    _SESSION_PRELUDE
    + """
redis.call('HINCRBY', KEYS[1], 'generation', 1)
return {0}
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
