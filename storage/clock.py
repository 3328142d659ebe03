"""Time as text, cheaply: the part down to the second is formatted once a second."""

from __future__ import annotations

import time


class SecondClock:
    """Formats times, caching the date-and-time part of the current second (strftime costs more
    than the rest of a message's bookkeeping)."""

    def __init__(self) -> None:
        self._second = -1
        self._utc = ""
        self._local = ""

    def _at(self, now: float) -> int:
        second = int(now)
        if second != self._second:
            self._second = second
            self._utc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return second

    def utc_iso(self, now: float | None = None) -> str:
        """UTC as ISO 8601 with milliseconds: `2026-11-28T13:45:01.123Z`."""
        now = time.time() if now is None else now
        second = self._at(now)
        return f"{self._utc}.{int((now - second) * 1000):03d}Z"

    def local_stamp(self, now: float | None = None) -> str:
        """Local time to the second, as log lines show it: `2026-11-28 13:45:01`."""
        self._at(time.time() if now is None else now)
        return self._local
