"""Liveness and readiness probes."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse

from api import docs
from api.context import ApiRequest
from api.errors import ErrorCode, ShuttingDown
from api.responses import json
from storage.errors import StorageUnavailable


async def healthz(request: ApiRequest) -> HTTPResponse:
    """Answer while the process runs, whatever the state of Redis."""
    return json({"status": "ok"})


async def readyz(request: ApiRequest) -> HTTPResponse:
    """Answer 200 when Redis accepts a write, else 503 storage_unavailable; 503 shutting_down
    once the service is stopping."""
    svc = request.services
    if not request.app.ctx.stopping:
        await svc.health.check_writable()
        if not svc.hub.healthy:  # a live stream's node cannot be reached: it would miss events
            raise StorageUnavailable("the subscriber cannot reach Redis")
    if request.app.ctx.stopping:  # also when it began while Redis was asked
        raise ShuttingDown
    return json({"status": "ready"})


def blueprint() -> Blueprint:
    """A new blueprint with the probes and their descriptions."""
    bp = Blueprint("health")
    docs.add_route(
        bp,
        "GET",
        "/healthz",
        healthz,
        docs.Doc(
            "Liveness: 200 while the process runs",
            "health",
            ok=(200, docs.STATUS_REPLY, "The process is up."),
        ),
    )
    docs.add_route(
        bp,
        "GET",
        "/readyz",
        readyz,
        docs.Doc(
            "Readiness: 200 when Redis accepts writes",
            "health",
            ok=(200, docs.STATUS_REPLY, "Redis accepts writes."),
            errors=(ErrorCode.STORAGE_UNAVAILABLE, ErrorCode.SHUTTING_DOWN),
        ),
    )
    return bp
