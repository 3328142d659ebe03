"""The ceiling: a bare Sanic endpoint returning a small JSON object, served like the API."""

from __future__ import annotations

import os

from sanic import HTTPResponse, Request, Sanic
from sanic.response import json

app = Sanic("bare")
# Bare: no access log, and no Sanic Extensions (Sanic loads them by itself when installed, and
# they cost time on every request).
app.config.update({"ACCESS_LOG": False, "AUTO_EXTEND": False})


@app.route("/bare", methods=["GET", "POST"])
async def bare(request: Request) -> HTTPResponse:
    """Answer with a small JSON object."""
    return json({"status": "ok"})


if __name__ == "__main__":
    workers = int(os.environ.get("WORKERS", "1"))
    app.run(
        host="127.0.0.1",
        port=int(os.environ["PORT"]),
        workers=workers,
        single_process=workers == 1,
        access_log=False,
        motd=False,
    )
