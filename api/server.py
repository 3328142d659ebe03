"""The HTTP/1.1 connection: a request must arrive whole within REQUEST_TIMEOUT of its first byte.

Sanic restarts its request timer on every byte received, so a client that sends one header line
at a time keeps a request (and a connection) open forever. Here the timer starts at the request's
first byte and is never restarted until the request has been read. At shutdown, a request already
received but not yet read is answered rather than dropped with its idle-looking connection.
"""

from __future__ import annotations

from time import monotonic
from typing import Any, cast

from sanic.http import Http, Stage
from sanic.server.protocols.websocket_protocol import WebSocketProtocol


class BoundedHttp(Http):
    """Sanic's HTTP/1.1 state machine, telling its protocol when each request starts."""

    __slots__ = ()

    def init_for_request(self) -> None:
        """Reset for the next request; it starts now if its bytes are already here."""
        super().init_for_request()  # type: ignore[no-untyped-call]
        protocol = cast(BoundedHttpProtocol, self.protocol)
        protocol.request_started = monotonic() if self.recv_buffer else None


class BoundedHttpProtocol(WebSocketProtocol):
    """Sanic's HTTP/1.1 protocol (the one that can upgrade to a WebSocket: `GET /ws/`) with the
    whole request bounded by REQUEST_TIMEOUT."""

    HTTP_CLASS = BoundedHttp
    __slots__ = ("request_started",)

    def __init__(self, **kwargs: Any) -> None:
        self.request_started: float | None = None
        super().__init__(**kwargs)

    def data_received(self, data: bytes) -> None:
        """Note when the first byte of a request arrives, then hand the data to Sanic."""
        if self.request_started is None:
            self.request_started = monotonic()
        super().data_received(data)  # type: ignore[no-untyped-call]

    def wrote(self) -> None:
        """Bytes went out past `send` (a live stream's events, `api/routes/events.py`): the
        response is not idle, as Sanic's own send would have noted."""
        self._time = monotonic()

    def close_if_idle(self) -> bool:
        """At shutdown, close the connection if no request is under way; a request whose bytes
        have arrived but are not read yet is under way (it is answered, with Connection: close)."""
        if self.recv_buffer:
            return False
        # A WebSocket's answer is None while its closing handshake runs: not closed yet.
        return bool(super().close_if_idle())  # type: ignore[no-untyped-call]

    def check_timeouts(self) -> None:
        """Time a request being received from its first byte, not its last."""
        http = getattr(self, "_http", None)
        started = self.request_started
        if (
            http is not None
            and started is not None
            and http.stage is Stage.REQUEST
            and monotonic() - started > self.request_timeout
        ):
            self._time = started  # Sanic's own check then times the request out: 408
        super().check_timeouts()  # type: ignore[no-untyped-call]
