"""Live streams: where a stream starts or resumes in its user's history, and the places the
user's open streams take (counted across every worker and instance)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from storage import keys, scripts
from storage.connection import Client, Monitor
from storage.errors import StreamsFull
from storage.messages import decode_messages
from storage.models import Message, Session
from storage.pipeline import AutoPipeline
from storage.sessions import raise_for_status, session_args, session_keys
from storage.store import Script, Store, translate_errors

# A stream's place among its user's streams lasts this long unless its worker renews it (every
# RENEW_SECONDS while it is open): a worker that dies gives its places back this late.
PLACE_MS = 60_000
RENEW_SECONDS = 15.0


class Catchup:
    """Where a stream stands in its user's history: the newest number, and the messages after
    the one it asked for (oldest first), or `reset` when the history no longer holds them."""

    __slots__ = ("messages", "reset", "top")

    def __init__(self, top: int, messages: list[Message], reset: bool) -> None:
        self.top = top
        self.messages = messages
        self.reset = reset


def _catchup(owner: str, reply: list[Any]) -> Catchup:
    top = int(reply[1])
    if reply[2] == scripts.STREAM_RESET:
        return Catchup(top, [], True)
    entries = reply[3]
    numbers = list(range(top - len(entries) + 1, top + 1))
    return Catchup(top, decode_messages(entries, owner, numbers), False)


class LiveStore(Store):
    """Opening, catching up and keeping the places of live streams."""

    _open = Script(scripts.OPEN_STREAM)
    _since = Script(scripts.READ_SINCE)
    _renew = Script(scripts.RENEW_STREAMS)

    def __init__(
        self,
        client: Client,
        monitor: Monitor | None = None,
        pipeline: AutoPipeline | None = None,
        *,
        max_per_user: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client, monitor, pipeline)
        self.max_per_user = max_per_user
        self.clock = clock

    @translate_errors
    async def open(
        self, session: Session, stream_id: str, after: tuple[int, str] | None
    ) -> Catchup:
        """Check the session, take a place among the user's streams (StreamsFull when they are
        all taken) and read where the stream starts: after message (number, id) `after`, or at
        the newest."""
        name = session.name
        number, message_id = after if after is not None else ("", "")
        reply = raise_for_status(
            await self._open(
                keys=session_keys(session, keys.messages(name), keys.live_streams(name)),
                args=session_args(
                    session,
                    stream_id,
                    int(self.clock() * 1000),
                    PLACE_MS,
                    self.max_per_user,
                    number,
                    message_id,
                ),
            )
        )
        if int(reply[0]) == scripts.STREAM_FULL:
            raise StreamsFull()
        return _catchup(name, reply)

    @translate_errors
    async def since(self, session: Session, number: int, message_id: str) -> Catchup:
        """The messages after message (number, id) of the session's user, if the session lives
        (a SessionInvalid error otherwise)."""
        reply = raise_for_status(
            await self._since(
                keys=session_keys(session, keys.messages(session.name)),
                args=session_args(session, number, message_id),
            )
        )
        return _catchup(session.name, reply)

    @translate_errors
    async def renew(self, name: str, stream_ids: list[str]) -> None:
        """Keep the places of a user's streams open on this worker."""
        until = int(self.clock() * 1000) + PLACE_MS
        await self._renew(keys=[keys.live_streams(name)], args=[until, *stream_ids])

    @translate_errors
    async def release(self, name: str, stream_ids: list[str]) -> None:
        """Give back the places of a user's streams that closed."""
        await self._renew(keys=[keys.live_streams(name)], args=[0, *stream_ids])
