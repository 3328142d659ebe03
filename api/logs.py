"""Process-wide logging set-up, and the access log."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SANIC_LOGGERS = ("sanic.root", "sanic.error", "sanic.server", "sanic.access")


def configure_logging(level: str) -> None:
    """Send the `api` loggers to stderr and put them and Sanic's at `level`."""
    logger = logging.getLogger("api")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)
    logger.setLevel(level)
    for name in SANIC_LOGGERS:
        logging.getLogger(name).setLevel(level)


class AccessLog:
    """One line per request, written in batches at most FLUSH_SECONDS apart.

    A logging record and a write to stderr for every request cost about a sixth of the whole
    request here (measured with `make bench`); a line appended to a buffer costs almost nothing,
    and one write carries all the lines of a few dozen milliseconds.
    """

    FLUSH_SECONDS = 0.05

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lines: list[str] = []
        self._second = -1
        self._stamp = ""

    def write(self, message: str) -> None:
        """Queue `message` as a line with a timestamp; a flush follows within FLUSH_SECONDS."""
        now = time.time()
        if int(now) != self._second:
            self._second = int(now)
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        if not self._lines:
            asyncio.get_running_loop().call_later(self.FLUSH_SECONDS, self.flush)
        self._lines.append(f"{self._stamp} INFO api.access: {message}\n")

    def flush(self) -> None:
        """Write out every queued line."""
        if self._lines:
            lines, self._lines = self._lines, []
            stream = self._stream or sys.stderr
            stream.write("".join(lines))
            stream.flush()
