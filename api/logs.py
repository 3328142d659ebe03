"""Process-wide logging set-up: the service's own loggers and Sanic's, at LOG_LEVEL."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SANIC_LOGGERS = ("sanic.root", "sanic.error", "sanic.server", "sanic.access")


def configure_logging(level: str) -> None:
    """Send the `api` loggers to stderr and put them and Sanic's at `level`."""
    logger = logging.getLogger("api")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
    for name in SANIC_LOGGERS:
        logging.getLogger(name).setLevel(level)
