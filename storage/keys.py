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
    """Marker of one revoked token (by its `jti`), expiring when the token would have."""
    return f"revoked:{{{name}}}:{jti}"


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
