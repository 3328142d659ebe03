"""Start the API: `python run.py` (what `make run` does), configured by the environment."""

from __future__ import annotations

import atexit
import shutil
import sys
from functools import partial

from sanic import Sanic
from sanic.worker.loader import AppLoader

from api.app import create_app
from api.logs import configure_logging
from api.server import BoundedHttpProtocol
from api.settings import Settings, SettingsError
from api.startup import (
    StartupError,
    check_port,
    listen_backlog,
    prepare,
    prepare_metrics_dir,
    raise_open_file_limit,
)


def main() -> int:
    """Read the settings, settle Redis and the secret, then serve with the configured workers."""
    try:
        settings = Settings.from_env()
        configure_logging(settings.log_level, settings.log_format)
        check_port(settings.host, settings.port)
        settings = prepare(settings)
        settings, made_dir = prepare_metrics_dir(settings)
    except (SettingsError, StartupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if made_dir is not None:
        atexit.register(shutil.rmtree, made_dir, ignore_errors=True)
    raise_open_file_limit(settings)
    backlog = listen_backlog(settings)
    if settings.workers == 1:
        # One worker runs in this very process: no worker manager to start, signal or ack.
        app = create_app(settings)
        app.prepare(
            host=settings.host,
            port=settings.port,
            single_process=True,
            access_log=False,
            motd=False,
            protocol=BoundedHttpProtocol,
            backlog=backlog,
        )
        Sanic.serve_single(app)
        return 0
    loader = AppLoader(factory=partial(create_app, settings))
    app = loader.load()
    configure_logging(settings.log_level, settings.log_format)  # over Sanic's own set-up
    app.prepare(
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=False,
        motd=False,
        protocol=BoundedHttpProtocol,
        backlog=backlog,
    )
    Sanic.serve(primary=app, app_loader=loader)
    return 0


if __name__ == "__main__":
    sys.exit(main())
