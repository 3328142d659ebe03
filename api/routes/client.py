"""The web client at `/`: plain HTML, CSS and JavaScript from this repository, no build step."""

from __future__ import annotations

from pathlib import Path

from sanic import Blueprint

from api.static_files import static_blueprint

CLIENT = Path(__file__).resolve().parent.parent / "static" / "client"


def blueprint() -> Blueprint:
    """`/` and the client's script and stylesheet under `/app/`."""
    return static_blueprint(
        "client",
        index=("/", CLIENT / "index.html"),
        assets_prefix="/app",
        assets={"app.js": CLIENT / "app.js", "app.css": CLIENT / "app.css"},
    )
