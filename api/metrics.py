"""Prometheus metrics: tallied per process in plain dicts, exported with prometheus-client.

A prometheus-client counter or histogram update is a lock and several calls (more in its
multiprocess mode), and a request makes several: a noticeable share of a request here (`make
bench`, scenario 7, measures what the metrics cost). So each process tallies in plain dicts and
prometheus-client turns the tallies into the text format when /metrics is scraped. With several
workers each one also writes its tallies to a file of its own in METRICS_DIR every second, and the
worker that answers a scrape adds up every worker's file (counters and histograms of workers that
have ended included, gauges of live workers only), so the numbers are the whole service's.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

logger = logging.getLogger("api.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
WRITE_SECONDS = 1.0
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# name -> (help, label names) of the counters, histograms (with their buckets) and gauges.
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "http_requests": (
        "Requests answered, by route template, method and status.",
        ("route", "method", "status"),
    ),
    "api_errors": (
        "Error answers by error code (invalid_credentials: failed logins, "
        "rate_limited: throttle hits, storage_unavailable, busy...).",
        ("code",),
    ),
    "redis_round_trips": (
        "Round trips to Redis made by requests (one per auto-pipelined batch).",
        (),
    ),
    "redis_calls": ("Script calls sent to Redis.", ()),
    "redis_failures": (
        "Redis calls that failed because Redis was unreachable, hanging or "
        "refusing the work, by reason (OOM, READONLY, ConnectionError...).",
        ("reason",),
    ),
    "tokens_revoked": (
        "Sessions ended one at a time: a logout, or DELETE /sessions/{id}/.",
        (),
    ),
    "sessions_ended": (
        "Times all of a user's sessions ended at once: log out everywhere, a new password, "
        "a deleted account.",
        (),
    ),
    "tokens_refreshed": ("Refresh tokens used up for a new pair.", ()),
    "messages_sent": (
        "Messages stored, by recipient: `self` (one's own history) or `other` (another user's "
        "and one's own).",
        ("to",),
    ),
    "live_events_delivered": (
        "Events of live streams queued for their clients, by transport.",
        ("transport",),
    ),
    "live_streams_closed": (
        "Live streams closed, by reason (ended: the session ended; expired: its token; slow: "
        "the client did not read; client: it hung up; shutdown).",
        ("reason",),
    ),
    "live_streams_refused": (
        "Live streams refused, by reason (busy, StreamsFull, a session error, "
        "StorageUnavailable...).",
        ("reason",),
    ),
    "live_streams_reset": (
        "Live streams that began with `reset`: the history no longer held what they missed.",
        ("transport",),
    ),
    "messages_refused": (
        "Messages refused, by reason (unknown_recipient, blocked, rate_limited, "
        "idempotency_key_reused, idempotency_key_in_use).",
        ("reason",),
    ),
    "refresh_tokens_reused": (
        "Used refresh tokens presented again: each ended its session (a stolen token, or a "
        "client that sent one twice).",
        (),
    ),
}
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {
    "http_request_duration_seconds": (
        "Time to answer, by route template.",
        ("route",),
        LATENCY_BUCKETS,
    ),
    "redis_pipeline_batch_size": ("Script calls per auto-pipelined batch.", (), BATCH_BUCKETS),
    "live_delivery_seconds": (
        "From a message's sending to its event being queued for a live stream.",
        (),
        LATENCY_BUCKETS,
    ),
    "bcrypt_wait_seconds": (
        "Time a password hash or check waited for a bcrypt thread.",
        (),
        WAIT_BUCKETS,
    ),
}
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "bcrypt_queue_depth": ("Password hashes and checks waiting for a bcrypt thread.", ()),
    "bcrypt_in_flight": ("Password hashes and checks running or waiting.", ()),
    "live_streams": ("Open live streams, by transport (sse, ws).", ("transport",)),
}

Labels = tuple[str, ...]
# The methods counted under their own name; any other is counted as OTHER_METHOD, so that no
# client can add label series (or bytes Prometheus's format cannot carry) at will.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
# How often a worker that cannot write its tallies says so, at most.
WRITE_WARNING_SECONDS = 60.0


class Metrics:
    """This process's tallies; `text()` renders the whole service's in Prometheus's format."""

    def __init__(self, directory: str | None = None) -> None:
        self.counters: dict[str, dict[Labels, float]] = {name: {} for name in COUNTERS}
        # Per label set: a count per bucket (the last one is +Inf), then the sum.
        self.histograms: dict[str, dict[Labels, list[float]]] = {name: {} for name in HISTOGRAMS}
        self.gauges: dict[str, dict[Labels, Callable[[], float]]] = {name: {} for name in GAUGES}
        self._bounds = {name: spec[2] for name, spec in HISTOGRAMS.items()}
        self._directory = Path(directory) if directory else None
        self._task: asyncio.Task[None] | None = None
        self._skipped: set[str] = set()  # files of the directory that are not tallies, logged
        self._last_warning = -WRITE_WARNING_SECONDS

    # Recording: cheap, no locks (one event loop per process; bcrypt threads only read gauges).

    def inc(self, name: str, labels: Labels = (), amount: float = 1) -> None:
        """Add `amount` to a counter."""
        series = self.counters[name]
        series[labels] = series.get(labels, 0) + amount

    def observe(self, name: str, value: float, labels: Labels = ()) -> None:
        """Record one value in a histogram."""
        bounds = self._bounds[name]
        series = self.histograms[name].get(labels)
        if series is None:
            series = self.histograms[name][labels] = [0.0] * (len(bounds) + 2)
        series[bisect.bisect_left(bounds, value)] += 1
        series[-1] += value

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record an answered request (`route`: a route template or `unmatched`)."""
        if method not in METHODS:
            method = OTHER_METHOD
        self.inc("http_requests", (route, method, str(status)))
        self.observe("http_request_duration_seconds", seconds, (route,))

    def gauge(self, name: str, read: Callable[[], float], labels: Labels = ()) -> None:
        """Read a gauge (of `labels`) from `read` at every scrape."""
        self.gauges[name][labels] = read

    # Sharing among workers.

    def start(self) -> None:
        """With a directory, write this process's tallies to it every WRITE_SECONDS."""
        if self._directory is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._write_forever())

    async def stop(self) -> None:
        """Stop writing, after a last write (the tallies of a worker outlive it)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self.write()

    async def _write_forever(self) -> None:
        while True:
            await asyncio.sleep(WRITE_SECONDS)
            try:
                self.write()
            except Exception as exc:  # a full disk, a bad directory: the writer goes on
                now = time.monotonic()
                if now - self._last_warning >= WRITE_WARNING_SECONDS:
                    self._last_warning = now
                    logger.warning("could not write the metrics of this worker: %s", exc)

    def snapshot(self) -> dict[str, Any]:
        """The tallies as JSON-ready data."""
        return {
            "pid": os.getpid(),
            "counters": {n: [[list(k), v] for k, v in s.items()] for n, s in self.counters.items()},
            "histograms": {
                n: [[list(k), v] for k, v in s.items()] for n, s in self.histograms.items()
            },
            "gauges": {
                n: [[list(k), read()] for k, read in s.items()] for n, s in self.gauges.items()
            },
        }

    def write(self) -> None:
        """Write this process's tallies to its file in the directory, atomically: a new file of
        its own (mode 0600, never through a link someone planted) renamed over the last one."""
        assert self._directory is not None
        data = orjson.dumps(self.snapshot())
        pid = os.getpid()
        descriptor, temporary = tempfile.mkstemp(
            prefix=f"{pid}.", suffix=".tmp", dir=self._directory
        )
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            os.replace(temporary, self._directory / f"{pid}.json")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def _snapshots(self) -> Iterator[dict[str, Any]]:
        own = self.snapshot()
        yield own
        if self._directory is None:
            return
        for path in self._directory.glob("*.json"):
            if path.stem == str(own["pid"]):
                continue
            try:
                raw = _read_no_follow(path)
            except OSError:
                continue  # gone meanwhile (a worker that ended), or not a plain file
            other = _tally(raw)
            if other is None:
                if path.name not in self._skipped:
                    self._skipped.add(path.name)
                    logger.warning(
                        "%s in METRICS_DIR is not a worker's tallies: skipped", path.name
                    )
                continue
            if not _alive(other["pid"]):
                other["gauges"] = {}
            yield other

    # Rendering.

    def collect(self) -> Iterable[Metric]:
        """prometheus-client's collector protocol: the whole service's metrics."""
        counters: dict[str, dict[Labels, float]] = {name: {} for name in COUNTERS}
        histograms: dict[str, dict[Labels, list[float]]] = {name: {} for name in HISTOGRAMS}
        gauges: dict[str, dict[Labels, float]] = {name: {} for name in GAUGES}
        for snapshot in self._snapshots():
            for name, series in snapshot["counters"].items():
                for labels, value in series:
                    key = tuple(labels)
                    counters[name][key] = counters[name].get(key, 0) + value
            for name, series in snapshot["histograms"].items():
                for labels, values in series:
                    key = tuple(labels)
                    total = histograms[name].setdefault(key, [0.0] * len(values))
                    for index, value in enumerate(values):
                        total[index] += value
            for name, series in snapshot["gauges"].items():
                for labels, value in series:
                    key = tuple(labels)
                    gauges[name][key] = gauges[name].get(key, 0) + value
        for name, (help_text, label_names) in COUNTERS.items():
            family = CounterMetricFamily(name, help_text, labels=label_names)
            for labels, value in sorted(counters[name].items()):
                family.add_metric(list(labels), value)
            yield family
        for name, (help_text, label_names, bounds) in HISTOGRAMS.items():
            histogram = HistogramMetricFamily(name, help_text, labels=label_names)
            for labels, values in sorted(histograms[name].items()):
                cumulative, buckets = 0.0, []
                for bound, count in zip((*bounds, float("inf")), values[:-1], strict=True):
                    cumulative += count
                    buckets.append((_bound(bound), cumulative))
                histogram.add_metric(list(labels), buckets, values[-1])
            yield histogram
        for name, (help_text, label_names) in GAUGES.items():
            if not label_names:
                yield GaugeMetricFamily(name, help_text, value=gauges[name].get((), 0.0))
                continue
            gauge = GaugeMetricFamily(name, help_text, labels=label_names)
            for labels, value in sorted(gauges[name].items()):
                gauge.add_metric(list(labels), value)
            yield gauge

    def text(self) -> bytes:
        """The whole service's metrics in Prometheus's text format."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry)


def _read_no_follow(path: Path) -> bytes:
    """The bytes of `path`, a regular file: never what a symbolic link there points at."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        return file.read()


def _labels(series: Any, arity: int) -> bool:
    return (
        isinstance(series, list)
        and len(series) == 2
        and isinstance(series[0], list)
        and len(series[0]) == arity
        and all(isinstance(label, str) for label in series[0])
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _tally(raw: bytes) -> dict[str, Any] | None:
    """A worker's tallies as `snapshot()` makes them, or None for anything else (a file that is
    not JSON, of another shape, or naming metrics this version does not keep)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not (
        isinstance(data, dict)
        and isinstance(data.get("pid"), int)
        and isinstance(data.get("counters"), dict)
        and isinstance(data.get("histograms"), dict)
        and isinstance(data.get("gauges"), dict)
        and set(data["counters"]) <= COUNTERS.keys()
        and set(data["histograms"]) <= HISTOGRAMS.keys()
        and set(data["gauges"]) <= GAUGES.keys()
    ):
        return None
    for name, series_list in data["counters"].items():
        arity = len(COUNTERS[name][1])
        if not isinstance(series_list, list) or not all(
            _labels(series, arity) and _number(series[1]) for series in series_list
        ):
            return None
    for name, series_list in data["gauges"].items():
        arity = len(GAUGES[name][1])
        if not isinstance(series_list, list) or not all(
            _labels(series, arity) and _number(series[1]) for series in series_list
        ):
            return None
    for name, series_list in data["histograms"].items():
        _, label_names, bounds = HISTOGRAMS[name]
        if not isinstance(series_list, list) or not all(
            _labels(series, len(label_names))
            and isinstance(series[1], list)
            and len(series[1]) == len(bounds) + 2
            and all(_number(value) for value in series[1])
            for series in series_list
        ):
            return None
    return data


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
