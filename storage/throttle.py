"""Fixed-window attempt counters in Redis, shared by every worker and instance.

An attempt is taken from its window *before* the work it limits (a password check, a signup), in
one atomic step that refuses it when the window is full: however many requests arrive together,
at most `limit` of them per window ever get to the work.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from storage import keys, scripts
from storage.errors import RateLimited
from storage.store import Script, Store, translate_errors


@dataclass(frozen=True, slots=True)
class Window:
    """At most `limit` attempts per `seconds`, counted in `key`; the window starts with the
    first attempt."""

    key: str
    limit: int
    seconds: int


@dataclass(frozen=True, slots=True)
class Limits:
    """How many attempts the windows allow, and how long they last."""

    login_failures: int
    login_address_failures: int
    login_window_seconds: int
    address_signups: int
    signup_window_seconds: int = 3600

    def login_windows(self, name: str, address: str) -> tuple[Window, Window]:
        """The login windows of an account and of a client address."""
        return (
            Window(keys.login_failures(name), self.login_failures, self.login_window_seconds),
            Window(
                keys.login_address_failures(address),
                self.login_address_failures,
                self.login_window_seconds,
            ),
        )

    def signup_window(self, address: str) -> Window:
        """The signups-per-hour window of a client address."""
        return Window(
            keys.address_signups(address), self.address_signups, self.signup_window_seconds
        )


class Throttle(Store):
    """Takes, gives back and clears attempts in windows."""

    _reserve = Script(scripts.RESERVE)
    _refund = Script(scripts.REFUND)
    _clear = Script(scripts.CLEAR)

    def reserve(self, window: Window) -> Awaitable[Any]:
        """Start taking an attempt from `window`; `settle` reads the reply."""
        return self._reserve(keys=[window.key], args=[window.limit, window.seconds])

    async def settle(self, windows: Sequence[Window], replies: Sequence[Any]) -> None:
        """Given the replies of `reserve` for `windows`: if one was full, give back the attempts
        the others granted and raise RateLimited with the longest wait."""
        granted = [window for window, reply in zip(windows, replies, strict=True) if reply[0]]
        if len(granted) == len(windows):
            return
        if granted:
            await asyncio.gather(*(self._refund(keys=[w.key], args=[]) for w in granted))
        retry_after = max(
            math.ceil(int(reply[1]) / 1000) or window.seconds
            for window, reply in zip(windows, replies, strict=True)
            if not reply[0]
        )
        raise RateLimited(retry_after)

    @translate_errors
    async def take(self, *windows: Window) -> None:
        """Take one attempt from every window, or from none: RateLimited if one is full."""
        replies = await asyncio.gather(*(self.reserve(window) for window in windows))
        await self.settle(windows, replies)

    @translate_errors
    async def give_back(
        self, *, clear: Sequence[Window] = (), refund: Sequence[Window] = ()
    ) -> None:
        """Forget every attempt of the `clear` windows and give one back to each `refund` one."""
        await asyncio.gather(
            *(self._clear(keys=[window.key], args=[]) for window in clear),
            *(self._refund(keys=[window.key], args=[]) for window in refund),
        )
