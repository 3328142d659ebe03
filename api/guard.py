"""The one guard: find the request's token, verify it, and put the user on `request.ctx`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from sanic import HTTPResponse, Request

from api.errors import unauthorized
from api.security import TokenClaims, verify_token
from api.services import services
from storage.models import Session

TOKEN_COOKIE = "token"  # noqa: S105 (a cookie name, not a secret)
TOKEN_HEADER = "token"  # noqa: S105 (a header name, not a secret)

Handler = Callable[..., Coroutine[Any, Any, HTTPResponse]]


def header_token(request: Request) -> str | None:
    """The token of the `token` header, else of `Authorization: Bearer`; 401 if malformed."""
    token: str | None = request.headers.get(TOKEN_HEADER)
    if token is not None:
        return token.strip()
    authorization: str | None = request.headers.get("authorization")
    if authorization is None:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise unauthorized("invalid_token", "the Authorization header must be 'Bearer <token>'")
    return credentials.strip()


def cookie_token(request: Request) -> str | None:
    """The token of the `token` cookie, if any."""
    token: str | None = request.cookies.get(TOKEN_COOKIE)
    return token or None


def session_of(claims: TokenClaims) -> Session:
    """The storage view of a verified token."""
    return Session(name=claims.name, jti=claims.jti, generation=claims.generation)


def authenticate(request: Request) -> TokenClaims:
    """Verify the request's token (header first, then cookie); raise a 401 ApiError otherwise.

    A header that is present but bad is a 401: it never falls back to the cookie. Whether the
    token was revoked is checked by the store, in the same round trip as the request's action.
    """
    token = header_token(request)
    if token is None:
        token = cookie_token(request)
    if token is None:
        raise unauthorized("missing_token", "a token is required (token header, Bearer or cookie)")
    svc = services(request)
    return verify_token(token, svc.secret, leeway=svc.settings.jwt_leeway_seconds)


def authenticated(handler: Handler) -> Handler:
    """Decorate a handler so it runs only with a verified token, on `request.ctx.user`."""

    @functools.wraps(handler)
    async def guarded(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
        claims = authenticate(request)
        request.ctx.user = claims
        request.ctx.session = session_of(claims)
        return await handler(request, *args, **kwargs)

    return guarded
