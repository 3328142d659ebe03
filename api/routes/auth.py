"""Accounts and sessions: signup, login, logout and who am I."""

from __future__ import annotations

import time

from sanic import Blueprint, HTTPResponse, Request
from sanic.response import json

from api import docs, validation
from api.errors import ApiError, unauthorized
from api.guard import TOKEN_COOKIE, authenticated, cookie_token, header_token, session_of
from api.security import TokenError, issue_token, verify_token
from api.services import services
from api.settings import Settings

NO_STORE = {"Cache-Control": "no-store"}


@docs.describe(
    "Create a user",
    body=docs.CREDENTIALS,
    ok=(201, docs.NAME_REPLY, "The user was created."),
    errors=(400, 409, 422, 503),
    tag="auth",
)
async def signup(request: Request) -> HTTPResponse:
    """Create a user with a bcrypt-sha256 password hash."""
    data = validation.json_object(request)
    name, password = validation.name(data), validation.password(data)
    svc = services(request)
    await svc.users.create_user(name, await svc.hasher.hash(password))
    return json({"name": name}, status=201)


@docs.describe(
    "Log in: get a JWT in the body and in the `token` cookie",
    body=docs.CREDENTIALS,
    ok=(200, docs.TOKEN_REPLY, "Logged in; the token is also set as an HttpOnly cookie."),
    errors=(400, 401, 422, 503),
    tag="auth",
)
async def login(request: Request) -> HTTPResponse:
    """Check the credentials and issue a token; the same 401 whether or not the name exists."""
    data = validation.json_object(request)
    name, password = validation.name(data), validation.password(data)
    svc = services(request)
    credentials = await svc.users.credentials(name)
    ok = await svc.hasher.verify(password, credentials.password_hash if credentials else None)
    if not ok or credentials is None:
        raise unauthorized("invalid_credentials", "wrong name or password")
    settings = svc.settings
    token, _ = issue_token(svc.secret, name, credentials.generation, settings.jwt_ttl_seconds)
    response = json({"token": token}, headers=NO_STORE)
    _set_token_cookie(response, request, settings, token, settings.jwt_ttl_seconds)
    return response


@docs.describe(
    "Log out: revoke the presented token and clear the cookie",
    ok=(200, docs.STATUS_REPLY, "Logged out (also when no valid token was presented)."),
    errors=(503,),
    tag="auth",
)
async def logout(request: Request) -> HTTPResponse:
    """Revoke every valid token presented (header and cookie) for the rest of its life."""
    svc = services(request)
    for token in _presented_tokens(request):
        try:
            claims = verify_token(token, svc.secret, leeway=svc.settings.jwt_leeway_seconds)
        except TokenError:
            continue
        ttl = claims.expires_at - int(time.time()) + svc.settings.jwt_leeway_seconds
        await svc.sessions.revoke(session_of(claims), ttl)
    response = json({"status": "logged out"}, headers=NO_STORE)
    _set_token_cookie(response, request, svc.settings, "", 0)
    return response


@docs.describe(
    "The user the token belongs to",
    ok=(200, docs.NAME_REPLY, "The token's user."),
    errors=(401, 503),
    secured=True,
    tag="auth",
)
@authenticated
async def me(request: Request) -> HTTPResponse:
    """Return the authenticated user's name."""
    await services(request).sessions.check(request.ctx.session)
    return json({"name": request.ctx.user.name})


def _presented_tokens(request: Request) -> list[str]:
    tokens = []
    try:
        from_header = header_token(request)
    except ApiError:  # a malformed header is just not a token to revoke
        from_header = None
    for token in (from_header, cookie_token(request)):
        if token and token not in tokens:
            tokens.append(token)
    return tokens


def _set_token_cookie(
    response: HTTPResponse, request: Request, settings: Settings, token: str, max_age: int
) -> None:
    """Set (or, with max_age 0, clear) the HttpOnly token cookie with the configured flags."""
    if settings.cookie_secure == "auto":
        secure = request.scheme == "https"
    else:
        secure = settings.cookie_secure == "true"
    response.add_cookie(
        TOKEN_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite=settings.cookie_samesite,
        secure=secure,
        path="/",
    )


def blueprint() -> Blueprint:
    """A new blueprint with this module's routes."""
    bp = Blueprint("auth")
    bp.add_route(signup, "/signup/", methods=["POST"])
    bp.add_route(login, "/login/", methods=["POST"])
    bp.add_route(logout, "/logout/", methods=["POST"])
    bp.add_route(me, "/me/", methods=["GET"])
    return bp
