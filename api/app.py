"""The application factory: the only place an app is built and wired."""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

import orjson
from sanic import Sanic
from sanic_ext import openapi
from sanic_ext.extensions.openapi.builders import OperationStore
from sanic_ext.extensions.openapi.extension import OpenAPIExtension

from api import middleware
from api.context import ApiRequest, App, AppCtx
from api.errors import ERROR_FORMAT, JsonErrorHandler
from api.logs import AccessLog, configure_logging
from api.metrics import Metrics
from api.routes import (
    account,
    auth,
    blocks,
    client,
    docs_ui,
    events,
    health,
    messages,
    sessions,
    websocket,
)
from api.routes import metrics as metrics_route
from api.services import Services
from api.settings import Settings, SettingsError, sanic_config
from storage.connection import MEMORY_URL, Client, create_redis, initialize

logger = logging.getLogger("api")

DESCRIPTION = """Sign up, log in to get a JWT (in the body and an HttpOnly cookie), send messages
with it, ask for your last N messages, and log out so that the token stops working everywhere.

Authenticate with the `token` header, `Authorization: Bearer <token>`, or the `token` cookie.
Every error is `{"error": "<code>", "message": "<text>"}`; each operation lists its codes.

**Trying it here**: call `POST /login/`, copy the `token` from the answer, press **Authorize**
and paste it into `tokenHeader` (or `bearer`). Swagger UI cannot send the `X-CSRF-Token` header
that a cookie-authenticated request needs to change state, so after a login in this page (which
also sets the cookies) `POST /message/` with the cookie alone answers 403 `csrf_failed`: use
the token header."""


class OpenAPIDocument(OpenAPIExtension):  # type: ignore[no-untyped-call]
    """sanic-ext's OpenAPI extension without its UIs (whose start-up line links to one)."""

    name = "apidocument"

    def label(self) -> str:
        """What the start-up log shows for the extension."""
        return "/docs/openapi.json (UI at /docs)"


def _dumps(value: Any, **_: Any) -> bytes:
    # The OpenAPI document has integer keys (status codes).
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def create_app(settings: Settings | None = None, *, redis: Client | None = None) -> App:
    """Build the app; `redis` injects a client (tests), else one is made from the settings.

    The settings must carry a JWT secret: a factory that made one up would give each worker a
    key of its own. `run.py` (through `startup.prepare`) generates one, once, for all workers.
    """
    settings = settings or Settings.from_env()
    if settings.jwt_secret is None:
        raise SettingsError(
            "JWT_SECRET is not set: set it, or start the service with run.py, which generates "
            "one for all workers"
        )
    metrics = Metrics(settings.metrics_dir) if settings.metrics else None
    # One app per process; the tests make many, in Sanic's test mode.
    app: App = Sanic(
        "messaging_api",
        ctx=AppCtx(metrics),
        request_class=ApiRequest,  # type: ignore[arg-type]  # Sanic types it untyped-generic
        error_handler=JsonErrorHandler(),
        dumps=_dumps,
        strict_slashes=False,
    )
    # In every worker process, not only the main one; after Sanic has set up its handlers.
    configure_logging(settings.log_level, settings.log_format)
    app.config.update(
        {
            "FALLBACK_ERROR_FORMAT": ERROR_FORMAT,
            # A WebSocket frame is at most what a request body may be.
            "WEBSOCKET_MAX_SIZE": settings.request_max_size,
            **sanic_config(settings),
        }
    )
    # Of Sanic Extensions only the OpenAPI document: the others (dependency injection, automatic
    # HEAD/OPTIONS routes, CORS...) would cost time on every request, or at every start, for
    # nothing this API uses, and its UIs load their files from CDNs (docs_ui serves its own).
    app.extend(
        built_in_extensions=False,
        extensions=[OpenAPIDocument],
        config={
            "oas_ui_default": None,
            "oas_ui_redoc": False,
            "oas_ui_swagger": False,
            "oas_url_prefix": "/docs",
        },
    )
    _describe_api(app)
    app.blueprint(auth.blueprint())
    app.blueprint(sessions.blueprint())
    app.blueprint(account.blueprint())
    app.blueprint(messages.blueprint(settings))  # its limits are in its document
    app.blueprint(blocks.blueprint())
    app.blueprint(events.blueprint())
    app.blueprint(websocket.blueprint())
    app.blueprint(health.blueprint())
    app.blueprint(docs_ui.blueprint())
    app.blueprint(client.blueprint())
    if metrics is not None:
        app.blueprint(metrics_route.blueprint(settings))
    _answer_head_like_get(app)
    _describe_websockets(app)
    access_log = AccessLog(json=settings.log_format == "json") if settings.access_log else None
    middleware.register(
        app,
        access_log=access_log,
        metrics=metrics,
        trust_proxy_headers=settings.trusts_proxy_headers,
    )

    @app.before_server_start
    async def open_storage(app: App) -> None:
        client = redis
        if client is None:
            url = settings.redis_url or MEMORY_URL
            client = create_redis(url, cluster=settings.redis_cluster)
        app.ctx.owns_redis = redis is None
        await initialize(client)
        app.ctx.services = Services.build(settings, client, metrics)
        if metrics is not None:
            metrics.start()

    @app.before_server_stop
    async def stop_taking_requests(app: App) -> None:
        # From now on /readyz answers 503 and every response closes its connection; the live
        # streams close (their clients reconnect elsewhere, resuming).
        app.ctx.stopping = True
        app.ctx.services.hub.shutdown()

    @app.after_server_stop
    async def close_storage(app: App) -> None:
        services = app.ctx.services
        await services.hub.aclose()
        services.hasher.close()
        if access_log is not None:
            access_log.flush()
        if metrics is not None:
            await metrics.stop()
        # The pipelined connection belongs to this app's loop, even with an injected client.
        if services.pipeline is not None:
            await services.pipeline.aclose()
        if app.ctx.owns_redis:
            await services.redis.aclose()

    return app


def _answer_head_like_get(app: App) -> None:
    """HEAD wherever GET is (RFC 9110 9.3.2): the same handler, its body left unsent by Sanic.
    Undocumented, as HEAD goes without saying."""
    for route in list(app.router.routes):
        if "GET" not in route.methods or "HEAD" in route.methods or route.extra.websocket:
            continue

        async def head(
            request: ApiRequest, *args: Any, handler: Any = route.handler, **kwargs: Any
        ) -> Any:
            response = handler(request, *args, **kwargs)
            return await response if inspect.isawaitable(response) else response

        app.add_route(
            openapi.exclude()(head),
            f"/{route.path}",
            methods=["HEAD"],
            name=f"head_{route.name.replace('.', '_')}",
            error_format=ERROR_FORMAT,
        )


def _describe_websockets(app: App) -> None:
    """Sanic serves a WebSocket route by a partial of its own around the handler: sanic-ext looks
    its description up by that partial, so the handler's is filed under it too."""
    store = OperationStore()  # type: ignore[no-untyped-call]
    for route in app.router.routes:
        if route.extra.websocket and isinstance(route.handler, functools.partial):
            store[route.handler] = store[route.handler.args[0]]


def _describe_api(app: App) -> None:
    oas = app.ext.openapi
    oas.describe("Messaging API", version="0.1.0", description=DESCRIPTION)
    oas.add_security_scheme("tokenHeader", "apiKey", location="header", name="token")
    oas.add_security_scheme("bearer", "http", scheme="bearer", bearer_format="JWT")
    oas.add_security_scheme("cookie", "apiKey", location="cookie", name="token")
