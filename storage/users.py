"""Users: creation, the two halves of a login, and the census of password-hash costs."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import TypeVar

import redis.exceptions as rex

from storage import keys, scripts
from storage.connection import Client, Monitor, create_redis
from storage.errors import NameTaken, StorageUnavailable
from storage.messages import decode_messages
from storage.models import AccountData, LoginState, NewFamily, Session
from storage.pipeline import AutoPipeline
from storage.sessions import (
    DEFAULT_MAX_SESSIONS,
    families_of,
    family_args,
    raise_for_status,
    session_args,
    session_keys,
)
from storage.store import Script, Store, translate_errors
from storage.throttle import Throttle, Window

R = TypeVar("R")

# The first session generation of an account is random below this (exact in a JSON number).
GENERATION_BITS = 52


class UserStore(Store):
    """Users kept as hashes `user:{<name>}`, and how many stored hashes have each bcrypt cost."""

    _create = Script(scripts.CREATE_USER)
    _read = Script(scripts.READ_CREDENTIALS)
    _replace_hash = Script(scripts.REPLACE_HASH)
    _read_costs = Script(scripts.READ_COSTS)
    _count_costs = Script(scripts.COUNT_COSTS)
    _change_password = Script(scripts.CHANGE_PASSWORD)
    _delete = Script(scripts.DELETE_USER)
    _export = Script(scripts.EXPORT)
    _claim_skeleton = Script(scripts.CLAIM_SKELETON)
    _release_skeleton = Script(scripts.RELEASE_SKELETON)

    def __init__(
        self,
        client: Client,
        monitor: Monitor | None = None,
        pipeline: AutoPipeline | None = None,
        *,
        throttle: Throttle | None = None,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        super().__init__(client, monitor, pipeline)
        self._max_sessions = max_sessions
        self._throttle = throttle or Throttle(client, self._monitor, pipeline)

    @translate_errors
    async def create_user(self, name: str, password_hash: str, cost: int, skeleton: str) -> None:
        """Create the user, with a random first session generation; raise NameTaken if the name
        exists, or another name holds its skeleton (`skeleton`: its digest, see api.names).

        Two steps, in two slots: the skeleton is claimed first (exactly one of two names that
        look alike wins it), then the user is created (exactly one of two signups of one name);
        a name that claimed the skeleton and then lost gives it back."""
        claimed = await self._claim_skeleton(keys=[keys.skeleton(skeleton)], args=[name])
        if not claimed:
            raise NameTaken(name, look_alike=True)
        created_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        generation = secrets.randbits(GENERATION_BITS)
        try:
            created = await self._create(
                keys=[keys.user(name)], args=[password_hash, created_at, generation]
            )
        except BaseException:
            if int(claimed) == 1:
                with contextlib.suppress(Exception):  # Redis failing: nothing more to do
                    await self._release_skeleton(keys=[keys.skeleton(skeleton)], args=[name])
            raise
        if not created:
            if int(claimed) == 1:  # a new claim of a name that exists (it lost a race)
                await self._release_skeleton(keys=[keys.skeleton(skeleton)], args=[name])
            raise NameTaken(name)
        await self._count_costs(keys=[keys.password_costs()], args=[cost, 1])

    @translate_errors
    async def begin_login(self, name: str, *windows: Window) -> LoginState:
        """Take one attempt from each window (RateLimited if one is full, taking none) and read
        the user's credentials and the costs of the stored hashes, in one round trip."""
        credentials, costs, *replies = await asyncio.gather(
            self._read(keys=[keys.user(name)], args=[]),
            self._read_costs(keys=[keys.password_costs()], args=[]),
            *(self._throttle.reserve(window) for window in windows),
        )
        await self._throttle.settle(windows, replies)
        password_hash, generation = credentials
        return LoginState(
            password_hash=password_hash,
            generation=int(generation or 0),
            stored_costs=_costs_in_use(costs),
        )

    @translate_errors
    async def finish_login(
        self,
        name: str,
        *,
        clear: Iterable[Window],
        refund: Iterable[Window],
        rehash: tuple[str, str, int, int] | None = None,
    ) -> None:
        """After a successful login: clear and refund its windows and, with `rehash` (old hash,
        new hash, old cost, new cost), replace the verified hash unless it changed meanwhile."""
        calls = [self._throttle.give_back(clear=tuple(clear), refund=tuple(refund))]
        if rehash is not None:
            calls.append(self._rehash(name, *rehash))
        await asyncio.gather(*calls)

    @translate_errors
    async def change_password(
        self, session: Session, new_hash: str, costs: tuple[int, int], family: NewFamily
    ) -> int:
        """If the session is valid, replace the password hash, end every session and family of
        the user and begin `family`, atomically; return the new session generation. `costs`:
        the old and the new hash's bcrypt cost."""
        name = session.name
        reply = raise_for_status(
            await self._change_password(
                keys=session_keys(session, keys.families(name), keys.family(name, family.id)),
                args=session_args(
                    session,
                    new_hash,
                    keys.family_prefix(name),
                    keys.used_prefix(name),
                    *family_args(family),
                ),
            )
        )
        old_cost, new_cost = costs
        if old_cost != new_cost:
            await self._count_costs(keys=[keys.password_costs()], args=[old_cost, -1, new_cost, 1])
        return int(reply[1])

    @translate_errors
    async def delete_user(self, session: Session, cost: int, skeleton: str) -> None:
        """If the session is valid, delete the user with their messages, families, failed login
        count, denylist, blocks, idempotency records and rate bucket, atomically; then free the
        name's skeleton (`skeleton`: its digest) and stop counting their hash's bcrypt `cost`.
        (Copies of their messages in other users' histories are those users'.)"""
        name = session.name
        raise_for_status(
            await self._delete(
                keys=session_keys(
                    session,
                    keys.messages(name),
                    keys.families(name),
                    keys.login_failures(name),
                    keys.denylist(name),
                    keys.blocks(name),
                    keys.idempotency(name),
                    keys.idempotency_index(name),
                    keys.message_rate(name),
                    keys.live_streams(name),
                ),
                args=session_args(
                    session,
                    keys.family_prefix(name),
                    keys.used_prefix(name),
                    keys.revoked_prefix(name),
                ),
            )
        )
        await asyncio.gather(
            self._count_costs(keys=[keys.password_costs()], args=[cost, -1]),
            self._release_skeleton(keys=[keys.skeleton(skeleton)], args=[name]),
        )

    @translate_errors
    async def export(self, session: Session, now: int) -> AccountData:
        """Everything kept about the session's user, in one round trip."""
        name = session.name
        reply = raise_for_status(
            await self._export(
                keys=session_keys(
                    session, keys.messages(name), keys.families(name), keys.blocks(name)
                ),
                args=session_args(session, now, keys.family_prefix(name), self._max_sessions),
            )
        )
        _, created_at, messages, families, blocks, top = reply
        numbers = list(range(int(top), int(top) - len(messages), -1))
        return AccountData(
            str(created_at),
            decode_messages(messages, name, numbers),
            families_of(families),
            sorted(str(blocked) for blocked in blocks),
        )

    async def _rehash(self, name: str, old: str, new: str, old_cost: int, new_cost: int) -> None:
        replaced = await self._replace_hash(keys=[keys.user(name)], args=[old, new])
        if replaced and old_cost != new_cost:
            await self._count_costs(keys=[keys.password_costs()], args=[old_cost, -1, new_cost, 1])


def _costs_in_use(flat: list[str]) -> tuple[int, ...]:
    pairs = zip(flat[::2], flat[1::2], strict=True)
    return tuple(int(cost) for cost, count in pairs if cost.isdigit() and int(count) > 0)


async def take_census(client: Client, *, batch: int = 500) -> dict[int, int] | None:
    """Count the stored password hashes by bcrypt cost, once per store: hashes stored before the
    counts were kept are otherwise unknown to them. Return the counts added, or None when a
    census was taken before. Walks the keys with SCAN: for start-up, never a request."""
    costs_key = keys.password_costs()
    if await client.hexists(costs_key, "census"):
        return None
    counts: dict[int, int] = {}
    names: list[str] = []

    async def tally() -> None:
        hashes = await asyncio.gather(*(client.hget(name, "password_hash") for name in names))
        for password_hash in hashes:
            cost = str(password_hash or "")[4:6]
            if cost.isdigit():
                counts[int(cost)] = counts.get(int(cost), 0) + 1
        names.clear()

    async for name in client.scan_iter(match=keys.user("*"), count=batch):
        names.append(name)
        if len(names) >= batch:
            await tally()
    await tally()
    add = client.register_script(scripts.ADD_CENSUS)
    pairs = [str(value) for item in sorted(counts.items()) for value in item]
    added = await add(keys=[costs_key], args=pairs)
    return counts if added else None


async def take_skeleton_census(
    client: Client, digest: Callable[[str], str], version: str, *, batch: int = 500
) -> int | None:
    """Index the skeletons of the existing names (`digest(name)`: the key-safe digest of a
    name's skeleton), once per version of the confusables data: the first name met holds each
    skeleton (pairs that already collide both keep working; a new look-alike is refused).
    Return how many skeletons were claimed, or None when this version was indexed before.
    Walks the keys with SCAN: for start-up, never a request."""
    if await client.get(keys.skeleton_census()) == version:
        return None
    claim = client.register_script(scripts.CLAIM_SKELETON)
    claimed = 0
    names: list[str] = []

    async def index() -> int:
        replies = await asyncio.gather(
            *(claim(keys=[keys.skeleton(digest(name))], args=[name]) for name in names)
        )
        names.clear()
        return sum(1 for reply in replies if int(reply) == 1)

    prefix, suffix = keys.user("*").split("*")
    async for key in client.scan_iter(match=keys.user("*"), count=batch):
        names.append(str(key)[len(prefix) : -len(suffix)])
        if len(names) >= batch:
            claimed += await index()
    claimed += await index()
    mark = client.register_script(scripts.MARK_SKELETON_CENSUS)
    await mark(keys=[keys.skeleton_census()], args=[version])
    return claimed


def run_census(url: str, *, cluster: bool) -> dict[int, int] | None:
    """Take the census of stored password-hash costs (take_census) on a client of its own; raise
    StorageUnavailable when Redis fails meanwhile."""
    return run_on_own_client(url, cluster, take_census)


def run_on_own_client(url: str, cluster: bool, work: Callable[[Client], Awaitable[R]]) -> R:
    """Run `work` (a start-up census) on a client of its own, in an event loop of its own; raise
    StorageUnavailable when Redis fails meanwhile."""

    async def run() -> R:
        client = create_redis(url, cluster=cluster)
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except rex.RedisError as exc:
        raise StorageUnavailable(type(exc).__name__) from exc
