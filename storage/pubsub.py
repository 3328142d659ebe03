"""Subscriptions to users' channels: one connection per Redis node, per worker.

The scripts that write a user's history publish on the user's channel (`events:{<name>}`, in the
user's cluster slot) with SPUBLISH: sharded pub/sub, which on a cluster stays on the node that
owns the slot, and on one Redis (or the embedded store) is plain pub/sub. A worker subscribes a
user's channel while a stream of that user is open on it, on the one connection it holds to the
node that owns the channel's slot (never a connection per client), and unsubscribes when the
last stream closes.

Pub/sub delivers at most once: a message published while a connection is down is lost to it.
So whenever a node's connection is (re)made, or Redis moves a channel (a reshard, a failover),
the subscriber resubscribes by itself and says which channels to `on_resync`: their streams catch
up from the history. A connection that stops answering is found by a PING when it has been
quiet, and made anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import redis.exceptions as rex
from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from storage.connection import CALL_TIMEOUT_SECONDS, Client, bounded, unavailable_reason
from storage.errors import StorageUnavailable

logger = logging.getLogger("storage")

# A quiet connection is asked a PING after this long, and made anew if nothing at all comes back
# within CALL_TIMEOUT_SECONDS more.
QUIET_SECONDS = 5.0
# Between attempts to reach a node that cannot be reached: doubling up to the cap.
RETRY_SECONDS = 0.1
RETRY_CAP_SECONDS = 2.0
_LOST = (rex.ConnectionError, rex.TimeoutError, TimeoutError, OSError)

OnMessage = Callable[[str, str], None]
OnResync = Callable[[Iterable[str]], None]


class _Node:
    """The connection to one node and the channels subscribed on it."""

    def __init__(
        self,
        name: str,
        client: Redis,
        subscriber: Subscriber,
    ) -> None:
        self.name = name
        self.client = client
        self.channels: set[str] = set()
        self._subscriber = subscriber
        self._pubsub: PubSub | None = None
        self._pending: dict[str, asyncio.Future[None]] = {}
        # Unsubscriptions asked for, whose confirmations have not come yet, by channel.
        self._leaving: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.healthy = True
        self._heard = time.monotonic()

    async def subscribe(self, channel: str) -> None:
        self.channels.add(channel)
        waiter = self._pending.get(channel)
        if waiter is None:
            waiter = self._pending[channel] = asyncio.get_running_loop().create_future()
            if self._pubsub is not None and self.healthy:
                try:
                    await bounded(self._pubsub.ssubscribe(channel))
                except _LOST:
                    self._lost()
        self._start()
        await asyncio.shield(waiter)

    async def unsubscribe(self, channel: str) -> None:
        self.channels.discard(channel)
        waiter = self._pending.pop(channel, None)
        if waiter is not None and not waiter.done():
            waiter.cancel()
        if self._pubsub is not None and self.healthy:
            self._leaving[channel] = self._leaving.get(channel, 0) + 1
            with contextlib.suppress(*_LOST):
                await bounded(self._pubsub.sunsubscribe(channel))

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            await self._serve()
            # No channel left: the connection goes, unless one was subscribed meanwhile.
            pubsub, self._pubsub = self._pubsub, None
            if pubsub is not None:
                await _close_quietly(pubsub)
            if not (self.channels or self._pending):
                return

    async def _serve(self) -> None:
        delay = RETRY_SECONDS
        while self.channels or self._pending:
            try:
                if self._pubsub is None:
                    self._pubsub = await self._connect()
                    self._heard = time.monotonic()
                    if not self.healthy:
                        self.healthy = True
                        self._subscriber._node_back(self)
                    delay = RETRY_SECONDS
                await self._read(self._pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = unavailable_reason(exc)
                if isinstance(exc, rex.MovedError | rex.AskError) or (
                    reason is None and isinstance(exc, rex.ResponseError)
                ):
                    # The node does not serve a channel of it any more: the map is old.
                    await self._subscriber._moved(self)
                    continue
                self._lost()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP_SECONDS)

    async def _connect(self) -> PubSub:
        """A new connection, subscribed to every channel wanted by the time it is handed over.

        Nobody else may send on it before: redis-py's PubSub takes a pool connection for each
        caller that finds it unconnected, so subscribes racing its connection would each open
        one, of which it keeps only the last (the others' confirmations never come, and the
        connections leak). So it is published only once connected and caught up, with no await
        between the last check and the hand-over; from then on `subscribe` sends on it.
        """
        pubsub = self.client.pubsub()
        try:
            await bounded(pubsub.connect())  # type: ignore[no-untyped-call]
            sent: set[str] = set()
            while True:
                missing = [channel for channel in self.channels if channel not in sent]
                left = [channel for channel in sent if channel not in self.channels]
                if not (missing or left):
                    return pubsub
                for channel in missing:
                    await bounded(pubsub.ssubscribe(channel))
                    sent.add(channel)
                for channel in left:  # its streams closed while the connection was made
                    self._leaving[channel] = self._leaving.get(channel, 0) + 1
                    await bounded(pubsub.sunsubscribe(channel))
                    sent.discard(channel)
        except BaseException:
            self._subscriber.spawn(_close_quietly(pubsub))
            raise

    async def _read(self, pubsub: PubSub) -> None:
        connection = pubsub.connection
        if connection is None:
            raise rex.ConnectionError("the subscriber's connection is closed")
        on_message = self._subscriber.on_message
        while self.channels or self._pending:
            quiet = time.monotonic() - self._heard
            if quiet > QUIET_SECONDS + CALL_TIMEOUT_SECONDS:
                raise rex.TimeoutError("the subscriber's connection stopped answering")
            if quiet > QUIET_SECONDS:
                await bounded(pubsub.ping())
            # The connection's own read, not PubSub.get_message: a published message is what
            # arrives most, and get_message's layers (a retry wrapper, a message dict, telemetry)
            # cost it more than the rest of its delivery. Everything else (confirmations, PONGs)
            # still goes through handle_message, which keeps the PubSub's books.
            response = await connection.read_response(timeout=1.0)
            if response is None:
                continue
            self._heard = time.monotonic()
            if type(response) is list and len(response) == 3 and response[0] == "smessage":
                on_message(_text(response[1]), _text(response[2]))
                continue
            message = await pubsub.handle_message(response)
            if message is not None:
                self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = _text(message["channel"]) if message["channel"] is not None else ""
        if kind == "smessage":
            self._subscriber.on_message(channel, _text(message["data"]))
        elif kind == "ssubscribe":
            waiter = self._pending.pop(channel, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif kind == "sunsubscribe":
            leaving = self._leaving.get(channel, 0)
            if leaving:
                if leaving == 1:
                    del self._leaving[channel]
                else:
                    self._leaving[channel] = leaving - 1
            elif channel in self.channels:
                # Not asked for: Redis moved the channel's slot away (a reshard, a failover).
                self.channels.discard(channel)
                self._subscriber._rehome(channel)

    def _lost(self) -> None:
        self._leaving.clear()  # a new connection has no unsubscriptions under way
        if self.healthy:
            self.healthy = False
            self._subscriber._node_lost(self)
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            self._subscriber.spawn(_close_quietly(pubsub))
        # The subscriptions asked for are made again when the connection is.
        for channel in list(self._pending):
            self.channels.add(channel)

    async def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await _close_quietly(pubsub)
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.cancel()
        self._pending.clear()

    async def stop(self) -> None:
        self.channels.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.close()


async def _close_quietly(pubsub: PubSub) -> None:
    with contextlib.suppress(Exception):
        await pubsub.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Subscriber:
    """A worker's subscriptions to users' channels, one connection per node."""

    def __init__(
        self,
        client: Client,
        on_message: OnMessage,
        on_resync: OnResync,
    ) -> None:
        self._client = client
        self.on_message = on_message
        self._on_resync = on_resync
        self._nodes: dict[str, _Node] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def healthy(self) -> bool:
        """False while a node that has channels of this worker cannot be reached."""
        return all(node.healthy for node in self._nodes.values() if node.channels)

    async def subscribe(self, channel: str) -> None:
        """Subscribe `channel` and wait until Redis confirms it (StorageUnavailable if Redis does
        not within CALL_TIMEOUT_SECONDS)."""
        try:
            async with asyncio.timeout(CALL_TIMEOUT_SECONDS):
                await self._node_of(channel).subscribe(channel)
        except (TimeoutError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and asyncio.current_task() is not None:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            raise StorageUnavailable("the subscription was not confirmed") from exc

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving `channel`."""
        for node in self._nodes.values():
            if channel in node.channels:
                await node.unsubscribe(channel)

    async def aclose(self) -> None:
        """Close every connection."""
        nodes, self._nodes = list(self._nodes.values()), {}
        await asyncio.gather(*(node.stop() for node in nodes))
        for task in list(self._tasks):
            task.cancel()

    def _node_of(self, channel: str) -> _Node:
        client = self._client
        if not isinstance(client, RedisCluster):
            pool = client.connection_pool
            return self._node(
                "redis", lambda: _own_client(pool.connection_class, pool.connection_kwargs)
            )
        node = client.get_node_from_key(channel)
        if node is None:
            raise StorageUnavailable("no node serves the channel's slot")
        return self._node(
            node.name, lambda: _own_client(node.connection_class, node.connection_kwargs)
        )

    def _node(self, name: str, make: Callable[[], Redis]) -> _Node:
        node = self._nodes.get(name)
        if node is None:
            node = self._nodes[name] = _Node(name, make(), self)
        return node

    # What the nodes tell.

    def _node_lost(self, node: _Node) -> None:
        logger.warning("the subscriber lost Redis at %s; resubscribing", node.name)
        if isinstance(self._client, RedisCluster):
            self._refresh_map()

    def _node_back(self, node: _Node) -> None:
        logger.info("the subscriber reached Redis at %s again", node.name)
        self._on_resync(list(node.channels))

    async def _moved(self, node: _Node) -> None:
        await self._refresh()
        channels = list(node.channels)
        node.channels.clear()
        for channel in channels:
            self._rehome(channel)

    def _rehome(self, channel: str) -> None:
        """Subscribe a channel Redis moved on the node that serves it now, then resync it."""

        async def rehome() -> None:
            for attempt in range(10):
                try:
                    await self._refresh()
                    await self.subscribe(channel)
                    self._on_resync([channel])
                    return
                except (StorageUnavailable, *_LOST):
                    await asyncio.sleep(RETRY_SECONDS * (attempt + 1))
            logger.warning("could not resubscribe %s after it moved", channel)

        self.spawn(rehome())

    def _refresh_map(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = self.spawn(self._refresh())

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `work` in a task the subscriber keeps a reference to until it is done."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _refresh(self) -> None:
        if isinstance(self._client, RedisCluster):
            with contextlib.suppress(Exception):
                await bounded(self._client.nodes_manager.initialize())


def _own_client(connection_class: Any, options: dict[str, Any]) -> Redis:
    """A client of the subscriber's own, with a server's (or a cluster node's) connection
    options, that never retries by itself: a connection lost must be seen, to resync."""
    # RESP2: a published message is then a plain reply, not a RESP3 push frame, which redis-py
    # passes through a handler of its own (a logger looked up per message) before it returns it.
    # (RESP3's maintenance notifications go with it: this connection only listens.)
    kwargs = {**options, "retry": Retry(NoBackoff(), 0), "protocol": 2}
    kwargs.pop("maint_notifications_config", None)
    kwargs.pop("oss_cluster_maint_notifications_handler", None)
    return Redis(connection_pool=ConnectionPool(connection_class=connection_class, **kwargs))
