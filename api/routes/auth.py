"""Accounts and sessions: signup, login, logout, log out everywhere, and who am I."""

from __future__ import annotations

import contextlib

from sanic import Blueprint, HTTPResponse

from api import docs, validation
from api.context import ApiRequest
from api.errors import ApiError, ErrorCode
from api.guard import authenticated
from api.responses import json
from api.transports import NO_STORE, HeaderTransport


async def signup(request: ApiRequest) -> HTTPResponse:
    """Create a user with a bcrypt-sha256 password hash; signups per address are capped."""
    data = validation.json_object(request)
    name, password = validation.name(data), validation.password(data)
    await request.services.auth.signup(name, password, validation.client(request))
    return json({"name": name}, status=201)


async def login(request: ApiRequest) -> HTTPResponse:
    """Check the credentials and issue a token (and a refresh token if the body asks for one),
    in the body and the cookies, or with `cookie_only` in the cookies alone."""
    data = validation.json_object(request)
    name, password = validation.name(data), validation.password(data)
    refresh = validation.flag(data, "refresh")
    cookie_only = validation.flag(data, "cookie_only")
    svc = request.services
    issued = await svc.auth.login(name, password, validation.client(request), refresh=refresh)
    body = {"name": issued.name} if cookie_only else HeaderTransport.body(issued)
    response = json(body, headers=NO_STORE)
    svc.cookies.set(response, request, issued)
    return response


async def logout(request: ApiRequest) -> HTTPResponse:
    """End the session of every genuine token presented (header and cookie, expired ones
    included) and of the refresh token presented (body field or cookie); clear the cookies."""
    refresh_token = validation.optional_string(validation.optional_object(request), "refresh_token")
    svc = request.services
    tokens = []
    with contextlib.suppress(ApiError):  # a malformed header is just not a token to end
        tokens.append(HeaderTransport.read(request))
    tokens.append(svc.cookies.read(request))
    refresh_token = refresh_token or svc.cookies.read_refresh(request)
    await svc.auth.logout([t for t in tokens if t], refresh_token)
    response = json({"status": "logged out"}, headers=NO_STORE)
    svc.cookies.clear(response, request)
    return response


@authenticated
async def logout_all(request: ApiRequest) -> HTTPResponse:
    """Invalidate all of the user's tokens (new logins work); clear this client's cookies."""
    svc = request.services
    await svc.auth.logout_all(request.ctx.session)
    response = json({"status": "logged out everywhere"}, headers=NO_STORE)
    svc.cookies.clear(response, request)
    return response


@authenticated
async def me(request: ApiRequest) -> HTTPResponse:
    """Return the authenticated user's name."""
    session = request.ctx.session
    await request.services.auth.check(session)
    return json({"name": session.name})


def blueprint() -> Blueprint:
    """A new blueprint with this module's routes and their descriptions."""
    bp = Blueprint("auth")
    docs.add_route(
        bp,
        "POST",
        "/signup/",
        signup,
        docs.Doc(
            "Create a user",
            "auth",
            ok=(201, docs.NAME_REPLY, "The user was created."),
            errors=(
                *docs.BODY_ERRORS,
                ErrorCode.NAME_TAKEN,
                ErrorCode.RATE_LIMITED,
                ErrorCode.BUSY,
                ErrorCode.STORAGE_UNAVAILABLE,
            ),
            body=docs.CREDENTIALS,
        ),
    )
    docs.add_route(
        bp,
        "POST",
        "/login/",
        login,
        docs.Doc(
            "Log in: get a JWT in the body and in the `token` cookie",
            "auth",
            ok=(
                200,
                docs.LOGIN_REPLY,
                "Logged in; also sets the `token` and `csrf_token` cookies. With `refresh`: "
                "a `refresh_token` too, also in a cookie sent only to `/token/refresh/`, and "
                "every cookie lives as long as it does. With `cookie_only`: the tokens in the "
                'cookies only, the body `{"name"}`.',
            ),
            errors=(
                *docs.BODY_ERRORS,
                ErrorCode.INVALID_CREDENTIALS,
                ErrorCode.RATE_LIMITED,
                ErrorCode.BUSY,
                ErrorCode.STORAGE_UNAVAILABLE,
            ),
            body=docs.LOGIN_BODY,
        ),
    )
    docs.add_route(
        bp,
        "POST",
        "/logout/",
        logout,
        docs.Doc(
            "Log out: end the session of the presented token and refresh token, clear the cookies",
            "auth",
            ok=(200, docs.STATUS_REPLY, "Logged out (also when no valid token was presented)."),
            errors=(*docs.BODY_ERRORS, ErrorCode.STORAGE_UNAVAILABLE),
            body=docs.LOGOUT_BODY,
            body_required=False,
        ),
    )
    docs.add_route(
        bp,
        "POST",
        "/logout/all/",
        logout_all,
        docs.Doc(
            "Log out everywhere: end every session of the user, refresh tokens included",
            "auth",
            ok=(200, docs.STATUS_REPLY, "Every token of the user issued until now is invalid."),
            errors=(
                *docs.AUTH_ERRORS,
                ErrorCode.CSRF_FAILED,
                ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                ErrorCode.STORAGE_UNAVAILABLE,
            ),
            secured=True,
        ),
    )
    docs.add_route(
        bp,
        "GET",
        "/me/",
        me,
        docs.Doc(
            "The user the token belongs to",
            "auth",
            ok=(200, docs.NAME_REPLY, "The token's user."),
            errors=(*docs.AUTH_ERRORS, ErrorCode.STORAGE_UNAVAILABLE),
            secured=True,
        ),
    )
    return bp
