"""The stores on their own, on fakeredis and on a real Redis: atomicity, caps, concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from storage import keys
from storage.connection import initialize
from storage.errors import NameTaken, SessionEnded, SessionRevoked, UnknownUser
from storage.messages import MessageStore
from storage.models import Session
from storage.sessions import SessionStore
from storage.users import UserStore

Backend = Callable[[], Redis]
ALICE = Session(name="alice", jti="jti-1", generation=0)


async def _with_user(client: Redis) -> None:
    await UserStore(client).create_user("alice", "$2b$04$hash")


def test_create_user_stores_a_hash(backend: Backend) -> None:
    async def scenario() -> dict[str, str]:
        client = backend()
        await _with_user(client)
        return await client.hgetall(keys.user("alice"))  # type: ignore[return-value]

    stored = asyncio.run(scenario())
    assert stored["password_hash"] == "$2b$04$hash"
    assert stored["generation"] == "0"
    assert stored["created_at"].endswith("Z")


def test_concurrent_signups_of_one_name_exactly_one_wins(backend: Backend) -> None:
    async def scenario() -> list[BaseException | None]:
        client = backend()
        await initialize(client)
        users = UserStore(client)
        return await asyncio.gather(
            *(users.create_user("alice", f"hash-{n}") for n in range(50)),
            return_exceptions=True,
        )

    results = asyncio.run(scenario())
    assert results.count(None) == 1
    assert all(isinstance(r, NameTaken) for r in results if r is not None), [
        repr(r.__cause__) for r in results if r is not None and not isinstance(r, NameTaken)
    ]


async def _send_concurrently(backend: Backend, limit: int, sent: int) -> list[str]:
    client = backend()
    await _with_user(client)
    messages = MessageStore(client, history_limit=limit)
    await asyncio.gather(*(messages.append_message(ALICE, f"m{n}") for n in range(sent)))
    assert await client.llen(keys.messages("alice")) == min(sent, limit)
    return [m.text for m in await messages.last_messages(ALICE, limit)]


def test_concurrent_messages_none_lost(backend: Backend) -> None:
    stored = asyncio.run(_send_concurrently(backend, limit=500, sent=200))
    assert sorted(stored) == sorted(f"m{n}" for n in range(200))


def test_concurrent_messages_cap_holds(backend: Backend) -> None:
    stored = asyncio.run(_send_concurrently(backend, limit=30, sent=200))
    assert len(stored) == 30


def test_session_checks(backend: Backend) -> None:
    async def scenario() -> None:
        client = backend()
        await _with_user(client)
        sessions = SessionStore(client)
        await sessions.check(ALICE)
        with pytest.raises(UnknownUser):
            await sessions.check(Session(name="ghost", jti="x", generation=0))
        with pytest.raises(SessionEnded):
            await sessions.check(Session(name="alice", jti="x", generation=1))
        await sessions.revoke(ALICE, ttl_seconds=100)
        with pytest.raises(SessionRevoked):
            await sessions.check(ALICE)
        with pytest.raises(SessionRevoked):
            await MessageStore(client, history_limit=5).append_message(ALICE, "no")
        assert await client.llen(keys.messages("alice")) == 0
        ttl = await client.ttl(keys.revoked("alice", "jti-1"))
        assert 90 <= ttl <= 100

    asyncio.run(scenario())


def test_revoking_an_already_expired_token_writes_nothing(backend: Backend) -> None:
    async def scenario() -> int:
        client = backend()
        await SessionStore(client).revoke(ALICE, ttl_seconds=0)
        return await client.exists(keys.revoked("alice", "jti-1"))

    assert asyncio.run(scenario()) == 0


def test_keys_share_the_users_hash_tag() -> None:
    for key in (keys.user("bob"), keys.messages("bob"), keys.revoked("bob", "j")):
        assert "{bob}" in key
