"""Every Redis key name, built in one place.

`{<name>}` is a Redis Cluster hash tag: all of one user's keys hash to the same slot, so a Lua
script or a transaction over them is allowed in cluster mode. Names are validated upstream and
never contain `{`, `}` or `:`.
"""

from __future__ import annotations


def user(name: str) -> str:
    """Hash with the user's password hash, creation time and session generation."""
    return f"user:{{{name}}}"


def messages(name: str) -> str:
    """Capped list of the user's messages, newest first."""
    return f"messages:{{{name}}}"


def revoked(name: str, jti: str) -> str:
    """Denylist entry of one logged-out token (by its `jti`), expiring when the token would
    have. Every authenticated request checks it; a token of a family is also revoked by the end
    of its family."""
    return f"{revoked_prefix(name)}{jti}"


def revoked_prefix(name: str) -> str:
    """What every denylist entry of the user starts with (scripts append the jti to it)."""
    return f"revoked:{{{name}}}:"


def denylist(name: str) -> str:
    """Sorted set of the jtis on the user's denylist, scored by when each entry expires: how
    deleting the account finds them."""
    return f"denylist:{{{name}}}"


def family(name: str, family_id: str) -> str:
    """Hash of one login's session, its *family* of tokens: when it began and was last used,
    the client, and the hashes of its current refresh token and CSRF value."""
    return f"{family_prefix(name)}{family_id}"


def family_prefix(name: str) -> str:
    """What every family key of the user starts with (scripts append the family id to it)."""
    return f"family:{{{name}}}:"


def families(name: str) -> str:
    """Sorted set of the user's family ids, scored by when each family's key expires."""
    return f"families:{{{name}}}"


def used_refresh_tokens(name: str, family_id: str) -> str:
    """Sorted set of the hashes of a family's used refresh tokens, scored by when each was used:
    presenting one again is reuse."""
    return f"{used_prefix(name)}{family_id}"


def used_prefix(name: str) -> str:
    """What every used-refresh-token key of the user starts with."""
    return f"refresh-used:{{{name}}}:"


def login_failures(name: str) -> str:
    """Counter of the account's failed logins in the current window."""
    return f"throttle:login:{{{name}}}"


def login_address_failures(address: str) -> str:
    """Counter of failed logins from one client address in the current window."""
    return f"throttle:login-addr:{address}"


def address_signups(address: str) -> str:
    """Counter of signups from one client address in the current hour."""
    return f"throttle:signup-addr:{address}"


def password_costs() -> str:
    """Hash of bcrypt cost -> how many stored password hashes have it (and `census` once the
    hashes stored before it was kept have been counted)."""
    return "password-costs"


def readiness_probe() -> str:
    """Short-lived key that /readyz writes to check that Redis accepts writes."""
    return "readiness-probe"


def blocks(name: str) -> str:
    """Set of the names the user has blocked: their messages to the user are refused."""
    return f"blocks:{{{name}}}"


def idempotency(name: str) -> str:
    """Hash of the user's idempotency keys (of POST /message/) -> what became of each request."""
    return f"idempotency:{{{name}}}"


def idempotency_index(name: str) -> str:
    """Sorted set of the user's idempotency keys, scored by when each was first used."""
    return f"idempotency-index:{{{name}}}"


def message_rate(name: str) -> str:
    """Hash of the token bucket of the user's messages to others: tokens left, and when."""
    return f"rate:messages:{{{name}}}"


def channel(name: str) -> str:
    """The pub/sub channel of the user's events (messages entering their history, sessions
    ending), in the user's cluster slot."""
    return f"events:{{{name}}}"


def skeleton(digest: str) -> str:
    """The name that holds a skeleton (by its digest: see api.names), in a slot of its own."""
    return f"skeleton:{{{digest}}}"


def skeleton_census() -> str:
    """Which version of Unicode's confusables data the existing names were indexed with."""
    return "skeleton-census"


def live_streams(name: str) -> str:
    """Sorted set of the user's open live streams (on every worker and instance), scored by when
    each stops counting unless its worker renews it."""
    return f"live:{{{name}}}"
