"""Building the Redis client and turning Redis failures into `StorageUnavailable`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import redis.exceptions as rex
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

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
