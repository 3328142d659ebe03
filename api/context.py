"""The typed contexts of the app and of each request, so that mypy checks every `ctx` access."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING

from sanic import Request, Sanic
from sanic.config import Config

if TYPE_CHECKING:
    from api.live import Stream
    from api.metrics import Metrics
    from api.security import TokenClaims
    from api.services import Services
    from storage.models import Session


class AppCtx(SimpleNamespace):
    """What an app keeps: its services (built when its worker starts), its metrics, and whether
    it is shutting down."""

    metrics: Metrics | None
    stopping: bool
    owns_redis: bool
    _services: Services | None

    def __init__(self, metrics: Metrics | None = None) -> None:
        super().__init__(metrics=metrics, stopping=False, owns_redis=False, _services=None)

    @property
    def services(self) -> Services:
        """The worker's services; only once the server has started."""
        if self._services is None:
            raise RuntimeError("the app's services are built when its server starts")
        return self._services

    @services.setter
    def services(self, services: Services) -> None:
        self._services = services


class RequestCtx(SimpleNamespace):
    """What a request carries: when it started, its id, and, once the guard has let it in, the
    verified token's claims and session."""

    started: float
    request_id: str
    user: TokenClaims | None
    stream: Stream | None  # a WebSocket's, opened before the upgrade
    _session: Session | None

    def __init__(self) -> None:
        super().__init__(started=0.0, request_id="", user=None, stream=None, _session=None)

    def authenticate(self, claims: TokenClaims, session: Session) -> None:
        """Record the verified token of the request."""
        self.user, self._session = claims, session

    @property
    def claims(self) -> TokenClaims:
        """The verified token's claims; only in a handler behind the guard."""
        if self.user is None:
            raise RuntimeError("the request has not been authenticated")
        return self.user

    @property
    def session(self) -> Session:
        """The verified token's session; only in a handler behind the guard."""
        if self._session is None:
            raise RuntimeError("the request has not been authenticated")
        return self._session


App = Sanic[Config, AppCtx]


class ApiRequest(Request[App, RequestCtx]):
    """A request of this app, with a RequestCtx."""

    @staticmethod
    def make_context() -> RequestCtx:
        """A fresh context for each request."""
        return RequestCtx()

    @property
    def services(self) -> Services:
        """The services of the app serving this request."""
        return self.app.ctx.services
