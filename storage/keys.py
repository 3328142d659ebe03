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
