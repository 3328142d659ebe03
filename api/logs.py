"""Process-wide logging set-up (text or one JSON object per line), and the access log."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, NamedTuple, TextIO

import orjson

from storage.clock import SecondClock

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SANIC_LOGGERS = ("sanic.root", "sanic.error", "sanic.server", "sanic.access", "sanic.websockets")
# Fields a log call may add with `extra=`; JSON lines carry them.
EXTRA_FIELDS = ("request_id", "method", "path", "route", "status", "duration_ms", "client", "user")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the extra fields given."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = SecondClock()

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": self._clock.utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send the `api` loggers to stderr, put them and Sanic's at `level`, and, for `json`, make
    every handler of Sanic's and ours write JSON lines. Call again once Sanic has set up its own
    handlers (it does when an app is made)."""
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(FORMAT)
    logger = logging.getLogger("api")
    if not logger.handlers:
        logger.addHandler(logging.StreamHandler())
    logger.setLevel(level)
    for handler in logger.handlers:
        handler.setFormatter(formatter)
    for name in SANIC_LOGGERS:
        sanic_logger = logging.getLogger(name)
        sanic_logger.setLevel(level)
        if log_format == "json":
            for handler in sanic_logger.handlers:
                handler.setFormatter(formatter)


class Access(NamedTuple):
    """One answered request, as the access log tells it (never a query, header or body)."""

    # A tuple: made for every request, and a frozen dataclass costs a call per field to make.
    method: str
    path: str
    route: str
    status: int
    duration_ms: float
    request_id: str
    client: str
    user: str | None = None


class AccessLog:
    """One line per request, written in batches at most FLUSH_SECONDS apart.

    A logging record and a write to stderr for every request cost about a sixth of the whole
    request here (measured with `make bench`); a line appended to a buffer costs almost nothing,
    and one write carries all the lines of a few dozen milliseconds.
    """

    FLUSH_SECONDS = 0.05

    def __init__(self, stream: TextIO | None = None, *, json: bool = False) -> None:
        self._stream = stream
        self._json = json
        self._lines: list[str] = []
        self._clock = SecondClock()

    def write(self, access: Access) -> None:
        """Queue a line for `access`; a flush follows within FLUSH_SECONDS."""
        now = time.time()
        if not self._lines:
            asyncio.get_running_loop().call_later(self.FLUSH_SECONDS, self.flush)
        if self._json:
            self._lines.append(self._json_line(now, access))
            return
        user = f" user={access.user}" if access.user else ""
        self._lines.append(
            f"{self._clock.local_stamp(now)} INFO api.access: {access.method} {access.path} "
            f"{access.status} {access.duration_ms:.1f}ms id={access.request_id} "
            f"client={access.client}{user}\n"
        )

    def _json_line(self, now: float, access: Access) -> str:
        entry = {
            "time": self._clock.utc_iso(now),
            "level": "INFO",
            "logger": "api.access",
            "message": f"{access.method} {access.path} {access.status}",
            "request_id": access.request_id,
            "method": access.method,
            "path": access.path,
            "route": access.route,
            "status": access.status,
            "duration_ms": round(access.duration_ms, 1),
            "client": access.client,
        }
        if access.user:
            entry["user"] = access.user
        return orjson.dumps(entry).decode() + "\n"

    def flush(self) -> None:
        """Write out every queued line."""
        if self._lines:
            lines, self._lines = self._lines, []
            stream = self._stream or sys.stderr
            stream.write("".join(lines))
            stream.flush()
