"""The one guard: find the request's token, verify it, and put the user on `request.ctx`."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable, Coroutine
from typing import Any

from sanic import HTTPResponse

from api.context import ApiRequest
from api.cookies import TOKEN_COOKIE
from api.errors import ApiError, ErrorCode, unauthorized
from api.security import TokenClaims
from api.services import services
from storage.models import Session

TOKEN_HEADER = "token"  # noqa: S105 (a header name, not a secret)
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[..., Coroutine[Any, Any, HTTPResponse]]


def bearer_credentials(authorization: str) -> str | None:
    """The credentials of an `Authorization: Bearer <credentials>` value (the scheme in any case,
    RFC 9110 11.1), None for another scheme or none at all."""
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


def header_token(request: ApiRequest) -> str | None:
    """The token of the `token` header, else of `Authorization: Bearer`; 401 if malformed."""
    token: str | None = request.headers.get(TOKEN_HEADER)
    if token is not None:
        return token.strip()
    authorization: str | None = request.headers.get("authorization")
    if authorization is None:
        return None
    credentials = bearer_credentials(authorization)
    if credentials is None:
        raise unauthorized(
            ErrorCode.INVALID_TOKEN, "the Authorization header must be 'Bearer <token>'"
        )
    return credentials


def cookie_token(request: ApiRequest) -> str | None:
    """The token of the `token` cookie, if any."""
    token: str | None = request.cookies.get(TOKEN_COOKIE)
    return token or None


def session_of(claims: TokenClaims) -> Session:
    """The storage view of a verified token."""
    return Session(
        name=claims.name, jti=claims.jti, generation=claims.generation, family=claims.family
    )


def authenticate(request: ApiRequest) -> TokenClaims:
    """Verify the request's token (header first, then cookie); raise a 401 ApiError otherwise.

    A header that is present but bad is a 401: it never falls back to the cookie. A request that
    changes state with the cookie must echo the token's CSRF value in X-CSRF-Token (403
    otherwise). Whether the token was revoked is checked by the store, in the same round trip as
    the request's own work.
    """
    svc = services(request)
    token = header_token(request)
    if token is not None:
        return svc.verify_token(token)
    token = cookie_token(request)
    if token is None:
        raise unauthorized(
            ErrorCode.MISSING_TOKEN, "a token is required (token header, Bearer or cookie)"
        )
    claims = svc.verify_token(token)
    if svc.settings.csrf_protection and request.method not in SAFE_METHODS:
        check_csrf(request, claims)
    return claims


def check_csrf(request: ApiRequest, claims: TokenClaims) -> None:
    """Double-submit check: X-CSRF-Token must equal the token's `csrf` claim."""
    sent: str = request.headers.get(CSRF_HEADER, "")
    if not (
        claims.csrf
        and sent
        and sent.isascii()  # CSRF values are base64url: other bytes are never one
        and hmac.compare_digest(sent.encode(), claims.csrf.encode())
    ):
        raise ApiError(
            ErrorCode.CSRF_FAILED,
            "a cookie-authenticated request that changes state needs the X-CSRF-Token header "
            "set to the csrf_token cookie",
        )


def authenticated(handler: Handler) -> Handler:
    """Decorate a handler so it runs only with a verified token, on `request.ctx.user`."""

    @functools.wraps(handler)
    async def guarded(request: ApiRequest, *args: Any, **kwargs: Any) -> HTTPResponse:
        claims = authenticate(request)
        request.ctx.authenticate(claims, session_of(claims))
        return await handler(request, *args, **kwargs)

    return guarded
