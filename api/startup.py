"""What the main process settles before any worker starts: the secret and where Redis is."""

from __future__ import annotations

import errno
import logging
import resource
import socket
import tempfile
from pathlib import Path

from api.names import CONFUSABLES_VERSION, skeleton_digest
from api.settings import Settings
from storage.connection import (
    LOCAL_REDIS_URL,
    MEMORY_URL,
    Client,
    eviction_policy,
    redis_answers,
    wait_for_redis,
)
from storage.errors import SetupRefused, StorageUnavailable
from storage.users import run_census, run_on_own_client, take_skeleton_census

logger = logging.getLogger("api.startup")


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


# Each open stream holds one socket. Limits are per process and inherited by the workers
# Sanic starts from this one, and LIVE_MAX_CONNECTIONS is per worker, so one worker's need is
# the need. The margin covers Redis connections, plain requests in flight and files.
FILES_MARGIN = 1024
# The kernel caps a listen backlog at net.core.somaxconn (4096 by default since Linux 5.4).
BACKLOG_MAX = 4096


def raise_open_file_limit(settings: Settings) -> int:
    """Raise this process's open-file soft limit as far as LIVE_MAX_CONNECTIONS needs
    (never past the hard limit, which only root can raise) and return the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = settings.live_max_connections + FILES_MARGIN
    if hard != resource.RLIM_INFINITY:
        need = min(need, hard)
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        soft = need
    if soft != resource.RLIM_INFINITY and soft < settings.live_max_connections + FILES_MARGIN:
        logger.warning(
            "the open-file limit is %d (hard limit %d): fewer than LIVE_MAX_CONNECTIONS=%d "
            "streams will fit; raise it with `ulimit -Hn` or the service manager's LimitNOFILE",
            soft,
            hard,
            settings.live_max_connections,
        )
    return int(soft)


def listen_backlog(settings: Settings) -> int:
    """The listen backlog: room for a reconnect storm of every stream at once, as far as the
    kernel allows (Sanic's default of 100 drops SYNs when thousands reconnect)."""
    return max(100, min(settings.live_max_connections, BACKLOG_MAX))


def count_password_costs(url: str, *, cluster: bool) -> None:
    """Count the password hashes stored before their costs were counted (once per store)."""
    try:
        counts = run_census(url, cluster=cluster)
    except StorageUnavailable as exc:
        logger.warning(
            "could not count the stored password hashes by cost (%s); an unknown name is checked "
            "at BCRYPT_ROUNDS until it is",
            exc,
        )
        return
    if counts is not None:
        logger.info("counted the stored password hashes by bcrypt cost: %s", counts or "none")


def index_name_skeletons(url: str, *, cluster: bool) -> None:
    """Index the skeletons of the names signed up before names were folded (once per version of
    the confusables data), so that a new look-alike of them is refused."""

    async def census(client: Client) -> int | None:
        return await take_skeleton_census(client, skeleton_digest, CONFUSABLES_VERSION)

    try:
        claimed = run_on_own_client(url, cluster, census)
    except StorageUnavailable as exc:
        logger.warning(
            "could not index the skeletons of the existing names (%s); a look-alike of a name "
            "signed up before folding is refused only once it is",
            exc,
        )
        return
    if claimed is not None:
        logger.info("indexed the skeletons of the existing names: %d", claimed)


def warn_if_evicting(url: str) -> None:
    """Warn when Redis may evict keys: revocation markers would silently disappear."""
    policy = eviction_policy(url)
    if policy not in (None, "noeviction"):
        logger.warning(
            "Redis maxmemory-policy is %s: under memory pressure it may evict keys, revocations "
            "included (logged-out tokens would work again); use noeviction",
            policy,
        )


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
        for pattern in ("*.json", "*.tmp"):
            for stale in directory.glob(pattern):
                stale.unlink()
    except OSError as exc:
        raise StartupError(f"METRICS_DIR {directory} cannot be used: {exc.strerror}") from None
    return settings, None


def prepare(settings: Settings, *, redis_wait_seconds: float = 5.0) -> Settings:
    """Resolve the store (explicit, local, or embedded) and the secret, once for all workers."""
    url = settings.redis_url
    try:
        if url is None:
            url = LOCAL_REDIS_URL if redis_answers(LOCAL_REDIS_URL) else MEMORY_URL
            if url == LOCAL_REDIS_URL:
                logger.info("REDIS_URL is unset; using the local Redis on 127.0.0.1:6379")
            settings = settings.replace(redis_url=url)
        elif url != MEMORY_URL:
            wait_for_redis(url, redis_wait_seconds)
    except (SetupRefused, StorageUnavailable) as exc:
        raise StartupError(str(exc)) from None
    if url != MEMORY_URL:
        warn_if_evicting(url)
        count_password_costs(url, cluster=settings.redis_cluster)
        index_name_skeletons(url, cluster=settings.redis_cluster)
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
