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

CREATE_USER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'password_hash', ARGV[1], 'created_at', ARGV[2], 'generation', '0')
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

# KEYS[1] = counter; ARGV[1] = window in seconds. The window starts at the first hit.
COUNT_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('TTL', KEYS[1])}
"""
