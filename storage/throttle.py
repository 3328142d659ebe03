"""Fixed-window attempt counters in Redis, shared by every worker and instance."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from storage import scripts
from storage.connection import Client, bounded, translate_errors
from storage.errors import RateLimited
from storage.pipeline import register_script


@dataclass(frozen=True, slots=True)
class Window:
    """At most `limit` counted attempts per `seconds`, counted in `key`."""

    key: str
    limit: int
    seconds: int


def queue_reads(pipe: Pipeline | ClusterPipeline, windows: Sequence[Window]) -> None:
    """Queue the reads `raise_if_blocked` needs: each window's count and remaining time."""
    for window in windows:
        pipe.get(window.key)
        pipe.pttl(window.key)


def raise_if_blocked(windows: Sequence[Window], replies: Sequence[Any]) -> None:
    """Raise RateLimited if any window is full, given the replies of `queue_reads`."""
    retry_after = 0
    for index, window in enumerate(windows):
        count, pttl = replies[2 * index], replies[2 * index + 1]
        if count is not None and int(count) >= window.limit:
            remaining = math.ceil(int(pttl) / 1000) if int(pttl) > 0 else window.seconds
            retry_after = max(retry_after, remaining)
    if retry_after:
        raise RateLimited(retry_after)


class Throttle:
    """Counts attempts in fixed windows that start with the first attempt."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._hit = register_script(client, scripts.COUNT_HIT)

    @translate_errors
    async def hit(self, window: Window) -> None:
        """Count one attempt; raise RateLimited if it goes over the window's limit."""
        count, ttl = await self._hit(keys=[window.key], args=[window.seconds])
        if int(count) > window.limit:
            raise RateLimited(int(ttl) if int(ttl) > 0 else window.seconds)

    @translate_errors
    async def record(self, *windows: Window) -> None:
        """Count one attempt in each window, concurrently (a cluster pipeline runs no scripts)."""
        await asyncio.gather(
            *(self._hit(keys=[window.key], args=[window.seconds]) for window in windows)
        )

    @translate_errors
    async def clear(self, window: Window) -> None:
        """Forget the window's attempts."""
        await bounded(self._client.delete(window.key))
