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
OWN_LOGGERS = ("api", "storage")
SANIC_LOGGERS = ("sanic.root", "sanic.error", "sanic.server", "sanic.access", "sanic.websockets")
# Fields a log call may add with `extra=`; JSON lines carry them.
EXTRA_FIELDS = ("request_id", "method", "path", "route", "status", "duration_ms", "client", "user")


def printable(value: str) -> str:
    """`value` with every character that does not print (control characters, bytes that were
    not UTF-8, which Sanic keeps as surrogates) written as a Python escape: a client's value in a
    log line can neither erase nor forge a line, nor break the JSON of one."""
    if value.isprintable():
        return value
    return "".join(char if char.isprintable() else _escape(char) for char in value)


def _escape(char: str) -> str:
    point = ord(char)
    if point < 0x100:
        return f"\\x{point:02x}"
    return f"\\u{point:04x}" if point < 0x10000 else f"\\U{point:08x}"


class TextFormatter(logging.Formatter):
    """FORMAT, with every line of a message and of a traceback made printable (see
    `printable`): one record can add lines only where a traceback has them."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        """The record's line, its message made printable."""
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        """The traceback, each line made printable."""
        return "\n".join(printable(line) for line in super().formatException(ei).split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and the extra fields given;
    whatever fails while formatting, still one JSON object."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = SecondClock()

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        try:
            return self._format(record)
        except Exception as exc:  # a message whose arguments do not fit, a value JSON lacks...
            fallback = {
                "time": self._clock.utc_iso(record.created),
                "level": record.levelname,
                "logger": record.name,
                "message": printable(str(record.msg)),
                "format_error": printable(repr(exc)),
            }
            return orjson.dumps(fallback).decode()

    def _format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._clock.utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": printable(record.getMessage()),
        }
        for name in EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = printable(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = printable(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send the service's loggers (`api`, `storage`) to stderr, put them and Sanic's at `level`,
    and, for `json`, make every handler of Sanic's and ours write JSON lines. Call again once
    Sanic has set up its own handlers (it does when an app is made)."""
    formatter: logging.Formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    for name in OWN_LOGGERS:
        logger = logging.getLogger(name)
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
        user = f" user={printable(access.user)}" if access.user else ""
        self._lines.append(
            f"{self._clock.local_stamp(now)} INFO api.access: {printable(access.method)} "
            f"{printable(access.path)} {access.status} {access.duration_ms:.1f}ms "
            f"id={access.request_id} client={printable(access.client)}{user}\n"
        )

    def _json_line(self, now: float, access: Access) -> str:
        method, path = printable(access.method), printable(access.path)
        entry = {
            "time": self._clock.utc_iso(now),
            "level": "INFO",
            "logger": "api.access",
            "message": f"{method} {path} {access.status}",
            "request_id": access.request_id,
            "method": method,
            "path": path,
            "route": access.route,
            "status": access.status,
            "duration_ms": round(access.duration_ms, 1),
            "client": printable(access.client),
        }
        if access.user:
            entry["user"] = printable(access.user)
        return orjson.dumps(entry).decode() + "\n"

    def flush(self) -> None:
        """Write out every queued line."""
        if self._lines:
            lines, self._lines = self._lines, []
            stream = self._stream or sys.stderr
            stream.write("".join(lines))
            stream.flush()
