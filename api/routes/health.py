"""Liveness and readiness probes."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse, Request

from api import docs
from api.responses import json
from api.services import services
from api.settings import Settings
from storage.connection import ping


async def healthz(request: Request) -> HTTPResponse:
    """Answer while the process runs, whatever the state of Redis."""
    return json({"status": "ok"})


async def readyz(request: Request) -> HTTPResponse:
    """Answer 200 when Redis answers PING, else 503 storage_unavailable."""
    await ping(services(request).redis)
    return json({"status": "ready"})


def blueprint(settings: Settings) -> Blueprint:
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
            "Readiness: 200 when Redis answers PING",
            "health",
            ok=(200, docs.STATUS_REPLY, "Redis answers."),
            errors=(503,),
        ),
    )
    return bp
