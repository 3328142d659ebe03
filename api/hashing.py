"""Password hashing off the event loop, in a bounded thread pool."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from api.security import hash_password, verify_password

T = TypeVar("T")

# The hashing threads run as nice as a thread can be: under a flood of logins the CPU goes to
# request handling first, so the logins slow down, not every other request.
HASH_THREAD_NICENESS = 19


class HasherBusy(Exception):
    """Too many hashes are already queued; the client should retry shortly."""


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

    def __init__(self, rounds: int, *, threads: int, queue_limit: int) -> None:
        self._rounds = rounds
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="bcrypt", initializer=lower_thread_priority
        )
        self._capacity = threads + queue_limit
        self._in_flight = 0
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        """Return the bcrypt-sha256 hash of `password`."""
        return await self._run(hash_password, password, self._rounds)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """Check `password`; with no hash (unknown user) check a dummy so timing tells nothing."""
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash("dummy password for unknown users")
            await self._run(verify_password, password, self._dummy_hash)
            return False
        return await self._run(verify_password, password, password_hash)

    def close(self) -> None:
        """Stop the worker threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._in_flight >= self._capacity:
            raise HasherBusy
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._in_flight -= 1
