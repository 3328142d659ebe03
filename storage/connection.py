"""The Redis client: building it, classifying its failures, watching outages, start-up probes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.exceptions as rex
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from storage.errors import SetupRefused, StorageUnavailable

logger = logging.getLogger("storage")

MEMORY_URL = "memory://"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
SOCKET_TIMEOUT_SECONDS = 1.0
CLUSTER_MAX_CONNECTIONS = 512
PROBE_TTL_MS = 10_000
# An outage ends with a call that succeeds this long after the last one that failed.
RECOVERY_SECONDS = 1.0
# A failed command is tried once more after 20 ms (at most 200 ms of back-off).
RETRIES = 1
RETRY_BACKOFF_BASE = 0.02
RETRY_BACKOFF_CAP = 0.2
# A pooled connection idle this long is checked with a PING before it is used again.
HEALTH_CHECK_SECONDS = 30
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

# Error replies of a Redis that answers but refuses the work for now (full memory under noeviction,
# too few replicas, a busy script, a read-only replica, failing persistence, loading, resharding,
# a cluster without a master for the slot): the request is fine, the store is not.
REFUSALS = frozenset(
    {
        "OOM",
        "NOREPLICAS",
        "BUSY",
        "READONLY",
        "MISCONF",
        "LOADING",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "MASTERDOWN",
    }
)

# Every store takes either: both have the same command, script and pipeline API.
Client = Redis | RedisCluster

R = TypeVar("R")


def refusal(exc: BaseException) -> str | None:
    """The code of a Redis error reply that refuses work for now (OOM, READONLY...), else None."""
    if not isinstance(exc, rex.RedisError):
        return None
    # redis-py strips the code of the replies it knows and keeps it in status_code.
    code = exc.status_code
    if code is None and isinstance(exc, rex.ResponseError):
        code = str(exc).split(" ", 1)[0]
    return code if code in REFUSALS else None


# A script that reads a key it builds itself (in its own slot) while that slot migrates, and the
# key is not on this node: as transient as TRYAGAIN.
_NON_LOCAL_KEY = "Script attempted to access a non local key"


def unavailable_reason(exc: BaseException) -> str | None:
    """Why `exc` means the store is unavailable (a refusal code or the error's type), else None."""
    code = refusal(exc)
    if code is not None:
        return code
    if isinstance(exc, rex.ResponseError) and str(exc).startswith(_NON_LOCAL_KEY):
        return "TRYAGAIN"
    if isinstance(exc, _UNAVAILABLE):
        return type(exc).__name__
    return None


class Monitor:
    """Watches the Redis calls of a worker's stores: logs an outage once when it starts (WARNING)
    and once when it ends (INFO), and tells optional observers (metrics) of every failure and
    every round trip."""

    def __init__(
        self,
        *,
        on_failure: Callable[[str], None] | None = None,
        on_round_trip: Callable[[int], None] | None = None,
    ) -> None:
        self.reason: str | None = None
        self._since = 0.0
        self._last_failure = 0.0
        self.on_failure = on_failure
        self.on_round_trip = on_round_trip  # called with the number of calls it carried

    def failed(self, reason: str) -> None:
        """A call failed because Redis is unavailable or refused the work."""
        if self.on_failure is not None:
            self.on_failure(reason)
        self._last_failure = time.monotonic()
        if self.reason is None:
            self.reason, self._since = reason, time.monotonic()
            logger.warning(
                "Redis is unavailable (%s): requests that need it answer 503 until it recovers",
                reason,
            )

    def recovered(self) -> None:
        """A call succeeded: if an outage was on and nothing has failed for RECOVERY_SECONDS, it
        has ended. (While Redis refuses only writes, reads go on succeeding between failures.)"""
        if self.reason is not None and time.monotonic() - self._last_failure >= RECOVERY_SECONDS:
            logger.info(
                "Redis is available again after %.1f s (%s)",
                time.monotonic() - self._since,
                self.reason,
            )
            self.reason = None


def create_redis(url: str, *, cluster: bool = False, max_connections: int = 64) -> Client:
    """An asyncio client for `url`: a Redis Cluster client when `cluster`, the embedded
    in-process store for `memory://`, else a plain Redis client with a bounded pool."""
    if url == MEMORY_URL:
        return create_memory_redis(max_connections=max_connections)
    retry = Retry(ExponentialBackoff(cap=RETRY_BACKOFF_CAP, base=RETRY_BACKOFF_BASE), RETRIES)
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
            health_check_interval=HEALTH_CHECK_SECONDS,
        )
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=SOCKET_TIMEOUT_SECONDS,  # wait for a free connection at most this long
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        retry=retry,
        health_check_interval=HEALTH_CHECK_SECONDS,
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


async def initialize(client: Client) -> None:
    """Learn a cluster's topology before serving: concurrent first commands on an
    uninitialised cluster client race and fail. A plain client needs nothing."""
    if isinstance(client, RedisCluster):
        # Not reachable yet: the client initialises itself on its first command instead.
        with contextlib.suppress(*_UNAVAILABLE):
            await bounded(client.initialize())


# Start-up probes: run once by the main process, before any worker, with synchronous clients.


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """True if a Redis server at `url` answers PING within `timeout` seconds; raise SetupRefused
    if it answers but refuses the connection's set-up (a wrong password, no such database)."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except redis.AuthenticationError as exc:
        raise SetupRefused(f"REDIS_URL: Redis refused the credentials: {exc}") from None
    except redis.ResponseError as exc:
        raise SetupRefused(f"REDIS_URL: Redis refused the connection's set-up: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def wait_for_redis(url: str, seconds: float) -> None:
    """Wait up to `seconds` for Redis at `url`, backing off; raise StorageUnavailable if it does
    not answer (SetupRefused if it refuses the set-up)."""
    deadline = time.monotonic() + seconds
    delay = 0.1
    while not redis_answers(url):
        if time.monotonic() + delay > deadline:
            raise StorageUnavailable(
                f"Redis at REDIS_URL did not answer within {seconds:g} s; "
                "check that it runs and that REDIS_URL is right"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def eviction_policy(url: str) -> str | None:
    """Redis's maxmemory-policy, or None when it cannot be read (CONFIG disabled, managed Redis)."""
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.RedisError:
        return None
    finally:
        client.close()
    return str(policy) if policy is not None else None


# Start-up probes: run once by the main process, before any worker, with synchronous clients.
