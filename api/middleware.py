"""Request and response middleware: media type check, security headers, access log."""

from __future__ import annotations

import itertools
import secrets
import time

from sanic import Request, Sanic
from sanic.http import Http
from sanic.response import BaseHTTPResponse

from api.errors import ApiError, ErrorCode
from api.logs import AccessLog

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def has_body(request: Request) -> bool:
    """True if the request announces a body (a non-zero Content-Length, or chunked)."""
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in request.headers


def require_json(request: Request) -> None:
    """415 unless a request with a body sends it as application/json; runs before any handler."""
    if request.method in BODY_METHODS and has_body(request):
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise ApiError(
                ErrorCode.UNSUPPORTED_MEDIA_TYPE, "the request body must be application/json"
            )


def register(app: Sanic, *, access_log: AccessLog | None) -> None:  # type: ignore[type-arg]
    """Install the middleware on `app`; with an AccessLog, write a line per request to it."""

    # Request ids: a random prefix per process and a counter, unique without a syscall each.
    prefix = secrets.token_hex(4)
    numbers = itertools.count()

    async def start(request: Request) -> None:
        request.ctx.started = time.perf_counter()
        request.ctx.request_id = f"{prefix}{next(numbers) & 0xFFFFFFFF:08x}"
        require_json(request)

    async def finish(request: Request, response: BaseHTTPResponse) -> None:
        if app.ctx.stopping and isinstance(request.stream, Http):
            # Shutting down: answer, then close, so a busy keep-alive client moves elsewhere
            # instead of being cut off mid-request when the grace period ends.
            request.stream.keep_alive = False
        request_id = getattr(request.ctx, "request_id", None)
        if request_id is None:  # the request failed before its middleware ran (e.g. 413)
            request_id = f"{prefix}{next(numbers) & 0xFFFFFFFF:08x}"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Request-ID"] = request_id
        if access_log is not None:
            started = getattr(request.ctx, "started", None)
            duration = (time.perf_counter() - started) * 1000 if started else 0.0
            # The path only: never the query string, headers, cookies or body.
            access_log.write(
                f"{request.method} {request.path} {response.status} {duration:.1f}ms "
                f"id={request_id}"
            )

    app.register_middleware(start, "request", priority=100)
    app.register_middleware(finish, "response", priority=100)
