"""Messages: between users, in a capped history per user, written only through a valid session.

Each user's history is the list `messages:{<name>}`, newest first, capped at the history limit:
a message to another user is in both histories, a message to oneself in one. Every entry is a JSON
object `{"from", "to", "id", "sent_at", "text"}` (in that order: a conversation is found by how an
entry begins), and is numbered by the user hash's `seq`, so that a page cursor or an event id
names one message whatever arrives meanwhile. Entries written before (`{"text", "sent_at"}`) read
as the owner's notes to themselves, numbered by position.

On one Redis (and the embedded store) a message is one script. On a cluster a message to another
user takes three, in two slots: the sender's claim (session, rate limit, idempotency key, id), the
recipient's copy (which refuses an unknown or blocking recipient), then the sender's copy; a
refusal gives the claim back. Redis failing between the steps leaves the claim holding the
idempotency key for IDEMPOTENCY_LEASE_MS: a retry with the key then finds the message id and
completes what is missing, never storing a copy twice.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson
from redis.asyncio import RedisCluster

from storage import keys, scripts
from storage.clock import SecondClock
from storage.connection import Client, Monitor
from storage.errors import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    MessageRateLimited,
    RecipientUnavailable,
    UnknownRecipient,
)
from storage.models import Message, Page, Sent, Session
from storage.pipeline import AutoPipeline
from storage.sessions import raise_for_status, session_args, session_keys
from storage.store import Script, Store, translate_errors

# Idempotency keys are remembered this long, at most this many per user (the oldest go first).
IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
IDEMPOTENCY_KEYS_KEPT = 10_000
# A request that claimed a key and died holds it this long; then a retry takes it over.
IDEMPOTENCY_LEASE_MS = 10_000


class MessageIds:
    """Message ids, 16 characters of base64url's alphabet: unique, not secret (nothing is found
    by one but its owner's event ids). A random prefix per store (so per worker and instance),
    then a counter in hex: no system call per message, as `secrets` would make."""

    PREFIX_BYTES = 8  # 11 characters of base64url, 10 kept: 60 random bits
    COUNTER_LIMIT = 16**6

    def __init__(self) -> None:
        self._prefix = ""
        self._next = self.COUNTER_LIMIT

    def __call__(self) -> str:
        """A new id."""
        if self._next >= self.COUNTER_LIMIT:
            self._prefix = secrets.token_urlsafe(self.PREFIX_BYTES)[:10]
            self._next = 0
        number, self._next = self._next, self._next + 1
        return f"{self._prefix}{number:06x}"


# How the scripts publish a user's events: sharded pub/sub, which on a cluster stays on the node
# that owns the channel's slot (the user's), and on one Redis or the embedded store is plain
# pub/sub.
PUBLISH = "SPUBLISH"


class MessageStore(Store):
    """The histories of users: sending, reading pages and the last N."""

    _send = Script(scripts.SEND_MESSAGE)
    _claim = Script(scripts.CLAIM_MESSAGE)
    _deliver = Script(scripts.DELIVER_MESSAGE)
    _commit = Script(scripts.COMMIT_MESSAGE)
    _release = Script(scripts.RELEASE_MESSAGE)
    _page = Script(scripts.PAGE_MESSAGES)
    _last = Script(scripts.LAST_MESSAGES)

    def __init__(
        self,
        client: Client,
        *,
        history_limit: int,
        rate_per_minute: int = 120,
        monitor: Monitor | None = None,
        pipeline: AutoPipeline | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client, monitor, pipeline)
        self._clock = clock
        self._stamps = SecondClock()
        self._history_limit = history_limit
        self._rate = rate_per_minute
        self._cluster = isinstance(client, RedisCluster)
        self._publish = PUBLISH
        self._ids = MessageIds()

    @translate_errors
    async def send(
        self,
        session: Session,
        recipient: str,
        text: str,
        *,
        idempotency_key: str = "",
        fingerprint: str = "",
    ) -> Sent:
        """Store a message from the session's user to `recipient` (themselves included) in both
        histories, or once for oneself, publishing each on its owner's channel.

        Raise UnknownRecipient, RecipientUnavailable (blocked), MessageRateLimited (to others
        only), IdempotencyKeyReused or IdempotencyKeyInUse; a repeat of a stored idempotent
        request stores nothing and answers the first one's id (`replayed`).
        """
        sender = session.name
        now = int(self._clock() * 1000)
        message_id = self._ids()
        if recipient != sender and self._cluster:
            return await self._send_across(
                session, recipient, text, now, message_id, idempotency_key, fingerprint
            )
        entry = self._entry(sender, recipient, message_id, now, text)
        other = (
            [keys.user(recipient), keys.messages(recipient), keys.blocks(recipient)]
            if recipient != sender
            else []
        )
        reply = await self._send(
            keys=session_keys(session, keys.messages(sender), *other),
            args=session_args(
                session,
                entry,
                self._history_limit,
                now,
                idempotency_key,
                fingerprint,
                message_id,
                sender,
                self._rate,
                IDEMPOTENCY_TTL_MS,
                IDEMPOTENCY_KEYS_KEPT,
                self._publish,
                keys.channel(sender),
                keys.channel(recipient),
                keys.idempotency(sender),
                keys.idempotency_index(sender),
                keys.message_rate(sender),
            ),
        )
        return _sent(raise_for_status(reply))

    async def _send_across(
        self,
        session: Session,
        recipient: str,
        text: str,
        now: int,
        message_id: str,
        idempotency_key: str,
        fingerprint: str,
    ) -> Sent:
        """A message to another user on a cluster: claim, the recipient's copy, the sender's."""
        sender = session.name
        own = [keys.idempotency(sender), keys.idempotency_index(sender), keys.message_rate(sender)]
        claim = raise_for_status(
            await self._claim(
                keys=session_keys(session),
                args=session_args(
                    session,
                    now,
                    idempotency_key,
                    fingerprint,
                    message_id,
                    self._rate,
                    IDEMPOTENCY_LEASE_MS,
                    IDEMPOTENCY_TTL_MS,
                    IDEMPOTENCY_KEYS_KEPT,
                    *own,
                ),
            )
        )
        if int(claim[0]) != scripts.MESSAGE_OK:
            return _sent(claim)
        message_id, taken_over = str(claim[1]), bool(int(claim[2]))
        entry = self._entry(sender, recipient, message_id, now, text)
        delivered = await self._deliver(
            keys=[keys.user(recipient), keys.messages(recipient)],
            args=[
                sender,
                entry,
                self._history_limit,
                message_id,
                "1" if taken_over else "0",
                self._publish,
                keys.channel(recipient),
                keys.blocks(recipient),
            ],
        )
        if int(delivered[0]) != scripts.MESSAGE_OK:
            await self._release(
                keys=[keys.user(sender)], args=[idempotency_key, message_id, self._rate, *own]
            )
            return _sent(delivered)
        await self._commit(
            keys=[keys.user(sender), keys.messages(sender)],
            args=[
                entry,
                self._history_limit,
                now,
                idempotency_key,
                fingerprint,
                message_id,
                IDEMPOTENCY_TTL_MS,
                IDEMPOTENCY_KEYS_KEPT,
                self._publish,
                keys.channel(sender),
                *own[:2],
            ],
        )
        return Sent(message_id)

    def _entry(self, sender: str, recipient: str, message_id: str, now_ms: int, text: str) -> bytes:
        # The key order is what a conversation is found by (scripts.PAGE_MESSAGES).
        return orjson.dumps(
            {
                "from": sender,
                "to": recipient,
                "id": message_id,
                "sent_at": self._stamps.utc_iso(now_ms / 1000),
                "text": text,
            }
        )

    @translate_errors
    async def last_texts(self, session: Session, count: int) -> list[str]:
        """The texts of up to `count` of the session user's messages (received ones included),
        newest first: all that `last N` answers, so nothing else is decoded."""
        count = min(count, self._history_limit)
        reply = raise_for_status(
            await self._last(
                keys=session_keys(session, keys.messages(session.name)),
                args=session_args(session, count),
            )
        )
        # One parse for the whole list: the elements are JSON objects, so joined they are an array.
        return [element["text"] for element in orjson.loads(f"[{','.join(reply[1])}]")]

    @translate_errors
    async def page(
        self,
        session: Session,
        limit: int,
        *,
        before: int | None = None,
        with_user: str | None = None,
    ) -> Page:
        """Up to `limit` of the session user's messages, newest first: those numbered below
        `before` (a cursor's), of the conversation with `with_user` when given (with oneself:
        one's notes to oneself)."""
        owner = session.name
        first = second = ""
        if with_user is not None:
            first = _prefix(owner, with_user)
            second = _prefix(with_user, owner)
        reply = raise_for_status(
            await self._page(
                keys=session_keys(session, keys.messages(owner)),
                args=session_args(
                    session,
                    min(limit, self._history_limit),
                    "" if before is None else before,
                    first,
                    second,
                    "1" if with_user == owner else "0",
                ),
            )
        )
        found = reply[2:]
        numbers = [int(number) for number in found[::2]]
        messages = decode_messages(found[1::2], owner, numbers)
        if len(messages) > limit:
            return Page(messages[:limit], messages[limit - 1].seq)
        return Page(messages, None)


def _prefix(sender: str, recipient: str) -> str:
    """How a stored entry from `sender` to `recipient` begins."""
    return orjson.dumps({"from": sender, "to": recipient}).decode()[:-1] + ","


def _sent(reply: list[Any]) -> Sent:
    status = int(reply[0])
    if status == scripts.MESSAGE_OK:
        return Sent(str(reply[1]))
    if status == scripts.MESSAGE_REPLAYED:
        return Sent(str(reply[1]), replayed=True)
    if status == scripts.MESSAGE_UNKNOWN_RECIPIENT:
        raise UnknownRecipient()
    if status == scripts.MESSAGE_BLOCKED:
        raise RecipientUnavailable()
    if status == scripts.MESSAGE_RATE_LIMITED:
        raise MessageRateLimited(max(1, -(-int(reply[1]) // 1000)))
    if status == scripts.MESSAGE_KEY_REUSED:
        raise IdempotencyKeyReused()
    if status == scripts.MESSAGE_KEY_IN_USE:
        raise IdempotencyKeyInUse(max(1, -(-int(reply[1]) // 1000)))
    raise ValueError(f"unexpected reply {reply!r}")


def decode_messages(
    elements: list[str], owner: str, numbers: list[int] | None = None
) -> list[Message]:
    """The stored elements of `owner`'s history as Messages, in their order (`numbers`: their
    numbers in the history). An element of before ids (`{"text", "sent_at"}`) is one of the
    owner's notes to themselves, its id made from its number."""
    # One parse for the whole list: the elements are JSON objects, so joined they are an array.
    history = orjson.loads(f"[{','.join(elements)}]")
    numbers = numbers or [0] * len(history)
    return [
        Message(
            element["text"],
            element["sent_at"],
            element.get("id") or f".{number}",
            element.get("from", owner),
            element.get("to", owner),
            number,
        )
        for element, number in zip(history, numbers, strict=True)
    ]
