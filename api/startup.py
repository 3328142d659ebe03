"""What the main process settles before any worker starts: the secret and where Redis is."""

from __future__ import annotations

import logging
import time

import redis

from api.settings import Settings
from storage.connection import MEMORY_URL

logger = logging.getLogger("api.startup")

LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"


class StartupError(RuntimeError):
    """The service cannot start; the message says why."""


def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """True if a Redis server at `url` answers PING within `timeout` seconds."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
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
