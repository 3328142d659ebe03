"""Script calls auto-pipelined on one connection per process, as ioredis's auto-pipelining does.

Every script call made during one event-loop iteration goes out in one write, and the replies of
all the calls in flight are read by one protocol object and handed back in order. Under load the
calls of many concurrent requests share a round trip, a syscall and a wake-up: far less client
time per call than a pooled connection per call (see bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis
import redis.exceptions as rex
from redis._parsers import BaseParser
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.commands.core import AsyncScript

from storage.connection import (
    CALL_TIMEOUT_SECONDS,
    SOCKET_TIMEOUT_SECONDS,
    Client,
    Monitor,
    bounded,
)

ScriptCall = Callable[..., Awaitable[Any]]
# A call in flight: its script (None for a plain command), keys, arguments and the caller's future.
Call = tuple[AsyncScript | None, Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]

_SOCKET_CLASSES = (Connection, SSLConnection, UnixDomainSocketConnection)


@dataclass(frozen=True)
class Address:
    """Where and how to connect: what redis-py made of the client's URL."""

    host: str = ""
    port: int = 0
    path: str = ""  # a Unix socket, instead of host and port
    tls: ssl.SSLContext | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    client_name: str | None = None

    @classmethod
    def of(cls, client: Redis) -> Address:
        """The address of a plain client's connection pool."""
        pool = client.connection_pool
        # An unconnected connection object: redis-py's own reading of the URL's options.
        template = pool.connection_class(**pool.connection_kwargs)
        return cls(
            host=getattr(template, "host", ""),
            port=getattr(template, "port", 0),
            path=getattr(template, "path", ""),
            tls=template.ssl_context.get() if isinstance(template, SSLConnection) else None,
            db=int(template.db),
            username=template.username,
            password=template.password,
            client_name=template.client_name,
        )

    def handshake(self) -> list[tuple[Any, ...]]:
        """The commands a new connection sends first (none for db 0 without a password)."""
        commands: list[tuple[Any, ...]] = []
        if self.password is not None:
            user = (self.username,) if self.username else ()
            commands.append(("AUTH", *user, self.password))
        if self.db:
            commands.append(("SELECT", self.db))
        if self.client_name:
            commands.append(("CLIENT", "SETNAME", self.client_name))
        return commands

    def __repr__(self) -> str:
        where = self.path or f"{self.host}:{self.port}"
        return f"Address({where}, db={self.db})"  # never the password


class Line(asyncio.Protocol):
    """One connection: writes batches of commands, resolves their futures in reply order.

    If Redis sends nothing for CALL_TIMEOUT_SECONDS while replies are due, the connection is
    dropped and every call in flight fails with a TimeoutError; a lost connection fails them
    with a ConnectionError. Either way the next batch opens a new connection.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_noscript: Callable[[Call], None]
    ) -> None:
        self.loop = loop
        self.closed = False
        self._on_noscript = on_noscript
        self._transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader(replyError=BaseParser.parse_error, encoding="utf-8")
        self._pending: deque[Call] = deque()
        self._progress = 0.0  # when Redis last answered, or the wait for it began
        self._watchdog: asyncio.TimerHandle | None = None

    def send(self, batch: Sequence[Call]) -> None:
        """Write the batch in one go; its replies resolve the futures in it."""
        payload = b"".join(
            hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
            if script is not None
            else hiredis.pack_command(tuple(args))
            for script, keys, args, _ in batch
        )
        if not self._pending:
            self._progress = self.loop.time()
        self._pending.extend(batch)
        if self._watchdog is None:
            self._watchdog = self.loop.call_at(self._progress + CALL_TIMEOUT_SECONDS, self._watch)
        assert self._transport is not None
        self._transport.write(payload)

    async def execute(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send plain commands in one batch and return their replies (errors raise)."""
        calls: list[Call] = [(None, (), command, self.loop.create_future()) for command in commands]
        self.send(calls)
        replies = await asyncio.gather(*(future for *_, future in calls), return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    def close(self) -> None:
        """Close the connection; calls still in flight fail."""
        if self._transport is not None:
            self._transport.close()
        self._fail(rex.ConnectionError("the connection to Redis was closed"))

    def bind(self, transport: asyncio.BaseTransport) -> None:
        """Write to `transport` from now on."""
        # Not in connection_made: uvloop may call that only after create_connection returned.
        self._transport = cast(asyncio.Transport, transport)

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        self._progress = self.loop.time()
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                self._deliver(self._pending.popleft(), reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked for
            self._abort(rex.ConnectionError(f"unexpected data from Redis: {exc!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(rex.ConnectionError("the connection to Redis was lost"))

    # internals

    def _deliver(self, call: Call, reply: Any) -> None:
        future = call[3]
        if future.done():  # the caller gave up (its request was cancelled)
            return
        if isinstance(reply, rex.NoScriptError) and call[0] is not None:
            self._on_noscript(call)
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
            self._abort(TimeoutError(f"Redis did not answer in {CALL_TIMEOUT_SECONDS} s"))
        else:
            self._watchdog = self.loop.call_at(deadline, self._watch)

    def _abort(self, error: Exception) -> None:
        # Replies still due would be read by nobody: the connection cannot be used again.
        self._fail(error)
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        pending, self._pending = self._pending, deque()
        for *_, future in pending:
            if not future.done():
                future.set_exception(error)


async def open_line(address: Address, on_noscript: Callable[[Call], None]) -> Line:
    """Connect to Redis at `address` and run the handshake; raise a redis ConnectionError (or,
    when the handshake gets no answer in time, a TimeoutError)."""
    loop = asyncio.get_running_loop()

    def factory() -> Line:
        return Line(loop, on_noscript)

    try:
        async with asyncio.timeout(SOCKET_TIMEOUT_SECONDS):
            if address.path:
                transport, line = await loop.create_unix_connection(
                    factory, address.path, ssl=address.tls
                )
            else:
                transport, line = await loop.create_connection(
                    factory, address.host, address.port, ssl=address.tls
                )
    except (OSError, TimeoutError) as exc:
        raise rex.ConnectionError(f"cannot connect to Redis at {address}: {exc}") from exc
    line.bind(transport)
    handshake = address.handshake()
    if handshake:
        try:
            await line.execute(*handshake)
        except rex.ResponseError as exc:  # e.g. no such database: the set-up, not a request, failed
            line.close()
            raise rex.ConnectionError(f"Redis at {address} refused the set-up: {exc}") from exc
        except BaseException:
            line.close()
            raise
    return line


class AutoPipeline:
    """Queues the script calls of one loop iteration and sends them on the process's one line."""

    def __init__(self, client: Redis) -> None:
        # No reference to the client itself: the pipeline never keeps it alive.
        self._address = Address.of(client)
        self._queue: list[Call] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of the queued calls
        self._line: Line | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.monitor: Monitor | None = None  # hears of every batch written

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
        """Close the line; a later call opens a new one."""
        if self._line is not None:
            self._line.close()
            self._line = None

    def _flush(self) -> None:
        line = self._line
        if line is None or line.closed or line.loop is not self._loop:
            if self._connecting is None:  # else the connection being opened sends the queue
                self._connecting = self._spawn(self._connect())
            return
        batch, self._queue = self._queue, []
        line.send(batch)
        if self.monitor is not None and self.monitor.on_round_trip is not None:
            self.monitor.on_round_trip(len(batch))

    async def _connect(self) -> None:
        try:
            self._line = await open_line(self._address, self._retry_loading_script)
        except Exception as exc:  # the calls waiting for this connection fail with it
            batch, self._queue = self._queue, []
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._connecting = None
        if self._queue:
            self._flush()

    def _retry_loading_script(self, call: Call) -> None:
        # Redis lost its script cache (a restart, SCRIPT FLUSH): redis-py loads it and runs again.
        script, keys, args, future = call
        assert script is not None

        async def run() -> None:
            try:
                result = await bounded(script(keys=keys, args=args))
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)

        self._spawn(run())

    def _spawn(self, coroutine: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)
        return task


def auto_pipeline(client: Client, monitor: Monitor | None = None) -> AutoPipeline | None:
    """An auto-pipeline for a plain client on a socket (one per process: the Services own it);
    None for a cluster client (its pipelines refuse EVALSHA) and for the embedded store (no
    round trip to save). `monitor` hears of every batch."""
    if isinstance(client, RedisCluster) or client.connection_pool.connection_class not in (
        _SOCKET_CLASSES
    ):
        return None
    pipeline = AutoPipeline(client)
    pipeline.monitor = monitor
    return pipeline


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
