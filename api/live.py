"""Live delivery: every message that enters a user's history, pushed to each of their open
streams (SSE and WebSocket) on every worker and instance, with gap-free resume.

Each worker has one Hub. A stream is registered before its user's channel is subscribed (on the
worker's one connection to the channel's node) and before the history is read for where it
starts, so a message published at any moment is either in what was read or heard live; each
event carries its number in the user's history, and a stream drops numbers it has and fetches
from the history any it missed (a gap: pub/sub lost a message while a connection was down, or
the subscriber was resubscribed). A session's end is published on the same channel and ends its
streams; so does the token's expiry, by a timer. A client that does not read fills its stream's
queue (EVENT_QUEUE events beyond what a resume replays) and the stream is closed: its reconnect
resumes. A stream no transport has claimed within CLAIM_SECONDS of its opening (a WebSocket whose
handshake failed, a client gone meanwhile) is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from api.metrics import Metrics
from api.security import TokenClaims
from api.views import message_view
from storage import keys
from storage.connection import Client
from storage.errors import SessionInvalid, StorageUnavailable
from storage.live import RENEW_SECONDS, Catchup, LiveStore
from storage.models import Message, Session
from storage.pubsub import Subscriber

logger = logging.getLogger("api.live")

EVENT_QUEUE = 256
CLAIM_SECONDS = 10.0
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_.-]{0,64}")
HEARTBEAT_SECONDS = 15.0
_CHANNEL_PREFIX, _CHANNEL_SUFFIX = keys.channel("\0").split("\0")


class Busy(Exception):
    """This worker has as many streams open as it may."""


@dataclass(frozen=True, slots=True)
class Event:
    """What a stream sends: `message` (its event id and the message as JSON), `reset` (the
    history no longer holds what the client missed: refetch it) or `end` (the session ended);
    `close` and `ping` (a heartbeat is due) tell the transport what to do."""

    kind: str
    event_id: str = ""
    data: bytes = b"{}"


def event_id(number: int, message_id: str) -> str:
    """A message's event id in its user's stream: its number, then its id (checked on resume;
    empty in a `reset`'s, which names only where the stream stands)."""
    return f"{number}-{message_id}"


def parse_event_id(value: str) -> tuple[int, str] | None:
    """(number, message id) of an event id, None if it is not one."""
    number, dash, message_id = value.partition("-")
    if not (dash and number.isascii() and number.isdigit() and len(number) <= 18):
        return None
    if not _MESSAGE_ID.fullmatch(message_id):  # base64url, or a legacy ".<number>"
        return None
    return int(number), message_id


def _seconds_since(sent_at: str) -> float:
    try:
        sent = datetime.fromisoformat(sent_at).timestamp()
    except ValueError:
        return 0.0
    return max(0.0, time.time() - sent)


class Stream:
    """One client's open stream: a bounded queue of events, in the order of its user's history."""

    def __init__(self, hub: Hub, session: Session, claims: TokenClaims, transport: str) -> None:
        self.hub = hub
        self.session = session
        self.user = session.name
        self.family = session.family
        self.transport = transport
        self.id = secrets.token_urlsafe(9)
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.closed: str | None = None  # why, once it is
        self.last = (0, "")  # the number and message id of the newest message it has
        self._started = False
        self._buffered: list[tuple[int, bytes]] = []
        self._filling = False
        self._gap = False
        # How the transport drops its connection at once: for a client that does not read, the
        # transport is stuck writing to it and cannot say goodbye.
        self.abort: Callable[[], object] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        loop = self._loop = asyncio.get_running_loop()
        deadline = claims.expires_at + hub.leeway
        self._expiry = loop.call_at(
            loop.time() + max(0.0, deadline - time.time()), self.end, "expired"
        )
        # The heartbeat: one timer per stream, moved on only when it fires (an asyncio.timeout
        # around every wait for an event would arm and cancel a timer per event).
        self._beat: asyncio.TimerHandle | None = None
        self._quiet = 0.0
        self._waiting_since = 0.0
        # Events of a resume's replay in the queue: the slow-client bound is on top of them.
        self._replayed = 0
        # While the transport waits for an event, one may be written at once (`attach`).
        self._idle = False
        self._direct: Callable[[Event], bool] | None = None
        self._unclaimed: asyncio.TimerHandle | None = loop.call_later(
            CLAIM_SECONDS, hub.release, self
        )

    # What arrives.

    def start(self, catchup: Catchup) -> None:
        """Begin with what the history says (the missed messages, or a reset), then whatever was
        heard meanwhile."""
        self._started = True
        if catchup.reset:
            self._put(Event("reset", event_id(catchup.top, "")), replay=True)
            self.last = (catchup.top, "")
        else:
            self.last = (catchup.top - len(catchup.messages), "")
            for message in catchup.messages:
                self._deliver_message(message)
            self.last = (catchup.top, self.last[1])
        buffered, self._buffered = self._buffered, []
        for number, entry in buffered:
            self.offer(number, entry)

    def offer(self, number: int, entry: bytes) -> None:
        """A message heard live: delivered if it is the next one, dropped if the stream has it,
        fetched with those before it from the history if some are missing."""
        if self.closed is not None:
            return
        if not self._started or self._filling:
            if number > self.last[0]:
                self._buffered.append((number, entry))
                if len(self._buffered) > EVENT_QUEUE:  # a burst: the history has them all
                    self._buffered.clear()
                    self._gap = True
            return
        if number <= self.last[0]:
            return
        if number > self.last[0] + 1:
            self.catch_up()
            return
        message = orjson.loads(entry)
        self.last = (number, message["id"])
        self.hub.observe_delivery(message["sent_at"])
        self._put(Event("message", event_id(number, message["id"]), entry))

    def catch_up(self) -> None:
        """Fetch from the history what this stream missed (once at a time)."""
        if self._filling or self.closed is not None:
            self._gap = True
            return
        self._filling = True
        self.hub.spawn(self._catch_up())

    async def _catch_up(self) -> None:
        try:
            while True:
                self._gap = False
                number, message_id = self.last
                try:
                    catchup = await self.hub.store.since(self.session, number, message_id)
                except SessionInvalid:
                    self.end("ended")
                    return
                except StorageUnavailable:
                    await asyncio.sleep(0.5)
                    self._gap = True
                    if self.closed is not None:
                        return
                    continue
                if catchup.reset:
                    self._put(Event("reset", event_id(catchup.top, "")), replay=True)
                    self.last = (catchup.top, "")
                else:
                    for message in catchup.messages:
                        if message.seq > self.last[0]:
                            self._deliver_message(message)
                buffered, self._buffered = self._buffered, []
                for entry_number, entry in buffered:
                    if entry_number == self.last[0] + 1:
                        message = orjson.loads(entry)
                        self.last = (entry_number, message["id"])
                        event = Event("message", event_id(entry_number, message["id"]), entry)
                        self._put(event, replay=True)
                    elif entry_number > self.last[0]:
                        self._gap = True
                if not self._gap or self.closed is not None:
                    return
        finally:
            self._filling = False

    def _deliver_message(self, message: Message) -> None:
        self.last = (message.seq, message.id)
        data = orjson.dumps(message_view(message))
        self._put(Event("message", event_id(message.seq, message.id), data), replay=True)

    def _put(self, event: Event, *, replay: bool = False) -> None:
        if self.closed is not None:
            return
        if replay:  # from the history: as many as the client missed (the history is capped)
            self._replayed += 1
        elif (
            self._idle
            and self._direct is not None
            and event.kind == "message"
            and self.queue.empty()
            and self._direct(event)
        ):
            # Written at once: the transport waits for nothing, and nothing is ahead of it.
            self._waiting_since = self._loop.time()
            self.hub.count("live_events_delivered", self.transport)
            return
        elif self.queue.qsize() >= EVENT_QUEUE + self._replayed:  # a client that does not read
            self.close("slow")
            if self.abort is not None:
                self.abort()
            return
        self.queue.put_nowait(event)
        if event.kind == "message":
            self.hub.count("live_events_delivered", self.transport)

    # How it ends.

    def end(self, reason: str) -> None:
        """The session ended (or its token expired): an `end` event, then the stream closes."""
        if self.closed is not None:
            return
        self.queue.put_nowait(Event("end"))
        self.close(reason)

    def close(self, reason: str) -> None:
        """Close the stream (the transport finishes what is queued up to the close)."""
        if self.closed is not None:
            return
        self.closed = reason
        self.cancel_timers()
        self.queue.put_nowait(Event("close"))
        self.hub.count("live_streams_closed", reason)

    def attach(
        self, abort: Callable[[], object], direct: Callable[[Event], bool] | None = None
    ) -> None:
        """The transport takes the stream (it releases it when done); `abort` drops the
        connection at once; `direct`, if given, writes a message event at once while the
        transport waits for the next event (False when it cannot: the client is behind)."""
        self.abort = abort
        self._direct = direct
        if self._unclaimed is not None:
            self._unclaimed.cancel()
            self._unclaimed = None

    @property
    def attached(self) -> bool:
        """Whether a transport has taken the stream."""
        return self._unclaimed is None

    def cancel_timers(self) -> None:
        """Stop the token's expiry, the heartbeat and the claim deadline (the stream is closed
        or never opened)."""
        for timer in (self._expiry, self._beat, self._unclaimed):
            if timer is not None:
                timer.cancel()
        self._expiry = self._beat = self._unclaimed = None

    async def next(self, quiet: float) -> Event | None:
        """The next event to send, or None after `quiet` seconds of nothing (a heartbeat)."""
        self._waiting_since = self._loop.time()
        self._quiet = quiet
        if self.queue.empty():
            self._replayed = 0
        if self._beat is None and self.closed is None:
            self._beat = self._loop.call_at(self._waiting_since + quiet, self._beat_due)
        self._idle = True
        try:
            event = await self.queue.get()
        finally:
            self._idle = False
        return None if event.kind == "ping" else event

    def next_nowait(self) -> Event | None:
        """The next event already queued, if any (heartbeats skipped: data is going out)."""
        while not self.queue.empty():
            event = self.queue.get_nowait()
            if event.kind != "ping":
                return event
        return None

    def _beat_due(self) -> None:
        due = self._waiting_since + self._quiet
        now = self._loop.time()
        if now >= due:  # nothing was handed over for `quiet` seconds
            self._put(Event("ping"))
            self._waiting_since, due = now, now + self._quiet
        self._beat = self._loop.call_at(due, self._beat_due) if self.closed is None else None


class Hub:
    """A worker's streams, by user, and its one subscriber."""

    def __init__(
        self,
        client: Client,
        store: LiveStore,
        *,
        max_connections: int,
        leeway: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.leeway = leeway
        self.max_connections = max_connections
        self.metrics = metrics
        self._streams: dict[str, set[Stream]] = {}
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._open = 0
        self._by_transport = {"sse": 0, "ws": 0}
        self.subscriber = Subscriber(client, self._on_message, self._on_resync)
        self._renewing: asyncio.Task[None] | None = None
        if metrics is not None:
            for transport in self._by_transport:
                metrics.gauge("live_streams", self._open_streams(transport), (transport,))

    def _open_streams(self, transport: str) -> Callable[[], float]:
        return lambda: self._by_transport[transport]

    @property
    def healthy(self) -> bool:
        """False while the subscriber cannot reach a node it needs."""
        return self.subscriber.healthy

    async def open(
        self, session: Session, claims: TokenClaims, transport: str, after: tuple[int, str] | None
    ) -> Stream:
        """Open a stream of the session's user: registered and subscribed first, then started
        where the history says (raise Busy, StreamsFull, a SessionInvalid error or
        StorageUnavailable instead, with nothing left behind)."""
        if self._open >= self.max_connections:
            self.count("live_streams_refused", "busy")
            raise Busy
        stream = Stream(self, session, claims, transport)
        self._add(stream)
        try:
            await self._subscribe(stream.user)
            catchup = await self.store.open(session, stream.id, after)
        except BaseException as exc:
            reason = type(exc).__name__
            self.count("live_streams_refused", reason)
            stream.closed = "refused"
            # Cancelled (the client left) or cut off while the place may have been taken: give
            # it back, or it would count against the user until it lapsed.
            uncertain = isinstance(exc, asyncio.CancelledError | StorageUnavailable)
            self._remove(stream, release=uncertain)
            stream.cancel_timers()
            raise
        stream.start(catchup)
        if catchup.reset:
            self.count("live_streams_reset", transport)
        self._ensure_renewing()
        return stream

    def release(self, stream: Stream) -> None:
        """A stream's transport has finished: forget it, give back its place."""
        if stream.closed is None:
            stream.close("client")
        self._remove(stream, release=True)

    def shutdown(self) -> None:
        """Close every stream (the service is stopping: clients reconnect elsewhere)."""
        for streams in list(self._streams.values()):
            for stream in list(streams):
                stream.close("shutdown")

    async def aclose(self) -> None:
        """Stop the subscriber and the background work."""
        self.shutdown()
        if self._renewing is not None:
            self._renewing.cancel()
        await self.subscriber.aclose()
        for task in list(self._tasks):
            task.cancel()

    def count(self, name: str, label: str) -> None:
        """Add one to a labelled counter of the metrics."""
        if self.metrics is not None:
            self.metrics.inc(name, (label,))

    def observe_delivery(self, sent_at: str) -> None:
        """Record how long a message took from being sent to reaching a stream's queue."""
        if self.metrics is not None:
            self.metrics.observe("live_delivery_seconds", _seconds_since(sent_at))

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine in a task the hub keeps until it is done."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Bookkeeping.

    def _add(self, stream: Stream) -> None:
        self._streams.setdefault(stream.user, set()).add(stream)
        self._open += 1
        self._by_transport[stream.transport] += 1

    def _remove(self, stream: Stream, *, release: bool) -> None:
        streams = self._streams.get(stream.user)
        if streams is None or stream not in streams:
            return
        streams.discard(stream)
        self._open -= 1
        self._by_transport[stream.transport] -= 1
        if not streams:
            del self._streams[stream.user]
            self.spawn(self._unsubscribe_if_idle(stream.user))
        if release:
            self.spawn(self._release_place(stream.user, stream.id))

    async def _release_place(self, user: str, stream_id: str) -> None:
        with contextlib.suppress(StorageUnavailable):  # the place then lapses by itself
            await self.store.release(user, [stream_id])

    async def _subscribe(self, user: str) -> None:
        """Subscribe the user's channel, once for all the opens that ask at the same time: in a
        task of the hub's, so one client leaving meanwhile fails nobody else's open."""
        pending = self._subscribing.get(user)
        if pending is None:
            pending = self._subscribing[user] = asyncio.ensure_future(self._subscribe_now(user))
            pending.add_done_callback(lambda done: self._subscribed(user, done))
        await asyncio.shield(pending)

    async def _subscribe_now(self, user: str) -> None:
        try:
            await self.subscriber.subscribe(keys.channel(user))
        except StorageUnavailable:
            raise
        except Exception as exc:  # whatever Redis said: the stream cannot open now
            raise StorageUnavailable(str(exc)) from exc

    def _subscribed(self, user: str, done: asyncio.Future[None]) -> None:
        if self._subscribing.get(user) is done:
            del self._subscribing[user]
        if not done.cancelled():
            done.exception()  # retrieved: the opens waiting for it raise it themselves

    async def _unsubscribe_if_idle(self, user: str) -> None:
        if user not in self._streams:
            with contextlib.suppress(Exception):
                await self.subscriber.unsubscribe(keys.channel(user))

    def _ensure_renewing(self) -> None:
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.ensure_future(self._renew_forever())

    async def _renew_forever(self) -> None:
        while self._streams:
            await asyncio.sleep(RENEW_SECONDS)
            for user, streams in list(self._streams.items()):
                with contextlib.suppress(StorageUnavailable):
                    await self.store.renew(user, [s.id for s in streams])

    # What the subscriber hears.

    def _on_message(self, channel: str, data: str) -> None:
        user = channel[len(_CHANNEL_PREFIX) : len(channel) - len(_CHANNEL_SUFFIX)]
        streams = self._streams.get(user)
        if not streams:
            return
        if data.startswith("end "):
            family = data[4:]
            for stream in list(streams):
                if family == "*" or stream.family == family:
                    stream.end("ended")
            return
        number, _, entry = data.partition(" ")
        if not number.isdigit():
            return
        payload = entry.encode()
        for stream in list(streams):
            stream.offer(int(number), payload)

    def _on_resync(self, channels: Iterable[str]) -> None:
        for channel in channels:
            user = channel[len(_CHANNEL_PREFIX) : len(channel) - len(_CHANNEL_SUFFIX)]
            for stream in list(self._streams.get(user, ())):
                stream.catch_up()
