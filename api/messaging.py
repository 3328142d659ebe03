"""The messaging service: messages between users, pages of a history, `last N`, blocks. Like the
auth service it knows nothing of requests; `POST /message/` and the WebSocket's `send` frames
both go through `send`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from api.cursors import Cursors
from api.errors import ValidationError
from api.metrics import Metrics
from storage.blocks import BlockStore
from storage.errors import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    MessageRateLimited,
    RecipientUnavailable,
    StorageError,
    UnknownRecipient,
)
from storage.messages import MessageStore
from storage.models import Message, Sent, Session

# Why a message was refused, as the metrics count it.
REFUSALS: dict[type[StorageError], str] = {
    UnknownRecipient: "unknown_recipient",
    RecipientUnavailable: "blocked",
    MessageRateLimited: "rate_limited",
    IdempotencyKeyReused: "idempotency_key_reused",
    IdempotencyKeyInUse: "idempotency_key_in_use",
}


@dataclass(frozen=True, slots=True)
class MessagePage:
    """Messages of a history, newest first, and the cursor of the page after (None if no older
    message is left)."""

    messages: list[Message]
    next: str | None


def fingerprint(recipient: str, text: str) -> str:
    """What makes two requests with one idempotency key the same request: whom, and what."""
    return hashlib.sha256(orjson.dumps([recipient, text])).hexdigest()


class MessagingService:
    """Messages and blocks over their stores, counted in the metrics."""

    def __init__(
        self,
        messages: MessageStore,
        blocks: BlockStore,
        cursors: Cursors,
        metrics: Metrics | None = None,
    ) -> None:
        self._messages = messages
        self._blocks = blocks
        self._cursors = cursors
        self._metrics = metrics

    async def send(
        self, session: Session, recipient: str, text: str, idempotency_key: str | None = None
    ) -> Sent:
        """Store a message from the session's user to `recipient` (themselves by default)."""
        try:
            sent = await self._messages.send(
                session,
                recipient,
                text,
                idempotency_key=idempotency_key or "",
                fingerprint=fingerprint(recipient, text) if idempotency_key else "",
            )
        except tuple(REFUSALS) as exc:
            self._count("messages_refused", REFUSALS[type(exc)])
            raise
        if not sent.replayed:
            self._count("messages_sent", "self" if recipient == session.name else "other")
        return sent

    async def last(self, session: Session, count: int) -> list[str]:
        """The texts of the user's `count` newest messages, received ones included."""
        return await self._messages.last_texts(session, count)

    async def page(
        self, session: Session, limit: int, *, cursor: str | None, with_user: str | None
    ) -> MessagePage:
        """A page of the user's history (or of the conversation `with_user`): the newest
        `limit` messages, or those after `cursor` (422 for a cursor that is not one of this
        user's)."""
        before = None
        if cursor is not None:
            before = self._cursors.read(session.name, cursor)
            if before is None:
                raise ValidationError("cursor", "is not a cursor of yours")
        page = await self._messages.page(session, limit, before=before, with_user=with_user)
        after = None if page.next_seq is None else self._cursors.make(session.name, page.next_seq)
        return MessagePage(page.messages, after)

    async def block(self, session: Session, name: str) -> None:
        """Refuse `name`'s messages to the session's user from now on (422 for oneself)."""
        if name == session.name:
            raise ValidationError("name", "you cannot block yourself")
        await self._blocks.block(session, name)

    async def unblock(self, session: Session, name: str) -> None:
        """Take `name` off the session user's blocks."""
        await self._blocks.unblock(session, name)

    async def blocked(self, session: Session) -> list[str]:
        """The names the session's user has blocked."""
        return await self._blocks.blocked(session)

    def _count(self, name: str, label: str) -> None:
        if self._metrics is not None:
            self._metrics.inc(name, (label,))
