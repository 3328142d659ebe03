"""GET /ws/: new messages as WebSocket frames, and messages sent over the same socket.

Everything that can refuse a socket (the token, a cookie-authenticated socket's Origin, the
limits, the subscription and where the stream starts) happens before the upgrade, in the
blueprint's request middleware, so a refusal is an ordinary JSON error and a socket that opens
is already subscribed. Frames the server sends: `message`, `reset`, `sent` and `error`; a session
that ends closes the socket with code 4401, a slow client's with 1008, a stopping service's with
1001.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from sanic import Blueprint, HTTPResponse
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets import http11
from websockets.datastructures import Headers
from websockets.server import ServerProtocol

from api import docs, validation
from api.auth import session_of
from api.context import ApiRequest
from api.errors import (
    ERROR_FORMAT,
    ApiError,
    ErrorCode,
    ValidationError,
    error_body,
    to_api_error,
)
from api.guard import authenticate
from api.live import Event, Stream
from api.transports import HeaderTransport

SESSION_ENDED = 4401  # a close code of the application's own (4000-4999)
TOO_SLOW = 1008
GOING_AWAY = 1001


def frame(event: Event) -> str:
    """An event as the JSON text frame the server sends."""
    if event.kind == "message":
        return f'{{"type":"message","event_id":"{event.event_id}","message":{event.data.decode()}}}'
    return '{"type":"reset"}'


def own_origin(request: ApiRequest) -> str:
    """The service's origin as the request reached it."""
    return f"{'https' if request.scheme in ('https', 'wss') else 'http'}://{request.host}"


def handshake_refusal(request: ApiRequest) -> ApiError | None:
    """Why the WebSocket handshake would fail, asked of the websockets package that will make
    it (RFC 6455 4.2.1, and header values it can hold) before anything is opened for it."""
    try:
        # What Sanic's handshake gives websockets (WebSocketProtocol.sanic_request_to_ws_request).
        handshake = http11.Request(path=request.path, headers=Headers(request.headers))
        answer = ServerProtocol().accept(handshake)
    except Exception:  # a header value websockets cannot hold (a control character)
        return ApiError(ErrorCode.BAD_REQUEST, "a header of the handshake is malformed")
    if answer.status_code == 101:
        return None
    if answer.status_code == 426:
        return ApiError(ErrorCode.UPGRADE_REQUIRED, "connect with a WebSocket client")
    return ApiError(ErrorCode.BAD_REQUEST, "the WebSocket handshake is malformed")


async def before_upgrade(request: ApiRequest) -> HTTPResponse | None:
    """Authenticate, refuse a cookie-authenticated socket of another origin (cross-site
    WebSocket hijacking), and open the stream, all before the handshake."""
    refusal = handshake_refusal(request)
    if refusal is not None:
        raise refusal
    claims = authenticate(request)
    session = session_of(claims)
    request.ctx.authenticate(claims, session)
    svc = request.services
    if HeaderTransport.read(request) is None:  # the cookie: a browser's, maybe another site's
        origin = request.headers.get("origin", "")
        allowed = {own_origin(request), *svc.allowed_origins}
        if origin not in allowed:
            raise ApiError(
                ErrorCode.ORIGIN_REFUSED,
                "a cookie-authenticated WebSocket must come from the service's own origin",
            )
    after = validation.resume_after(request)
    request.ctx.stream = await svc.hub.open(session, claims, "ws", after)
    return None


async def release_unclaimed(request: ApiRequest, response: HTTPResponse) -> None:
    """The handshake failed after the stream was opened: give the stream back now (else it
    would wait for its claim deadline)."""
    stream = request.ctx.stream
    if stream is not None and not stream.attached:
        request.services.hub.release(stream)


async def websocket(request: ApiRequest, ws: WebsocketImplProtocol) -> None:
    """Send the stream's events; answer each `send` frame."""
    stream = request.ctx.stream
    assert stream is not None  # opened before the upgrade
    stream.attach(lambda: ws.fail_connection(TOO_SLOW, "slow"))
    svc = request.services
    sender = asyncio.ensure_future(_send_events(ws, stream))
    try:
        while not sender.done():
            receive = asyncio.ensure_future(ws.recv())
            await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
            if not receive.done():
                receive.cancel()
                break
            raw = receive.result()
            if raw is None:  # the client closed the socket
                break
            await ws.send(orjson.dumps(await _answer(request, raw)).decode())
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        svc.hub.release(stream)


async def _send_events(ws: WebsocketImplProtocol, stream: Stream) -> None:
    while True:
        event = await stream.next(3600.0)  # the socket pings by itself
        if event is None:
            continue
        if event.kind == "close":
            code = {"ended": SESSION_ENDED, "expired": SESSION_ENDED, "slow": TOO_SLOW}
            await ws.close(code.get(stream.closed or "", GOING_AWAY), stream.closed or "")
            return
        if event.kind == "end":
            continue  # the close that follows says it
        await ws.send(frame(event))


async def _answer(request: ApiRequest, raw: str | bytes) -> dict[str, Any]:
    """What to answer a frame the client sent: `sent` or `error`."""
    try:
        return await _send(request, raw)
    except Exception as exc:
        error = to_api_error(exc)
        answer: dict[str, Any] = {"type": "error", **error_body(error)}
        if "Retry-After" in error.headers:  # what HTTP says in the header
            answer["retry_after"] = int(error.headers["Retry-After"])
        return answer


async def _send(request: ApiRequest, raw: str | bytes) -> dict[str, Any]:
    if isinstance(raw, bytes):
        raise ValidationError("frame", "must be a text frame of JSON")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiError(ErrorCode.INVALID_JSON, "the frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValidationError("frame", "must be a JSON object")
    if data.get("type") != "send":
        raise ValidationError("type", "must be send")
    svc = request.services
    session = request.ctx.session
    text = validation.text(data, svc.settings.message_max_chars)
    recipient = validation.recipient(data, session.name)
    key = validation.optional_string(data, "idempotency_key")
    if key is not None:
        key = validation.idempotency_key_value(key, "idempotency_key")
    if (
        recipient == session.name
        and validation.last_count(text, svc.settings.message_history_limit) is not None
    ):
        raise ValidationError("text", "`last N` is a query: ask it with POST /message/")
    sent = await svc.messaging.send(session, recipient, text, key)
    return {"type": "sent", "id": sent.id}


def blueprint() -> Blueprint:
    """A new blueprint with the socket, its pre-upgrade checks and its description."""
    bp = Blueprint("websocket")
    bp.on_request(before_upgrade)
    bp.middleware(release_unclaimed, "response")
    # OpenAPI cannot model a socket: its upgrade's GET is described, with every refusal it may
    # answer before the upgrade (Swagger UI cannot try it).
    doc = docs.Doc(
        "Live: your new messages over a WebSocket, and sending over it",
        "live",
        ok=(
            101,
            None,
            'Switching protocols. The server sends JSON text frames: `{"type": "message", '
            '"event_id", "message": {id, from, to, text, sent_at}}` for every message entering '
            'your history, `{"type": "reset"}` when a resume asked for messages no longer kept, '
            '`{"type": "sent", "id"}` and `{"type": "error", "error", "message"}` answering '
            'the client\'s `{"type": "send", "to"?, "text", "idempotency_key"?}` frames (the '
            "rules and codes of `POST /message/`). A session that ends closes the socket with "
            "code 4401; a client that does not read, 1008; a stopping service, 1001.",
        ),
        errors=(
            ErrorCode.BAD_REQUEST,
            ErrorCode.UPGRADE_REQUIRED,
            *docs.AUTH_ERRORS,
            ErrorCode.ORIGIN_REFUSED,
            ErrorCode.VALIDATION_ERROR,
            ErrorCode.STREAMS_FULL,
            ErrorCode.LIVE_BUSY,
            ErrorCode.STORAGE_UNAVAILABLE,
        ),
        secured=True,
        query=(("after", docs.text_schema(maxLength=100), docs.AFTER),),
    )
    bp.add_websocket_route(
        docs.documented(websocket, doc), "/ws/", name="websocket", error_format=ERROR_FORMAT
    )
    return bp
