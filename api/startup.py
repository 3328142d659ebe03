"""What the main process settles before any worker starts: the secret and where Redis is."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import tempfile
import time
from pathlib import Path

import redis

from api.settings import Settings
from storage.connection import MEMORY_URL, create_redis
from storage.users import take_census

logger = logging.getLogger("api.startup")

LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"


class StartupError(RuntimeError):
    """The service cannot start; the message says why."""


def check_port(host: str, port: int) -> None:
    """Raise StartupError unless `host`:`port` can be listened on (Sanic would print a
    traceback); the socket is closed again at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"HOST {host!r} is not an address to listen on: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Sanic binds
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"port {port} is in use; set PORT") from None
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """True if a Redis server at `url` answers PING within `timeout` seconds; raise StartupError
    if it answers but refuses the connection's set-up (a wrong password, no such database)."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except redis.AuthenticationError as exc:
        raise StartupError(f"REDIS_URL: Redis refused the credentials: {exc}") from None
    except redis.ResponseError as exc:
        raise StartupError(f"REDIS_URL: Redis refused the connection's set-up: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def wait_for_redis(url: str, seconds: float) -> None:
    """Wait up to `seconds` for Redis at `url`, backing off; raise StartupError if it does not."""
    deadline = time.monotonic() + seconds
    delay = 0.1
    while not redis_answers(url):
        if time.monotonic() + delay > deadline:
            raise StartupError(
                f"Redis at REDIS_URL did not answer within {seconds:g} s; "
                "check that it runs and that REDIS_URL is right"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def warn_if_evicting(url: str) -> None:
    """Warn when Redis may evict keys: revocation markers would silently disappear."""
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.RedisError:
        return  # CONFIG may be disabled (managed Redis); nothing to tell then
    finally:
        client.close()
    if policy not in (None, "noeviction"):
        logger.warning(
            "Redis maxmemory-policy is %s: under memory pressure it may evict keys, revocations "
            "included (logged-out tokens would work again); use noeviction",
            policy,
        )


def count_password_costs(url: str, *, cluster: bool) -> None:
    """Count the password hashes stored before their costs were counted (once per store)."""

    async def census() -> dict[int, int] | None:
        client = create_redis(url, cluster=cluster)
        try:
            return await take_census(client)
        finally:
            await client.aclose()

    try:
        counts = asyncio.run(census())
    except redis.RedisError as exc:
        logger.warning(
            "could not count the stored password hashes by cost (%s); an unknown name is checked "
            "at BCRYPT_ROUNDS until it is",
            type(exc).__name__,
        )
        return
    if counts is not None:
        logger.info("counted the stored password hashes by bcrypt cost: %s", counts or "none")


def prepare_metrics_dir(settings: Settings) -> tuple[Settings, Path | None]:
    """With several workers, a directory where each writes its metrics: METRICS_DIR (emptied of
    an earlier run's files) or a new temporary one, which is returned for removal at exit."""
    if not settings.metrics or settings.workers == 1:
        return settings, None
    if settings.metrics_dir is None:
        made = Path(tempfile.mkdtemp(prefix="messaging-api-metrics-"))
        return settings.replace(metrics_dir=str(made)), made
    directory = Path(settings.metrics_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.json"):
            stale.unlink()
    except OSError as exc:
        raise StartupError(f"METRICS_DIR {directory} cannot be used: {exc.strerror}") from None
    return settings, None


def prepare(settings: Settings, *, redis_wait_seconds: float = 5.0) -> Settings:
    """Resolve the store (explicit, local, or embedded) and the secret, once for all workers."""
    if settings.redis_url is None:
        if redis_answers(LOCAL_REDIS_URL):
            logger.info("REDIS_URL is unset; using the local Redis on 127.0.0.1:6379")
            settings = settings.replace(redis_url=LOCAL_REDIS_URL)
        else:
            settings = settings.replace(redis_url=MEMORY_URL)
    elif settings.redis_url != MEMORY_URL:
        wait_for_redis(settings.redis_url, redis_wait_seconds)
    if not settings.uses_memory_store:
        warn_if_evicting(settings.redis_url or LOCAL_REDIS_URL)
        count_password_costs(settings.redis_url or LOCAL_REDIS_URL, cluster=settings.redis_cluster)
    if settings.uses_memory_store:
        logger.warning(
            "using the embedded in-process store: data lives only as long as this process; "
            "set REDIS_URL to keep it"
        )
        if settings.workers > 1:
            logger.warning(
                "the embedded store is per process: running 1 worker, not %d", settings.workers
            )
            settings = settings.replace(workers=1)
    if settings.jwt_secret is None:
        logger.warning(
            "JWT_SECRET is unset: generated a random one for this run; "
            "tokens will not survive a restart"
        )
        settings = settings.with_generated_secret()
    return settings
