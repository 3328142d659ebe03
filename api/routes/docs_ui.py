"""Interactive docs: Swagger UI served by the service itself, with no request leaving it.

The Swagger UI files come from the `swagger-ui-py` package (it ships a current Swagger UI 5; only
its static files are used); the page and the script that starts it are this project's.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui
from sanic import Blueprint

from api.static_files import STRICT_POLICY, static_blueprint

STATIC = Path(__file__).resolve().parent.parent / "static"
SWAGGER_UI = Path(swagger_ui.__file__).resolve().parent / "static"
# Swagger UI draws some icons from data: URIs and sets styles from script; nothing else differs.
DOCS_POLICY = STRICT_POLICY.replace("img-src 'self'", "img-src 'self' data:")


def blueprint() -> Blueprint:
    """The docs page and its assets (the document itself is sanic-ext's /docs/openapi.json)."""
    return static_blueprint(
        "docs_ui",
        index=("/docs", STATIC / "docs.html"),
        assets_prefix="/docs/assets",
        assets={
            "swagger-ui-bundle.js": SWAGGER_UI / "swagger-ui-bundle.js",
            "swagger-ui.css": SWAGGER_UI / "swagger-ui.css",
            "favicon-32x32.png": SWAGGER_UI / "favicon-32x32.png",
            "docs.js": STATIC / "docs.js",
        },
        policy=DOCS_POLICY,
    )
