"""What the handlers share: settings, the Redis client, the stores and the auth service, kept on
`app.ctx` (a request reaches them as `request.services`)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from api.auth import AuthService
from api.cursors import Cursors
from api.hashing import PasswordHasher
from api.live import HEARTBEAT_SECONDS, Hub
from api.messaging import MessagingService
from api.metrics import Metrics
from api.security import TokenVerifier
from api.settings import Settings
from api.transports import CookieTransport
from storage.blocks import BlockStore
from storage.connection import Client, Monitor
from storage.live import LiveStore
from storage.messages import MessageStore
from storage.pipeline import AutoPipeline, auto_pipeline
from storage.sessions import Lifetimes, SessionStore
from storage.store import Health
from storage.throttle import Limits, Throttle
from storage.users import UserStore

# Logins that may wait for a bcrypt thread, per thread, before new ones get a fast 503.
HASH_QUEUE_PER_THREAD = 8


@dataclass(frozen=True, slots=True)
class Services:
    """The app's long-lived objects, built once per worker."""

    settings: Settings
    keys: tuple[str, ...]
    redis: Client
    pipeline: AutoPipeline | None
    users: UserStore
    sessions: SessionStore
    messages: MessageStore
    throttle: Throttle
    limits: Limits
    health: Health
    hasher: PasswordHasher
    auth: AuthService
    messaging: MessagingService
    hub: Hub
    cookies: CookieTransport
    metrics: Metrics | None

    @classmethod
    def build(cls, settings: Settings, redis: Client, metrics: Metrics | None = None) -> Services:
        """Wire the stores and the hasher around one Redis client; tally into `metrics`."""
        if settings.jwt_secret is None:
            raise ValueError(
                "Settings.jwt_secret must be set; use Settings.with_generated_secret()"
            )
        # All workers together hash on at most as many threads as there are cores.
        threads = max(1, (os.cpu_count() or 1) // settings.workers)
        keys = tuple(k for k in (settings.jwt_secret, settings.jwt_secret_previous) if k)
        monitor = Monitor()  # one per worker: an outage is logged once, whichever store meets it
        if metrics is not None:
            monitor.on_failure = functools.partial(_count_failure, metrics)
            monitor.on_round_trip = functools.partial(_count_round_trip, metrics)
        # One auto-pipelined connection per worker, closed with the app.
        pipeline = auto_pipeline(redis, monitor)
        throttle = Throttle(redis, monitor, pipeline)
        hasher = PasswordHasher(
            settings.bcrypt_rounds,
            threads=threads,
            queue_limit=threads * HASH_QUEUE_PER_THREAD,
            on_wait=None if metrics is None else functools.partial(_observe_wait, metrics),
        )
        if metrics is not None:
            metrics.gauge("bcrypt_queue_depth", lambda: hasher.waiting)
            metrics.gauge("bcrypt_in_flight", lambda: hasher.in_flight)
        users = UserStore(
            redis, monitor, pipeline, throttle=throttle, max_sessions=settings.sessions_max_per_user
        )
        sessions = SessionStore(
            redis,
            monitor,
            pipeline,
            lifetimes=Lifetimes(
                refresh=settings.refresh_ttl_seconds,
                family=settings.refresh_max_age_seconds,
                access=settings.jwt_ttl_seconds + settings.jwt_leeway_seconds,
            ),
            max_sessions=settings.sessions_max_per_user,
        )
        limits = Limits(
            login_failures=settings.login_max_failures,
            login_address_failures=settings.login_addr_max_failures,
            login_window_seconds=settings.login_window_seconds,
            address_signups=settings.signup_addr_max,
        )
        tokens = TokenVerifier(
            keys, leeway=settings.jwt_leeway_seconds, max_lifetime=settings.jwt_ttl_seconds
        )
        messages = MessageStore(
            redis,
            history_limit=settings.message_history_limit,
            rate_per_minute=settings.message_rate_per_minute,
            monitor=monitor,
            pipeline=pipeline,
        )
        blocks = BlockStore(redis, monitor, pipeline, max_blocks=settings.blocks_max_per_user)
        return cls(
            settings=settings,
            keys=keys,
            redis=redis,
            pipeline=pipeline,
            users=users,
            sessions=sessions,
            messages=messages,
            throttle=throttle,
            limits=limits,
            health=Health(redis, monitor),
            hasher=hasher,
            auth=AuthService(
                settings,
                users=users,
                sessions=sessions,
                throttle=throttle,
                limits=limits,
                hasher=hasher,
                tokens=tokens,
                secret=keys[0],
                metrics=metrics,
            ),
            messaging=MessagingService(messages, blocks, Cursors(keys), metrics),
            hub=Hub(
                redis,
                LiveStore(redis, monitor, pipeline, max_per_user=settings.live_max_per_user),
                max_connections=settings.live_max_connections,
                leeway=settings.jwt_leeway_seconds,
                metrics=metrics,
            ),
            cookies=CookieTransport(settings),
            metrics=metrics,
        )

    @property
    def allowed_origins(self) -> frozenset[str]:
        """Origins besides the service's own whose pages may open a cookie-authenticated
        WebSocket (ALLOWED_ORIGINS)."""
        return frozenset(o.strip() for o in self.settings.allowed_origins.split(",") if o.strip())

    @property
    def live_heartbeat_seconds(self) -> float:
        """How often a quiet live stream says it is alive: every 15 s, and more often than
        RESPONSE_TIMEOUT (Sanic closes a response that writes nothing for that long)."""
        return min(HEARTBEAT_SECONDS, self.settings.response_timeout / 2)

    def count(self, name: str) -> None:
        """Add one to a counter of the metrics, if they are kept."""
        if self.metrics is not None:
            self.metrics.inc(name)


def _count_failure(metrics: Metrics, reason: str) -> None:
    metrics.inc("redis_failures", (reason,))


def _count_round_trip(metrics: Metrics, calls: int) -> None:
    metrics.inc("redis_round_trips")
    metrics.inc("redis_calls", (), calls)
    metrics.observe("redis_pipeline_batch_size", calls)


def _observe_wait(metrics: Metrics, seconds: float) -> None:
    metrics.observe("bcrypt_wait_seconds", seconds)
