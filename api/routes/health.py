"""Liveness and readiness probes."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse, Request
from sanic.response import json

from api import docs
from api.services import services
from storage.connection import ping


@docs.describe(
    "Liveness: 200 while the process runs",
    ok=(200, docs.STATUS_REPLY, "The process is up."),
    tag="health",
)
async def healthz(request: Request) -> HTTPResponse:
    """Answer while the process runs, whatever the state of Redis."""
    return json({"status": "ok"})


@docs.describe(
    "Readiness: 200 when Redis answers PING",
    ok=(200, docs.STATUS_REPLY, "Redis answers."),
    errors=(503,),
    tag="health",
)
async def readyz(request: Request) -> HTTPResponse:
    """Answer 200 when Redis answers PING, else 503 storage_unavailable."""
    await ping(services(request).redis)
    return json({"status": "ready"})


def blueprint() -> Blueprint:
    """A new blueprint with this module's routes."""
    bp = Blueprint("health")
    bp.add_route(healthz, "/healthz", methods=["GET"])
    bp.add_route(readyz, "/readyz", methods=["GET"])
    return bp
