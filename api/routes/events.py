"""GET /events/: new messages as Server-Sent Events, live, with gap-free resume."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from sanic import Blueprint, HTTPResponse

from api import docs, validation
from api.context import ApiRequest
from api.errors import ErrorCode
from api.guard import authenticated
from api.live import Event
from api.server import BoundedHttpProtocol

# What the first line of a stream, and a heartbeat, say (comments: EventSource ignores them).
CONNECTED = b": connected\n\n"
HEARTBEAT = b": ping\n\n"
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
CONTENT_TYPE = "text/event-stream; charset=utf-8"
DIRECT_BUFFER = 65536  # bytes the transport may hold before events wait in the stream's queue


class ChunkWriter:
    """Writes message events as chunks of the response past Sanic's send (a few coroutines and a
    signal per call), those of one turn of the event loop as one chunk. Only while the handler
    waits for an event (the stream asks it then), so nothing goes out of order: the flush is
    scheduled before anything that could wake the handler. Not while the client is behind:
    then events wait in the stream's queue, which bounds them."""

    def __init__(self, transport: asyncio.Transport, wrote: Callable[[], None]) -> None:
        self._transport = transport
        self._wrote = wrote  # Sanic times a response out when it writes nothing
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []

    def __call__(self, event: Event) -> bool:
        """Take `event` for the next chunk; False when the client is behind or gone."""
        transport = self._transport
        if transport.is_closing() or transport.get_write_buffer_size() > DIRECT_BUFFER:
            return False
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(sse(event))
        return True

    def _flush(self) -> None:
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(b"%x\r\n%b\r\n" % (len(data), data))
            self._wrote()


def sse(event: Event) -> bytes:
    """An event in the text/event-stream format."""
    if event.kind == "message":
        return b"id: %s\nevent: message\ndata: %s\n\n" % (event.event_id.encode(), event.data)
    if event.event_id:
        return b"id: %s\nevent: %s\ndata: {}\n\n" % (event.event_id.encode(), event.kind.encode())
    return b"event: %s\ndata: {}\n\n" % event.kind.encode()


@authenticated
async def events(request: ApiRequest) -> HTTPResponse | None:
    """Every message that enters your history, as it does; resumes after `Last-Event-ID` (or
    `?after=`) with what was missed first."""
    svc = request.services
    after = validation.resume_after(request)
    if request.method == "HEAD":  # what a GET would answer, with no stream behind it
        return HTTPResponse(status=200, headers=HEADERS, content_type=CONTENT_TYPE)
    stream = await svc.hub.open(request.ctx.session, request.ctx.claims, "sse", after)
    transport = cast(asyncio.Transport, request.transport)
    # Dropping the connection cancels this handler (closing it would wait for its writes first).
    stream.attach(transport.abort)
    try:
        response = await request.respond(headers=HEADERS, content_type=CONTENT_TYPE)
        await response.send(CONNECTED)
        protocol = transport.get_protocol()
        chunked = response.headers.get("transfer-encoding") == "chunked"  # (HTTP/1.0 is not)
        if chunked and isinstance(protocol, BoundedHttpProtocol):
            stream.attach(transport.abort, direct=ChunkWriter(transport, protocol.wrote))
        quiet = svc.live_heartbeat_seconds
        while True:
            event = await stream.next(quiet)
            if event is None:
                await response.send(HEARTBEAT)
                continue
            if event.kind == "close":
                break
            chunk = sse(event)
            while len(chunk) < 65536 and (queued := stream.next_nowait()):  # all that waits
                if queued.kind == "close":
                    await response.send(chunk)
                    chunk = b""
                    break
                chunk += sse(queued)
            if chunk:
                await response.send(chunk)
            if stream.closed is not None and stream.queue.empty():
                break
        await response.eof()
    finally:
        svc.hub.release(stream)
    return None


def blueprint() -> Blueprint:
    """A new blueprint with the stream and its description."""
    bp = Blueprint("events")
    docs.add_route(
        bp,
        "GET",
        "/events/",
        events,
        docs.Doc(
            "Live: your new messages as Server-Sent Events",
            "live",
            ok=(
                200,
                docs.EVENT_STREAM,
                "A `text/event-stream` that stays open: a first comment at once, then for every "
                "message entering your history (received, or sent from any device) `id: <event "
                "id>`, `event: message`, `data: <the message as JSON: id, from, to, text, "
                "sent_at>`; a comment at least every 15 s. With `Last-Event-ID` (what "
                "EventSource sends on reconnect) or `?after=` it first replays every message "
                "after that event, in order; `event: reset` (`data: {}`) first when the "
                "history no longer holds them (refetch `GET /messages/`). `event: end` when the "
                "session ends (logout, log out everywhere, a new password, the session ended, "
                "the account deleted, the token expired), then the stream closes.",
            ),
            errors=(
                *docs.AUTH_ERRORS,
                ErrorCode.VALIDATION_ERROR,
                ErrorCode.STREAMS_FULL,
                ErrorCode.LIVE_BUSY,
                ErrorCode.STORAGE_UNAVAILABLE,
            ),
            secured=True,
            content_type="text/event-stream",
            query=(("after", docs.text_schema(maxLength=100), docs.AFTER),),
            headers=(("Last-Event-ID", docs.text_schema(maxLength=100), docs.AFTER),),
        ),
    )
    return bp
