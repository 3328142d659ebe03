"""Messages: a capped list per user, newest first, written only through a valid session."""

from __future__ import annotations

import orjson

from storage import keys, scripts
from storage.clock import SecondClock
from storage.connection import Client, Monitor
from storage.models import Message, Session
from storage.pipeline import AutoPipeline
from storage.sessions import raise_for_status, session_args, session_keys
from storage.store import Script, Store, translate_errors


class MessageStore(Store):
    """Messages kept as JSON objects `{"text", "sent_at"}` in the list `messages:{<name>}`."""

    _append = Script(scripts.APPEND_MESSAGE)
    _last = Script(scripts.LAST_MESSAGES)

    def __init__(
        self,
        client: Client,
        *,
        history_limit: int,
        monitor: Monitor | None = None,
        pipeline: AutoPipeline | None = None,
    ) -> None:
        super().__init__(client, monitor, pipeline)
        self._clock = SecondClock()
        self._history_limit = history_limit

    @translate_errors
    async def append_message(self, session: Session, text: str) -> Message:
        """Store a message if the session is valid, trimming the history to its cap, atomically."""
        message = Message(text=text, sent_at=self._clock.utc_iso())
        element = orjson.dumps({"text": message.text, "sent_at": message.sent_at})
        raise_for_status(
            await self._append(
                keys=session_keys(session, keys.messages(session.name)),
                args=session_args(session, element, self._history_limit),
            )
        )
        return message

    @translate_errors
    async def last_messages(self, session: Session, count: int) -> list[Message]:
        """Return up to `count` of the session user's messages, newest first."""
        count = min(count, self._history_limit)
        reply = raise_for_status(
            await self._last(
                keys=session_keys(session, keys.messages(session.name)),
                args=session_args(session, count),
            )
        )
        return decode_messages(reply[1])


def decode_messages(elements: list[str]) -> list[Message]:
    """The stored elements as Messages, in their order."""
    # One parse for the whole list: the elements are JSON objects, so joined they are an array.
    history = orjson.loads(f"[{','.join(elements)}]")
    return [Message(element["text"], element["sent_at"]) for element in history]
