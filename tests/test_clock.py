"""The per-second clock formats like strftime, and moves on with the second."""

from __future__ import annotations

import time

from storage.clock import SecondClock


def test_utc_iso_with_milliseconds() -> None:
    clock = SecondClock()
    assert clock.utc_iso(0.5) == "1970-01-01T00:00:00.500Z"
    assert clock.utc_iso(0.999) == "1970-01-01T00:00:00.999Z"
    assert clock.utc_iso(86400 + 61.25) == "1970-01-02T00:01:01.250Z"  # a new second, anew


def test_local_stamp_is_strftimes() -> None:
    clock = SecondClock()
    for now in (1_700_000_000.1, 1_700_000_000.9, 1_800_000_123.4):
        assert clock.local_stamp(now) == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
