"""Building the Redis client and turning Redis failures into `StorageUnavailable`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import hiredis
import redis.exceptions as rex
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript

from storage.errors import StorageUnavailable

MEMORY_URL = "memory://"
SOCKET_TIMEOUT_SECONDS = 1.0
CLUSTER_MAX_CONNECTIONS = 512
# Upper bound on one storage call, retries included, so a hanging Redis is a fast 503.
CALL_TIMEOUT_SECONDS = 1.5

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    rex.ConnectionError,  # includes BusyLoadingError and "too many connections"
    rex.TimeoutError,
    rex.ClusterDownError,
    rex.ClusterError,
    rex.TryAgainError,
    rex.MasterDownError,
    rex.ReadOnlyError,
    TimeoutError,
    OSError,
)

# Every store takes either: both have the same command, script and pipeline API.
Client = Redis | RedisCluster

P = ParamSpec("P")
R = TypeVar("R")


def create_redis(url: str, *, cluster: bool = False, max_connections: int = 64) -> Client:
    """An asyncio client for `url`: a Redis Cluster client when `cluster`, the embedded
    in-process store for `memory://`, else a plain Redis client with a bounded pool."""
    if url == MEMORY_URL:
        return create_memory_redis(max_connections=max_connections)
    retry = Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1)
    if cluster:
        return RedisCluster.from_url(
            url,
            decode_responses=True,
            # Per node. The cluster client cannot wait for a free connection (it fails at once),
            # so its bound is set well above what one worker keeps in flight.
            max_connections=CLUSTER_MAX_CONNECTIONS,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            retry=retry,
            health_check_interval=30,
        )
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=SOCKET_TIMEOUT_SECONDS,  # wait for a free connection at most this long
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        retry=retry,
        health_check_interval=30,
    )
    return Redis(connection_pool=pool)


def create_memory_redis(server: Any = None, *, max_connections: int = 64) -> Redis:
    """The embedded in-process store: fakeredis (Lua included) behind the same client API."""
    import fakeredis  # imported here: only the embedded store needs it

    client: Redis = fakeredis.FakeAsyncRedis(
        server=server,
        decode_responses=True,
        connection_pool_class=BlockingConnectionPool,
        max_connections=max_connections,
        timeout=SOCKET_TIMEOUT_SECONDS,
    )
    return client


ScriptCall = Callable[..., Awaitable[Any]]
Queued = tuple[AsyncScript, Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class AutoPipeline:
    """Sends every script call made during one event-loop iteration in one pipeline.

    As ioredis's auto-pipelining does: under load, the calls of many concurrent requests share one
    round trip and one connection, which costs far less client time per call than one request each.
    Replies go back to each caller in order; a failure of the round trip fails every call in it.
    """

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._queue: list[Queued] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Awaitable[Any]:
        """Queue one EVALSHA for the pipeline sent at the end of this loop iteration."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((script, keys, args, future))
        return future

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        task = asyncio.ensure_future(self._send(batch))
        self._tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[Queued]) -> None:
        try:
            replies = await bounded(self._round_trip(batch))
        except Exception as exc:  # the round trip failed: so did every call in it
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (script, keys, args, future), reply in zip(batch, replies, strict=True):
            if future.done():  # the caller gave up (timed out) meanwhile
                continue
            if isinstance(reply, rex.NoScriptError):
                # Redis lost its script cache (a restart, SCRIPT FLUSH): load it and run again.
                self._chain(future, script(keys=keys, args=args))
            elif isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _round_trip(self, batch: list[Queued]) -> list[Any]:
        # What a redis-py pipeline does, without its per-command Python packing and its
        # per-reply bookkeeping: hiredis packs the batch, and the replies are read in order.
        payload = b"".join(
            hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
            for script, keys, args, _ in batch
        )
        pool = self._client.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(payload, check_health=False)
            replies: list[Any] = []
            for _ in batch:
                try:
                    replies.append(await connection.read_response())
                except rex.ResponseError as error:  # a reply, not a broken connection
                    replies.append(error)
        except BaseException:
            # A half-read connection must not go back to the pool in use.
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)
        return replies

    def _chain(self, future: asyncio.Future[Any], call: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                result = await call
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


_pipelines: weakref.WeakKeyDictionary[Redis, AutoPipeline] = weakref.WeakKeyDictionary()


def register_script(client: Client, source: str) -> ScriptCall:
    """A Lua script to call as `await script(keys=[...], args=[...])`.

    On a plain Redis client the calls are auto-pipelined; a cluster client cannot pipeline scripts
    (its pipelines refuse EVALSHA), so there each call is its own round trip.
    """
    script = client.register_script(source)
    if isinstance(client, RedisCluster):

        def direct(*, keys: Sequence[Any], args: Sequence[Any]) -> Awaitable[Any]:
            return bounded(script(keys=keys, args=args))

        return direct
    pipeline = _pipelines.get(client)
    if pipeline is None:
        pipeline = _pipelines[client] = AutoPipeline(client)
    batcher = pipeline

    def call(*, keys: Sequence[Any], args: Sequence[Any]) -> Awaitable[Any]:
        return batcher.call(script, keys, args)

    return call


async def bounded(call: Awaitable[R]) -> R:
    """Await one round trip to Redis, giving up after CALL_TIMEOUT_SECONDS, retries included."""
    async with asyncio.timeout(CALL_TIMEOUT_SECONDS):
        return await call


def translate_errors(
    fn: Callable[P, Awaitable[R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Turn connection-level failures of a storage call into StorageUnavailable.

    Every round trip inside is bounded in time: script calls by their pipeline (or, on a
    cluster, one by one), other commands with `bounded`.
    """

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(type(exc).__name__) from exc

    return wrapper


async def initialize(client: Client) -> None:
    """Learn a cluster's topology before serving: concurrent first commands on an
    uninitialised cluster client race and fail. A plain client needs nothing."""
    if isinstance(client, RedisCluster):
        # Not reachable yet: the client initialises itself on its first command instead.
        with contextlib.suppress(*_UNAVAILABLE):
            await bounded(client.initialize())


@translate_errors
async def ping(client: Client) -> bool:
    """Return True when Redis answers PING."""
    return bool(await bounded(client.ping()))
