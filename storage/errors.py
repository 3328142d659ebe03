"""Domain exceptions raised by the storage layer; they know nothing of HTTP."""

from __future__ import annotations


class StorageError(Exception):
    """Base of every storage failure."""


class StorageUnavailable(StorageError):
    """Redis could not be reached or did not answer in time."""


class SetupRefused(StorageError):
    """Redis answers but refuses a connection's set-up (a wrong password, no such database)."""


class NameTaken(StorageError):
    """A user with this name already exists (`look_alike`: one whose name looks the same)."""

    def __init__(self, name: str, *, look_alike: bool = False) -> None:
        super().__init__(name)
        self.look_alike = look_alike


class SessionInvalid(StorageError):
    """The token's session is no longer valid; subclasses say why."""


class SessionRevoked(SessionInvalid):
    """This very token was revoked by a logout, or its family ended."""


class SessionEnded(SessionInvalid):
    """The user logged out everywhere after this token was issued."""


class UnknownUser(SessionInvalid):
    """The token names a user that does not exist (any more)."""


class RefreshInvalid(StorageError):
    """The refresh token is unknown, expired, or of a family that has ended."""


class RefreshReused(StorageError):
    """The refresh token was used before: its whole family has just been ended."""


class RefreshCsrfFailed(StorageError):
    """A refresh token sent as a cookie came without its family's CSRF value."""


class NoSuchFamily(StorageError):
    """No live session of the user has this id."""


class RateLimited(StorageError):
    """Too many attempts in the current window; retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


class UnknownRecipient(StorageError):
    """No user has the name a message or a block names."""


class RecipientUnavailable(StorageError):
    """The recipient has blocked the sender."""


class MessageRateLimited(RateLimited):
    """The sender's messages to others are over their rate; retry after `retry_after` seconds."""


class IdempotencyKeyReused(StorageError):
    """The idempotency key was used for a request with another body."""


class IdempotencyKeyInUse(StorageError):
    """A request with the idempotency key is still running; retry after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


class NoSuchBlock(StorageError):
    """The user has not blocked this name."""


class BlocksFull(StorageError):
    """The user has blocked as many names as anyone may."""


class StreamsFull(StorageError):
    """The user has as many live streams open as they may."""
