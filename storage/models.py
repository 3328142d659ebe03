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
class LoginState:
    """What a login needs to know: the user's password hash and session generation (None and 0
    when there is no such user), and the bcrypt costs of the password hashes stored."""

    password_hash: str | None
    generation: int
    stored_costs: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Message:
    """One stored message."""

    text: str
    sent_at: str
