"""Building the Redis client and turning Redis failures into `StorageUnavailable`."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import redis.exceptions as rex
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from storage.errors import StorageUnavailable

MEMORY_URL = "memory://"
SOCKET_TIMEOUT_SECONDS = 1.0
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

P = ParamSpec("P")
R = TypeVar("R")


def create_redis(url: str, *, max_connections: int = 64) -> Redis:
    """Return an asyncio Redis client for `url`; `memory://` gives the embedded in-process store."""
    if url == MEMORY_URL:
        return create_memory_redis(max_connections=max_connections)
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=SOCKET_TIMEOUT_SECONDS,  # wait for a free connection at most this long
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
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


def translate_errors(
    fn: Callable[P, Awaitable[R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Bound a storage call in time and turn connection-level failures into StorageUnavailable."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            async with asyncio.timeout(CALL_TIMEOUT_SECONDS):
                return await fn(*args, **kwargs)
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(type(exc).__name__) from exc

    return wrapper


@translate_errors
async def ping(client: Redis) -> bool:
    """Return True when Redis answers PING."""
    return bool(await client.ping())
