"""The one guard: find the request's token (header transport first, then the cookie's), verify
it, and put the user on `request.ctx`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from sanic import HTTPResponse

from api.auth import session_of
from api.context import ApiRequest
from api.errors import ErrorCode, unauthorized
from api.security import TokenClaims
from api.transports import HeaderTransport

# A handler answers with a response, or None when it has answered already (a stream).
Handler = Callable[..., Coroutine[Any, Any, HTTPResponse | None]]


def authenticate(request: ApiRequest) -> TokenClaims:
    """Verify the request's token; raise a 401 ApiError otherwise.

    A header token that is present but bad is a 401: it never falls back to the cookie. A request
    that changes state with the cookie must echo the token's CSRF value (403 otherwise). Whether
    the token's session still lives is checked by the store, in the same round trip as the
    request's own work.
    """
    svc = request.services
    token = HeaderTransport.read(request)
    if token is not None:
        return svc.auth.verify(token)
    token = svc.cookies.read(request)
    if token is None:
        raise unauthorized(
            ErrorCode.MISSING_TOKEN, "a token is required (token header, Bearer or cookie)"
        )
    claims = svc.auth.verify(token)
    svc.cookies.check_csrf(request, claims)
    return claims


def authenticated(handler: Handler) -> Handler:
    """Decorate a handler so it runs only with a verified token, on `request.ctx.user`."""

    @functools.wraps(handler)
    async def guarded(request: ApiRequest, *args: Any, **kwargs: Any) -> HTTPResponse | None:
        claims = authenticate(request)
        request.ctx.authenticate(claims, session_of(claims))
        return await handler(request, *args, **kwargs)

    return guarded
