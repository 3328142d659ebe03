"""Script calls auto-pipelined on one connection per Redis server per process, as ioredis's
auto-pipelining does.

Every script call made during one event-loop iteration goes out in one write per server, and
the replies of all the calls in flight are read in order and handed back. Under load the calls of
many concurrent requests share a round trip, a syscall and a wake-up: far less client time per
call than a pooled connection per call (see bench/RESULTS.md).

The connections are redis-py's own (`redis.asyncio.connection.Connection`, built from the
client's connection options), so the handshake honours everything redis-py does: passwords and
credential providers, the protocol version, TLS, the database, the client name. On a cluster,
each call goes to the master of its first key's slot by redis-py's own view of the slot map; a
call that meets a MOVED, ASK, TRYAGAIN or CLUSTERDOWN reply is run again through redis-py's
cluster client, which follows the redirection and refreshes the map.

Commands are packed by hiredis (redis-py's async connection packs them in Python) and one task per
connection writes every batch. Replies are read by redis-py's `read_response`, three coroutines per
reply: most of what this connection costs more than a hand-written protocol would (`make
instructions` counts it).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import hiredis
import redis.exceptions as rex
from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from storage.connection import CALL_TIMEOUT_SECONDS, Client, Monitor, bounded

ScriptCall = Callable[..., Awaitable[Any]]
# A call in flight: its script (None for a plain command), keys, arguments and the caller's future.
Call = tuple[AsyncScript | None, Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]
ConnectionFactory = Callable[[], AbstractConnection]
# redis-py's connections over a socket (the embedded store's is a subclass: no round trip to save).
_SOCKET_CLASSES = (Connection, SSLConnection, UnixDomainSocketConnection)
# Replies of a cluster node that mean "not here, not now": the call did not run and is run again
# through redis-py's cluster client.
REDIRECTIONS = (rex.MovedError, rex.AskError, rex.TryAgainError, rex.ClusterDownError)
# A script call that meets one of these is run again through redis-py (which loads the script).
_RUN_AGAIN = (rex.NoScriptError, *REDIRECTIONS)
# The pipelined connection keeps time itself (one watchdog per connection, not one timer per
# read or write) and is never retried: a failed call fails, and the next batch reconnects.
_LINE_OPTIONS = {"socket_timeout": None, "health_check_interval": 0, "retry": Retry(NoBackoff(), 0)}
# Calls run again go through redis-py's pools, which keep every connection a burst of them opened
# (a failover, a restart, a resharding). Once nothing has run again for this long, the pools' idle
# connections are closed: a worker's connections go back to what they were before the burst.
IDLE_POOL_SECONDS = 10.0


def connection_factory(
    connection_class: type[AbstractConnection], options: dict[str, Any]
) -> ConnectionFactory:
    """New unconnected redis-py connections with `options` (a pool's or a cluster node's),
    timed and retried by the line instead."""
    kwargs = {**options, **_LINE_OPTIONS}
    return lambda: connection_class(**kwargs)


def packer(connection: AbstractConnection) -> Callable[[tuple[Any, ...]], bytes]:
    """Packs one command (a tuple of its words) as `connection` would: hiredis's packer (in C)
    where the connection encodes text as UTF-8, strictly, which is redis-py's default; else the
    connection's own."""
    encoder = connection.encoder
    if codecs.lookup(encoder.encoding).name == "utf-8" and encoder.encoding_errors == "strict":
        return cast(Callable[[tuple[Any, ...]], bytes], hiredis.pack_command)
    pack = connection.pack_command
    return lambda args: b"".join(pack(*args))


def where(connection: AbstractConnection) -> str:
    """Where a connection goes, for messages: never its password."""
    path = getattr(connection, "path", "")
    return (
        str(path)
        if path
        else f"{getattr(connection, 'host', '?')}:{getattr(connection, 'port', '?')}"
    )


class Line:
    """One connection: writes batches of commands, resolves their futures in reply order.

    If Redis sends nothing for CALL_TIMEOUT_SECONDS while replies are due, the connection is
    dropped and every call in flight fails with a TimeoutError; a lost connection fails them
    with a ConnectionError. Either way the next batch opens a new connection.
    """

    def __init__(
        self,
        connection: AbstractConnection,
        on_retry: Callable[[Call], None],
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.connection = connection
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self._on_retry = on_retry
        self._on_lost = on_lost
        self._pending: deque[Call] = deque()
        self._progress = 0.0  # when Redis last answered, or the wait for it began
        self._watchdog: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._pack = packer(connection)
        self._outbox: list[bytes] = []  # commands packed, not yet handed to the socket
        self._wake: asyncio.Future[None] | None = None  # set while the writer waits for work
        self._reader = self._spawn(self._read())
        self._writer = self._spawn(self._write())

    def send(self, batch: Sequence[Call]) -> None:
        """Hand the batch to the writer, which writes it in one go with any other waiting; its
        replies resolve the futures in it."""
        pack = self._pack
        try:
            chunks = [
                pack(("EVALSHA", script.sha, len(keys), *keys, *args))
                if script is not None
                else pack(tuple(args))
                for script, keys, args, _ in batch
            ]
        except Exception:  # a call that cannot be sent fails alone; the others go out
            batch, chunks = self._pack_each(batch)
            if not batch:
                return
        if not self._pending:
            self._progress = self.loop.time()
        self._pending.extend(batch)
        if self._watchdog is None:
            self._watchdog = self.loop.call_at(self._progress + CALL_TIMEOUT_SECONDS, self._watch)
        self._outbox += chunks
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def close(self) -> None:
        """Close the connection; calls still in flight fail."""
        self._fail(rex.ConnectionError("the connection to Redis was closed"))

    def _pack_each(self, batch: Sequence[Call]) -> tuple[list[Call], list[bytes]]:
        """Pack the calls one by one: a call with a value that cannot be packed (text that is
        not UTF-8, a type Redis has no form for) fails at once with a DataError, and the calls
        that can be packed are returned with their packed commands."""
        calls: list[Call] = []
        chunks: list[bytes] = []
        for call in batch:
            script, keys, args, future = call
            try:
                words = ("EVALSHA", script.sha, len(keys), *keys, *args) if script else args
                chunks.append(self._pack(tuple(words)))
            except Exception as exc:
                if not future.done():
                    future.set_exception(
                        rex.DataError(f"a value of this call cannot be sent to Redis: {exc!r}")
                    )
                continue
            calls.append(call)
        return calls, chunks

    async def _write(self) -> None:
        # One task writes every batch (a task per batch costs more instructions per call);
        # the batches sent while it waits for the socket to drain go out together after.
        while True:
            if not self._outbox:
                self._wake = self.loop.create_future()
                await self._wake
                self._wake = None
            chunks, self._outbox = self._outbox, []
            try:
                await self.connection.send_packed_command(chunks, check_health=False)
            except Exception as exc:  # the connection is gone: every call in flight fails
                error = exc if isinstance(exc, rex.RedisError) else rex.ConnectionError(str(exc))
                self._fail(error)
                return

    async def _read(self) -> None:
        read = self.connection.read_response
        while True:
            try:
                reply: Any = await read(timeout=math.inf)
            except rex.ResponseError as error:  # an error reply: its call's, the line goes on
                reply = error
            except asyncio.CancelledError:
                raise
            except (rex.ConnectionError, rex.TimeoutError) as exc:
                self._fail(exc)
                return
            except Exception as exc:  # garbage: the stream cannot be trusted
                self._fail(rex.ConnectionError(f"unexpected data from Redis: {exc!r}"))
                return
            self._progress = self.loop.time()
            if not self._pending:  # a reply nobody asked for: the stream cannot be trusted
                self._fail(rex.ConnectionError(f"unexpected data from Redis: {reply!r}"))
                return
            self._deliver(self._pending.popleft(), reply)

    def _deliver(self, call: Call, reply: Any) -> None:
        future = call[3]
        if future.done():  # the caller gave up (its request was cancelled)
            return
        if call[0] is not None and isinstance(reply, _RUN_AGAIN):
            self._on_retry(call)
        elif isinstance(reply, Exception):
            future.set_exception(reply)
        else:
            future.set_result(reply)

    def _watch(self) -> None:
        self._watchdog = None
        if not self._pending:
            return
        deadline = self._progress + CALL_TIMEOUT_SECONDS
        if self.loop.time() >= deadline:
            self._fail(TimeoutError(f"Redis did not answer in {CALL_TIMEOUT_SECONDS} s"))
        else:
            self._watchdog = self.loop.call_at(deadline, self._watch)

    def _fail(self, error: Exception) -> None:
        if self.closed:
            return
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        pending, self._pending = self._pending, deque()
        for *_, future in pending:
            if not future.done():
                future.set_exception(error)
        # Replies still due would be read by nobody: the connection cannot be used again.
        self._reader.cancel()
        self._writer.cancel()
        self._spawn(self.connection.disconnect(nowait=True))
        if self._on_lost is not None:
            self._on_lost()

    def _spawn(self, coroutine: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)
        return task


async def open_line(
    connection: AbstractConnection,
    on_retry: Callable[[Call], None],
    on_lost: Callable[[], None] | None = None,
) -> Line:
    """Connect with redis-py's handshake; raise a redis ConnectionError (or, when Redis does
    not answer in time, a TimeoutError)."""
    try:
        async with asyncio.timeout(CALL_TIMEOUT_SECONDS):
            await connection.connect()
    except rex.AuthenticationError:
        raise
    except rex.ResponseError as exc:  # e.g. no such database: the set-up, not a request, failed
        await connection.disconnect(nowait=True)
        raise rex.ConnectionError(
            f"Redis at {where(connection)} refused the set-up: {exc}"
        ) from exc
    except Exception as exc:  # refused, unreachable, too slow, or not speaking RESP
        await connection.disconnect(nowait=True)
        raise rex.ConnectionError(f"cannot connect to Redis at {where(connection)}: {exc}") from exc
    return Line(connection, on_retry, on_lost)


class Link:
    """The line to one server, opened on demand and again after it was lost."""

    def __init__(
        self,
        new_connection: ConnectionFactory,
        on_retry: Callable[[Call], None],
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self._new_connection = new_connection
        self._on_retry = on_retry
        self._on_lost = on_lost
        self._line: Line | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._queue: list[Call] = []

    def send(self, batch: list[Call], loop: asyncio.AbstractEventLoop) -> bool:
        """Write `batch` now if the line is open (True), else queue it until it is."""
        line = self._line
        if line is not None and not line.closed and line.loop is loop:
            line.send(batch)
            return True
        self._queue += batch
        if self._connecting is None:  # else the connection being opened sends the queue
            self._connecting = asyncio.ensure_future(self._connect())
        return False

    async def _connect(self) -> None:
        try:
            self._line = await open_line(self._new_connection(), self._on_retry, self._on_lost)
        except Exception as exc:  # the calls waiting for this connection fail with it
            batch, self._queue = self._queue, []
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if self._on_lost is not None:
                self._on_lost()
            return
        finally:
            self._connecting = None
        batch, self._queue = self._queue, []
        if batch:
            self._line.send(batch)

    def close(self) -> None:
        """Close the line; a later batch opens a new one."""
        if self._line is not None:
            self._line.close()
            self._line = None


class AutoPipeline:
    """Queues the script calls of one loop iteration and sends them, one write per server."""

    def __init__(
        self,
        client: Client,
        monitor: Monitor | None = None,
        *,
        idle_pool_seconds: float = IDLE_POOL_SECONDS,
    ) -> None:
        self._queue: list[Call] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of the queued calls
        self._tasks: set[asyncio.Task[None]] = set()
        self.monitor = monitor  # hears of every batch written
        self._on_pools = 0  # calls run again and map refreshes going on through redis-py
        self._idle_pool_seconds = idle_pool_seconds
        self._closing_idle: asyncio.TimerHandle | None = None
        if isinstance(client, RedisCluster):
            self._cluster: RedisCluster | None = client
            self._links: dict[str, Link] = {}
            self._refreshing: asyncio.Task[None] | None = None
        else:
            # No reference to the client itself: the pipeline never keeps it alive.
            self._cluster = None
            self._pool = client.connection_pool
            self._link = Link(
                connection_factory(self._pool.connection_class, self._pool.connection_kwargs),
                self._retry,
            )

    def call(
        self, script: AsyncScript | None, keys: Sequence[Any], args: Sequence[Any]
    ) -> Awaitable[Any]:
        """Queue one EVALSHA (or, with no script, the command `args`) for the batch written at
        the end of this loop iteration."""
        if self._queue:
            loop = cast(asyncio.AbstractEventLoop, self._loop)
        else:
            # Once per batch: CPython 3.11 makes a getpid() syscall in every get_running_loop().
            loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._flush)
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((script, keys, args, future))
        return future

    async def aclose(self) -> None:
        """Close the lines; a later call opens new ones."""
        self._cancel_closing_idle()
        if self._cluster is None:
            self._link.close()
            return
        for link in self._links.values():
            link.close()
        self._links.clear()

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        loop = cast(asyncio.AbstractEventLoop, self._loop)
        if self._cluster is None:
            self._link.send(batch, loop)
            self._sent(len(batch))
            return
        by_node: dict[str, list[Call]] = {}
        for call in batch:
            try:
                name = self._node(call).name
            except Exception:  # no node for the slot (the map is being read): redis-py decides
                self._retry(call)
                continue
            by_node.setdefault(name, []).append(call)
        for name, calls in by_node.items():
            self._link_to(name).send(calls, loop)
            self._sent(len(calls))

    def _sent(self, calls: int) -> None:
        if self.monitor is not None and self.monitor.on_round_trip is not None:
            self.monitor.on_round_trip(calls)

    def _node(self, call: Call) -> ClusterNode:
        cluster = cast(RedisCluster, self._cluster)
        keys = call[1]
        if not keys:
            raise LookupError("a call without keys has no slot")
        node = cluster.get_node_from_key(keys[0])
        if node is None:
            raise LookupError("no node serves the slot")
        return node

    def _link_to(self, name: str) -> Link:
        link = self._links.get(name)
        if link is None:
            cluster = cast(RedisCluster, self._cluster)
            node = cluster.get_node(node_name=name)
            assert node is not None
            factory = connection_factory(node.connection_class, node.connection_kwargs)
            link = self._links[name] = Link(factory, self._retry, self._refresh_map)
        return link

    def _refresh_map(self) -> None:
        # A node was lost: a replica may be taking over its slots. Re-read the map once.
        if self._cluster is None or self._refreshing is not None:
            return
        cluster = self._cluster

        async def refresh() -> None:
            try:
                await bounded(cluster.nodes_manager.initialize())
            except Exception:  # noqa: S110 (still down: the next loss tries again)
                pass
            finally:
                self._refreshing = None

        self._refreshing = self._spawn_on_pools(refresh())

    def _retry(self, call: Call) -> None:
        # Run the call through redis-py itself: it loads a script Redis lost (a restart, SCRIPT
        # FLUSH), and on a cluster follows MOVED and ASK and waits out TRYAGAIN.
        script, keys, args, future = call
        assert script is not None

        async def run() -> None:
            try:
                result = await bounded(script(keys=keys, args=args))
            except (AttributeError, TypeError) as exc:
                # redis-py 8.1 lets a write to a connection closed under the call escape as these
                # (redis/redis-py#4287, fixed in 8.2 by #4288; 8.1's cluster client also closes
                # every connection on CLUSTERDOWN while others use them): the connection was
                # lost, not the request wrong.
                if not future.done():
                    lost = rex.ConnectionError(f"the connection was closed under the call: {exc}")
                    lost.__cause__ = exc
                    future.set_exception(lost)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)

        self._spawn_on_pools(run())

    def _spawn_on_pools(self, coroutine: Awaitable[None]) -> asyncio.Task[None]:
        # Work done through redis-py's pools: their idle connections are closed when it is over.
        self._on_pools += 1
        self._cancel_closing_idle()
        task = self._spawn(coroutine)
        task.add_done_callback(self._off_pools)
        return task

    def _cancel_closing_idle(self) -> None:
        if self._closing_idle is not None:
            self._closing_idle.cancel()
            self._closing_idle = None

    def _off_pools(self, _: asyncio.Task[None]) -> None:
        self._on_pools -= 1
        if not self._on_pools:
            self._closing_idle = asyncio.get_running_loop().call_later(
                self._idle_pool_seconds, self._close_idle
            )

    def _close_idle(self) -> None:
        self._closing_idle = None

        async def close() -> None:
            # Closed sockets only: the pools keep the connections and reopen them on use.
            if self._cluster is not None:
                # The startup nodes are objects of their own, each with a pool (CLUSTER SLOTS).
                manager = self._cluster.nodes_manager
                found = [*manager.nodes_cache.values(), *manager.startup_nodes.values()]
                nodes = list({id(node): node for node in found}.values())
                await asyncio.gather(
                    *(node.disconnect_free_connections() for node in nodes),
                    return_exceptions=True,
                )
            else:
                with contextlib.suppress(Exception):
                    await self._pool.disconnect(inuse_connections=False)

        self._spawn(close())

    def _spawn(self, coroutine: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)
        return task


def auto_pipeline(
    client: Client, monitor: Monitor | None = None, *, idle_pool_seconds: float = IDLE_POOL_SECONDS
) -> AutoPipeline | None:
    """An auto-pipeline for a client on sockets, plain or cluster (one per process: the Services
    own it); None for the embedded store (no round trip to save). `monitor` hears of every
    batch."""
    if not isinstance(client, RedisCluster) and (
        client.connection_pool.connection_class not in _SOCKET_CLASSES
    ):
        return None
    return AutoPipeline(client, monitor, idle_pool_seconds=idle_pool_seconds)


def register_script(
    client: Client,
    source: str,
    *,
    pipeline: AutoPipeline | None = None,
    monitor: Monitor | None = None,
) -> ScriptCall:
    """A Lua script to call as `await script(keys=[...], args=[...])`: queued on `pipeline` when
    there is one, else called directly, each call a round trip that `monitor` hears of."""
    script = client.register_script(source)
    if pipeline is None:

        def direct(*, keys: Sequence[Any], args: Sequence[Any]) -> Awaitable[Any]:
            if monitor is not None and monitor.on_round_trip is not None:
                monitor.on_round_trip(1)
            return bounded(script(keys=keys, args=args))

        return direct
    batcher = pipeline

    def call(*, keys: Sequence[Any], args: Sequence[Any]) -> Awaitable[Any]:
        return batcher.call(script, keys, args)

    return call
