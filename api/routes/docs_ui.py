"""Interactive docs: Swagger UI served by the service itself, with no request leaving it.

The Swagger UI files come from the `swagger-ui-py` package (it ships a current Swagger UI 5; only
its static files are used); the page and the script that starts it are this project's. Every
response here carries a Content-Security-Policy that allows the service's own origin only.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from sanic import Blueprint, HTTPResponse, Request
from sanic.exceptions import NotFound
from sanic.response import file
from sanic_ext import openapi

STATIC = Path(__file__).resolve().parent.parent / "static"
SWAGGER_UI = Path(swagger_ui.__file__).resolve().parent / "static"
ASSETS = {
    "swagger-ui-bundle.js": SWAGGER_UI / "swagger-ui-bundle.js",
    "swagger-ui.css": SWAGGER_UI / "swagger-ui.css",
    "favicon-32x32.png": SWAGGER_UI / "favicon-32x32.png",
    "docs.js": STATIC / "docs.js",
}
# Swagger UI draws some icons from data: URIs in its stylesheet; nothing else is allowed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


async def index(request: Request) -> HTTPResponse:
    """The Swagger UI page."""
    return await file(STATIC / "docs.html", mime_type="text/html; charset=utf-8")


async def asset(request: Request, name: str) -> HTTPResponse:
    """One of the page's scripts, stylesheets or images."""
    path = ASSETS.get(name)
    if path is None:
        raise NotFound(f"Requested URL {request.path} not found")
    return await file(path, headers={"Cache-Control": "public, max-age=3600"})


def add_security_headers(request: Request, response: HTTPResponse) -> None:
    """The docs pages may load nothing from elsewhere and be framed by nobody."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"


def blueprint() -> Blueprint:
    """The docs page and its assets (the document itself is sanic-ext's /docs/openapi.json)."""
    bp = Blueprint("docs_ui")
    bp.add_route(openapi.exclude()(index), "/docs", methods=["GET"], name="index")
    bp.add_route(openapi.exclude()(asset), "/docs/assets/<name:str>", methods=["GET"], name="asset")
    bp.middleware(add_security_headers, "response")
    return bp
