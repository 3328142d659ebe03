"""Serving a fixed set of files (the web client, the docs page) from memory, with ETags and a
strict Content-Security-Policy."""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sanic import Blueprint, HTTPResponse, Request
from sanic.exceptions import NotFound
from sanic.response import raw
from sanic_ext import openapi

from api.errors import ERROR_FORMAT

# Scripts, styles, images and calls from the service's own origin only; no inline script or style,
# no plugins, no framing, no form posting elsewhere.
STRICT_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


@dataclass(frozen=True, slots=True)
class StaticFile:
    """A file's bytes, media type and entity tag."""

    body: bytes
    content_type: str
    etag: str

    @classmethod
    def read(cls, path: Path) -> StaticFile:
        """Read `path` once; its ETag is a hash of its bytes."""
        body = path.read_bytes()
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "text/javascript"):
            kind += "; charset=utf-8"
        return cls(body, kind, f'"{hashlib.sha256(body).hexdigest()[:32]}"')

    def response(self, request: Request, headers: Mapping[str, str]) -> HTTPResponse:
        """200 with the body, or 304 when the client has this very version."""
        common = {**headers, "ETag": self.etag, "Cache-Control": "no-cache"}
        sent = request.headers.get("if-none-match", "")
        if self.etag in (tag.strip() for tag in sent.split(",")) or sent.strip() == "*":
            return HTTPResponse(status=304, headers=common)
        return raw(self.body, content_type=self.content_type, headers=common)


def static_blueprint(
    name: str,
    *,
    index: tuple[str, Path],
    assets_prefix: str,
    assets: Mapping[str, Path],
    policy: str = STRICT_POLICY,
) -> Blueprint:
    """A blueprint serving the page `index` (path, file) and the files `assets` (by name) under
    `assets_prefix`, every answer under `policy`. Undocumented in the OpenAPI document."""
    page = StaticFile.read(index[1])
    files = {asset: StaticFile.read(path) for asset, path in assets.items()}
    headers = {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }

    async def serve_index(request: Request) -> HTTPResponse:
        return page.response(request, headers)

    async def serve_asset(request: Request, asset: str) -> HTTPResponse:
        found = files.get(asset)
        if found is None:
            raise NotFound(f"Requested URL {request.path} not found")
        return found.response(request, headers)

    bp = Blueprint(name)
    bp.add_route(
        openapi.exclude()(serve_index),
        index[0],
        methods=["GET"],
        name="index",
        error_format=ERROR_FORMAT,
    )
    bp.add_route(
        openapi.exclude()(serve_asset),
        f"{assets_prefix}/<asset:str>",
        methods=["GET"],
        name="asset",
        error_format=ERROR_FORMAT,
    )
    return bp
