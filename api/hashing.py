"""Password hashing off the event loop, in a bounded thread pool."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from api.security import check_password, cost_of, hash_password

T = TypeVar("T")

# The hashing threads run as nice as a thread can be: under a flood of logins the CPU goes to
# request handling first, so the logins slow down, not every other request.
HASH_THREAD_NICENESS = 19


class HasherBusy(Exception):
    """Too many hashes are already queued; the client should retry shortly."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a password matched, and whether its stored hash should be made anew (another
    cost than the configured one, or a password stored before passwords were normalised)."""

    ok: bool
    needs_rehash: bool = False


def lower_thread_priority(niceness: int = HASH_THREAD_NICENESS) -> None:
    """Make the calling thread at least this nice (Linux schedules threads one by one; elsewhere,
    where this would slow the whole process, nothing changes)."""
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):  # never a reason not to hash
        if os.getpriority(os.PRIO_PROCESS, thread) < niceness:
            os.setpriority(os.PRIO_PROCESS, thread, niceness)


class PasswordHasher:
    """Runs bcrypt in `threads` worker threads (bcrypt releases the GIL), never on the event loop.

    At most `threads` hashes run at once; up to `queue_limit` more wait, and past that a request
    fails fast with HasherBusy instead of queueing without bound. The threads run at a lower CPU
    priority than the event loop.
    """

    def __init__(
        self,
        rounds: int,
        *,
        threads: int,
        queue_limit: int,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.rounds = rounds
        self._threads = threads
        self._on_wait = on_wait
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="bcrypt", initializer=lower_thread_priority
        )
        self._capacity = threads + queue_limit
        self.in_flight = 0  # running or waiting for a thread
        self._dummies: dict[int, str] = {}

    async def hash(self, password: str) -> str:
        """Return the bcrypt-sha256 hash of `password` at the configured cost."""
        return await self._run(hash_password, password, self.rounds)

    async def verify(
        self, password: str, password_hash: str | None, *, stored_costs: tuple[int, ...] = ()
    ) -> Verdict:
        """Check `password`. With no hash (unknown user) check a dummy hash at the highest cost
        still stored (or the configured one), so that refusing an unknown name takes as long as
        refusing a real one."""
        if password_hash is None:
            cost = max((self.rounds, *stored_costs))
            await self._run(check_password, password, await self._dummy(cost))
            return Verdict(ok=False)
        matched = await self._run(check_password, password, password_hash)
        if matched is None:
            return Verdict(ok=False)
        return Verdict(ok=True, needs_rehash=matched > 0 or cost_of(password_hash) != self.rounds)

    def close(self) -> None:
        """Stop the worker threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _dummy(self, cost: int) -> str:
        dummy = self._dummies.get(cost)
        if dummy is None:
            # A password nobody knows: the dummy must never match.
            password = secrets.token_urlsafe(32)
            dummy = self._dummies[cost] = await self._run(hash_password, password, cost)
        return dummy

    @property
    def waiting(self) -> int:
        """Hashes and checks waiting for a thread."""
        return max(0, self.in_flight - self._threads)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self.in_flight >= self._capacity:
            raise HasherBusy
        self.in_flight += 1
        submitted = time.monotonic()

        def timed() -> tuple[float, T]:
            return time.monotonic() - submitted, fn(*args)

        try:
            waited, result = await asyncio.get_running_loop().run_in_executor(self._executor, timed)
        finally:
            self.in_flight -= 1
        if self._on_wait is not None:  # on the event loop, like every other tally
            self._on_wait(waited)
        return result
