"""Small values the stores return or take."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple


class Session(NamedTuple):
    """What the store needs to know of a verified token to check that it is still valid: its
    user, id, session generation and family (None for a token issued before families)."""

    # Tuples, this and Message: one is made per request (a Message per message read), and a
    # frozen dataclass costs a call per field to make.
    name: str
    jti: str
    generation: int
    family: str | None = None


@dataclass(frozen=True, slots=True)
class NewFamily:
    """A family about to begin, as a login, refresh or password change makes it: its id, the
    client, digests of its refresh token (empty when it has none) and CSRF value, and times
    (seconds since the epoch): when its refresh token and the family itself end, and when its
    key may go (after the last token issued from it has expired)."""

    id: str
    user_agent: str
    refresh_digest: str
    csrf_digest: str
    now: int
    refresh_expires: int
    deadline: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class FamilyInfo:
    """One live family (a session) as the user may see it."""

    id: str
    created_at: str
    last_used_at: str
    user_agent: str


@dataclass(frozen=True, slots=True)
class Rotation:
    """A refresh that went through: the family's session generation and when the new refresh
    token expires."""

    generation: int
    refresh_expires: int


@dataclass(frozen=True, slots=True)
class AccountData:
    """Everything kept about a user: when the account was created, its messages (newest first),
    its live families and the names it has blocked."""

    created_at: str
    messages: list[Message]
    families: list[FamilyInfo]
    blocks: list[str] = dataclasses.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LoginState:
    """What a login needs to know: the user's password hash and session generation (None and 0
    when there is no such user), and the bcrypt costs of the password hashes stored."""

    password_hash: str | None
    generation: int
    stored_costs: tuple[int, ...] = ()


class Message(NamedTuple):
    """One message of a user's history: its text, when it was sent, its id (the sender's and
    the recipient's copy share it), who sent it to whom, and its number in this history (the
    event id of its entry; 0 where none is known)."""

    text: str
    sent_at: str
    id: str = ""
    sender: str = ""
    recipient: str = ""
    seq: int = 0


class Page(NamedTuple):
    """Messages of a history, newest first, and the number of the last of them when older ones
    are left (where the next page starts), else None."""

    messages: list[Message]
    next_seq: int | None


class Sent(NamedTuple):
    """A message stored (or, for a repeated idempotent request, stored before): its id."""

    id: str
    replayed: bool = False
