"""Request and response middleware: media type check, security headers, access log."""

from __future__ import annotations

import itertools
import re
import secrets
import time

from sanic import Sanic
from sanic.http import Http
from sanic.response import BaseHTTPResponse

from api.context import ApiRequest
from api.errors import ApiError, ErrorCode
from api.logs import Access, AccessLog
from api.metrics import Metrics
from api.validation import client_address

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A caller's request id is kept when it is 1-128 visible ASCII characters.
_REQUEST_ID = re.compile(r"[!-~]{1,128}")


def has_body(request: ApiRequest) -> bool:
    """True if the request announces a body (a non-zero Content-Length, or chunked)."""
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "transfer-encoding" in request.headers


def require_json(request: ApiRequest) -> None:
    """415 unless a request with a body sends it as application/json; runs before any handler."""
    if request.method in BODY_METHODS and has_body(request):
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise ApiError(
                ErrorCode.UNSUPPORTED_MEDIA_TYPE, "the request body must be application/json"
            )


def route_of(request: ApiRequest) -> str:
    """The route template that answered (`/message`), or `unmatched`: a label of few values."""
    route = request.route
    return f"/{route.path}" if route is not None else "unmatched"


def incoming_request_id(request: ApiRequest) -> str | None:
    """The caller's X-Request-ID when it is short and printable (kept and echoed), else None."""
    sent: str | None = request.headers.get("x-request-id")
    if sent is not None and _REQUEST_ID.fullmatch(sent):
        return sent
    return None


def register(
    app: Sanic,  # type: ignore[type-arg]
    *,
    access_log: AccessLog | None,
    metrics: Metrics | None,
    trust_proxy_headers: bool,
) -> None:
    """Install the middleware on `app`: security headers, request ids, and with an AccessLog a
    line per request (its client address from proxy headers when `trust_proxy_headers`), with
    Metrics a tally of it."""

    # Request ids: a random prefix per process and a counter, unique without a syscall each.
    prefix = secrets.token_hex(4)
    numbers = itertools.count()

    def new_request_id() -> str:
        return f"{prefix}{next(numbers) & 0xFFFFFFFF:08x}"

    async def start(request: ApiRequest) -> None:
        request.ctx.started = time.perf_counter()
        request.ctx.request_id = incoming_request_id(request) or new_request_id()
        require_json(request)

    async def finish(request: ApiRequest, response: BaseHTTPResponse) -> None:
        if app.ctx.stopping and isinstance(request.stream, Http):
            # Shutting down: answer, then close, so a busy keep-alive client moves elsewhere
            # instead of being cut off mid-request when the grace period ends.
            request.stream.keep_alive = False
        ctx = request.ctx
        request_id = ctx.request_id
        if not request_id:  # the request failed before its middleware ran (e.g. 413)
            request_id = new_request_id()
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Request-ID"] = request_id
        if access_log is None and metrics is None:
            return
        seconds = time.perf_counter() - ctx.started if ctx.started else 0.0
        route = route_of(request)
        status = response.status
        if metrics is not None:
            metrics.request(route, request.method, status, seconds)
        if access_log is not None:
            user = ctx.user
            # The path only: never the query string, headers, cookies or body.
            access_log.write(
                Access(
                    method=request.method,
                    path=request.path,
                    route=route,
                    status=status,
                    duration_ms=seconds * 1000,
                    request_id=request_id,
                    client=client_address(request, trust_proxy_headers),
                    user=user.name if user is not None else None,
                )
            )

    app.register_middleware(start, "request", priority=100)
    app.register_middleware(finish, "response", priority=100)
