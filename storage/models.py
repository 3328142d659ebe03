"""Small values the stores return or take."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Session:
    """What the store needs to know of a verified token to check that it is still valid."""

    name: str
    jti: str
    generation: int


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user's stored password hash, current session generation and recent failed logins."""

    password_hash: str
    generation: int
    failed_logins: int = 0


@dataclass(frozen=True, slots=True)
class Message:
    """One stored message."""

    text: str
    sent_at: str
