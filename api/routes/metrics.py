"""GET /metrics: the whole service's metrics in Prometheus's text format."""

from __future__ import annotations

import hmac

from sanic import Blueprint, HTTPResponse
from sanic.response import raw
from sanic_ext import openapi

from api.context import ApiRequest
from api.errors import ERROR_FORMAT, ApiError, ErrorCode
from api.metrics import CONTENT_TYPE
from api.settings import Settings
from api.transports import bearer_credentials


def blueprint(settings: Settings) -> Blueprint:
    """The metrics route; with METRICS_TOKEN set, only `Authorization: Bearer <it>` reads it."""
    expected = settings.metrics_token.encode() if settings.metrics_token else None

    async def metrics(request: ApiRequest) -> HTTPResponse:
        """Every worker's tallies added up, rendered by prometheus-client."""
        if expected is not None:
            sent = bearer_credentials(request.headers.get("authorization", "")) or ""
            # Bytes that are not UTF-8 stay what they were (Sanic keeps them as surrogates).
            if not hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), expected):
                raise ApiError(
                    ErrorCode.METRICS_UNAUTHORIZED,
                    "the metrics need Authorization: Bearer <METRICS_TOKEN>",
                    {"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        tallies = request.app.ctx.metrics
        assert tallies is not None  # the route exists only with metrics
        return raw(tallies.text(), content_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    bp = Blueprint("metrics")
    # An operator's endpoint in Prometheus's format, not part of the JSON API's document.
    bp.add_route(
        openapi.exclude()(metrics),
        "/metrics",
        methods=["GET"],
        name="metrics",
        error_format=ERROR_FORMAT,
    )
    return bp
