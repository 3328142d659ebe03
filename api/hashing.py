"""Password hashing off the event loop, in a thread pool sized to the CPU."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from api.security import hash_password, verify_password


class PasswordHasher:
    """Runs bcrypt in worker threads (bcrypt releases the GIL), never on the event loop."""

    def __init__(self, rounds: int, *, threads: int | None = None) -> None:
        self._rounds = rounds
        self._executor = ThreadPoolExecutor(
            max_workers=threads or os.cpu_count() or 1, thread_name_prefix="bcrypt"
        )
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        """Return the bcrypt-sha256 hash of `password`."""
        return await self._run_hash(password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """Check `password`; with no hash (unknown user) check a dummy so timing tells nothing."""
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self._run_hash("dummy password for unknown users")
            await self._run_verify(password, self._dummy_hash)
            return False
        return await self._run_verify(password, password_hash)

    def close(self) -> None:
        """Stop the worker threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run_hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, hash_password, password, self._rounds)

    async def _run_verify(self, password: str, password_hash: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, verify_password, password, password_hash)
