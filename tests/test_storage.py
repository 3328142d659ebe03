"""The stores on their own, on fakeredis and on a real Redis: atomicity, caps, concurrency."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from api.names import skeleton_digest
from storage import keys
from storage.connection import initialize
from storage.errors import NameTaken, SessionEnded, SessionRevoked, UnknownUser
from storage.messages import MessageIds, MessageStore
from storage.models import Session
from storage.sessions import SessionStore
from storage.users import UserStore, take_census

Backend = Callable[[], Redis]
pytestmark = pytest.mark.anyio


async def _with_user(client: Redis) -> Session:
    """Create alice; return a session of hers, as a fresh login's token would carry."""
    await UserStore(client).create_user("alice", "$2b$04$hash", 4, skeleton_digest("alice"))
    generation = await client.hget(keys.user("alice"), "generation")
    return Session(name="alice", jti="jti-1", generation=int(str(generation)))


async def test_create_user_stores_a_hash_with_a_random_first_generation(
    backend: Backend,
) -> None:
    client = backend()
    users = UserStore(client)
    await users.create_user("alice", "$2b$04$hash", 4, skeleton_digest("alice"))
    await users.create_user("bob", "$2b$04$hash", 4, skeleton_digest("bob"))
    alice: dict[str, str] = await client.hgetall(keys.user("alice"))  # type: ignore[assignment]
    bob = await client.hgetall(keys.user("bob"))
    costs = await client.hgetall(keys.password_costs())
    assert alice["password_hash"] == "$2b$04$hash"
    assert alice["created_at"].endswith("Z")
    assert 0 <= int(alice["generation"]) < 2**52
    assert alice["generation"] != bob["generation"]  # 1 chance in 2**52 of a false failure
    assert costs == {"4": "2"}


async def test_concurrent_signups_of_one_name_exactly_one_wins(backend: Backend) -> None:
    client = backend()
    await initialize(client)
    users = UserStore(client)
    results = await asyncio.gather(
        *(users.create_user("alice", f"hash-{n}", 4, skeleton_digest("alice")) for n in range(50)),
        return_exceptions=True,
    )
    assert results.count(None) == 1
    assert all(isinstance(r, NameTaken) for r in results if r is not None), [
        repr(r.__cause__) for r in results if r is not None and not isinstance(r, NameTaken)
    ]


async def _send_concurrently(backend: Backend, limit: int, sent: int) -> list[str]:
    client = backend()
    alice = await _with_user(client)
    messages = MessageStore(client, history_limit=limit)
    await asyncio.gather(*(messages.send(alice, "alice", f"m{n}") for n in range(sent)))
    assert await client.llen(keys.messages("alice")) == min(sent, limit)
    return await messages.last_texts(alice, limit)


async def test_concurrent_messages_none_lost(backend: Backend) -> None:
    stored = await _send_concurrently(backend, limit=500, sent=200)
    assert sorted(stored) == sorted(f"m{n}" for n in range(200))


async def test_concurrent_messages_cap_holds(backend: Backend) -> None:
    stored = await _send_concurrently(backend, limit=30, sent=200)
    assert len(stored) == 30


async def test_session_checks(backend: Backend) -> None:
    client = backend()
    alice = await _with_user(client)
    sessions = SessionStore(client)
    await sessions.check(alice)
    with pytest.raises(UnknownUser):
        await sessions.check(Session(name="ghost", jti="x", generation=0))
    with pytest.raises(SessionEnded):
        await sessions.check(Session(name="alice", jti="x", generation=alice.generation + 1))
    await sessions.revoke(alice, ttl_seconds=100)
    with pytest.raises(SessionRevoked):
        await sessions.check(alice)
    with pytest.raises(SessionRevoked):
        await MessageStore(client, history_limit=5).send(alice, "alice", "no")
    assert await client.llen(keys.messages("alice")) == 0
    ttl = await client.ttl(keys.revoked("alice", "jti-1"))
    assert 90 <= ttl <= 100


async def test_revoking_an_already_expired_token_writes_nothing(backend: Backend) -> None:
    client = backend()
    await SessionStore(client).revoke(Session("alice", "jti-1", 0), ttl_seconds=0)
    assert await client.exists(keys.revoked("alice", "jti-1")) == 0


@pytest.mark.parametrize("name", ["bob", "Алиса", "a.b-c_d", "x" * 64])
def test_a_users_keys_share_one_cluster_slot(name: str) -> None:
    user_keys = [
        keys.user(name),
        keys.messages(name),
        keys.revoked(name, "a-jti"),
        keys.login_failures(name),
    ]
    slots = {key_slot(key.encode()) for key in user_keys}
    assert len(slots) == 1
    assert slots != {key_slot(keys.user(name + "x").encode())}  # the name decides the slot


async def test_a_census_counts_the_hashes_stored_before_counting_once(backend: Backend) -> None:
    client = backend()
    for name, cost in (("old1", 12), ("old2", 12), ("old3", 10), ("new", 4)):
        await client.hset(keys.user(name), mapping={"password_hash": f"$2b${cost:02d}$x"})
    await client.hset(keys.password_costs(), "4", 1)  # "new" signed up after the release
    first = await take_census(client, batch=2)
    second = await take_census(client)
    costs = await client.hgetall(keys.password_costs())
    assert first == {4: 1, 10: 1, 12: 2}
    assert second is None
    # The one signed up meanwhile is counted twice: the census errs towards the higher costs.
    assert costs == {"4": "2", "10": "1", "12": "2", "census": "1"}


def test_message_ids_are_unique_and_never_repeat_a_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MessageIds, "COUNTER_LIMIT", 4)
    ids, other = MessageIds(), MessageIds()
    made = [ids() for _ in range(10)] + [other() for _ in range(10)]
    assert len(set(made)) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{16}", made_id) for made_id in made)
    assert len({made_id[:10] for made_id in made}) == 6  # a new prefix after every 4
