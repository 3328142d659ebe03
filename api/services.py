"""What the handlers share: settings, the Redis client and the stores, kept on `app.ctx`."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sanic import Request

from api.hashing import PasswordHasher
from api.settings import Settings
from storage.messages import MessageStore
from storage.sessions import SessionStore
from storage.users import UserStore


@dataclass(frozen=True, slots=True)
class Services:
    """The app's long-lived objects, built once per worker."""

    settings: Settings
    secret: str
    redis: Redis
    users: UserStore
    sessions: SessionStore
    messages: MessageStore
    hasher: PasswordHasher

    @classmethod
    def build(cls, settings: Settings, redis: Redis) -> Services:
        """Wire the stores and the hasher around one Redis client."""
        if settings.jwt_secret is None:
            raise ValueError(
                "Settings.jwt_secret must be set; use Settings.with_generated_secret()"
            )
        return cls(
            settings=settings,
            secret=settings.jwt_secret,
            redis=redis,
            users=UserStore(redis),
            sessions=SessionStore(redis),
            messages=MessageStore(redis, history_limit=settings.message_history_limit),
            hasher=PasswordHasher(settings.bcrypt_rounds),
        )


def services(request: Request) -> Services:
    """The Services of the app serving `request`."""
    found: Services = request.app.ctx.services
    return found
