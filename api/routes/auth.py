"""Accounts and sessions: signup, login, logout, log out everywhere, and who am I."""

from __future__ import annotations

import asyncio
import contextlib

from sanic import Blueprint, HTTPResponse

from api import docs, issue, validation
from api.context import ApiRequest
from api.cookies import REFRESH_COOKIE, clear_cookies
from api.errors import ApiError, ErrorCode, unauthorized
from api.guard import authenticated, cookie_token, header_token, session_of
from api.hashing import HasherBusy, Verdict
from api.issue import NO_STORE
from api.responses import json
from api.security import TokenError, cost_of, parse_refresh_token
from api.services import Services, client_address, services
from storage.errors import StorageUnavailable
from storage.models import LoginState
from storage.throttle import Window


async def signup(request: ApiRequest) -> HTTPResponse:
    """Create a user with a bcrypt-sha256 password hash; signups per address are capped."""
    data = validation.json_object(request)
    name, password = validation.name(data), validation.password(data)
    svc = services(request)
    await svc.throttle.take(
        svc.limits.signup_window(client_address(request, svc.settings.trusts_proxy_headers))
    )
    password_hash = await svc.hasher.hash(password)
    await svc.users.create_user(name, password_hash, svc.hasher.rounds)
    return json({"name": name}, status=201)


async def attempt(
    svc: Services, request: ApiRequest, name: str, password: str
) -> tuple[LoginState, Verdict, tuple[Window, Window]]:
    """One password check of `name`'s, throttled as a login: take its place in the account's
    and the address's windows (RateLimited if either is full), then check the password. Returns
    what was read, the verdict and the windows (to give back on success). A check that never ran
    (HasherBusy) or failed on a server error gives its places back; a wrong password keeps them,
    counted as a failure."""
    windows = svc.limits.login_windows(
        name, client_address(request, svc.settings.trusts_proxy_headers)
    )
    state = await svc.users.begin_login(name, *windows)
    try:
        verdict = await svc.hasher.verify(
            password, state.password_hash, stored_costs=state.stored_costs
        )
    except Exception:
        with contextlib.suppress(StorageUnavailable):  # Redis down: nothing can be given back
            await svc.throttle.give_back(refund=windows)
        raise
    return state, verdict, windows


async def login(request: ApiRequest) -> HTTPResponse:
    """Check the credentials and issue a token (and a refresh token if the body asks for one);
    the same 401 whether or not the name exists.

    Every attempt is taken from the account's and the address's windows before the password is
    checked (a full window is a 429, even with the right password); a success gives them back,
    clearing the account's count, makes the stored hash anew if it needs it, and begins the
    login's family of tokens.
    """
    data = validation.json_object(request)
    name, password = validation.name(data), validation.password(data)
    refresh = validation.flag(data, "refresh")
    svc = services(request)
    state, verdict, (account, address) = await attempt(svc, request, name, password)
    if not verdict.ok or state.password_hash is None:
        raise unauthorized(ErrorCode.INVALID_CREDENTIALS, "wrong name or password")
    rehash = None
    if verdict.needs_rehash:
        with contextlib.suppress(HasherBusy):  # too busy now: a later login makes it anew
            new_hash = await svc.hasher.hash(password)
            old_cost = cost_of(state.password_hash) or svc.hasher.rounds
            rehash = (state.password_hash, new_hash, old_cost, svc.hasher.rounds)
    pending = issue.prepare(svc, request, name, refresh=refresh)
    _, started = await asyncio.gather(
        svc.users.finish_login(name, clear=(account,), refund=(address,), rehash=rehash),
        svc.sessions.begin(name, state.generation, pending.family),
    )
    if not started:  # the account was deleted or all its sessions ended meanwhile
        raise unauthorized(ErrorCode.INVALID_CREDENTIALS, "wrong name or password")
    return issue.answer(svc, request, pending, name, state.generation)


async def logout(request: ApiRequest) -> HTTPResponse:
    """End the session of every valid token presented (header and cookie) and of the refresh
    token presented (body field or cookie)."""
    refresh_token = validation.optional_string(validation.optional_object(request), "refresh_token")
    svc = services(request)
    for token in _presented_tokens(request):
        try:
            claims = svc.verify_token(token)
        except TokenError:
            continue
        await svc.sessions.revoke(session_of(claims), svc.revocation_ttl(claims))
        svc.count("tokens_revoked")
    refresh_token = refresh_token or request.cookies.get(REFRESH_COOKIE)
    if refresh_token:
        with contextlib.suppress(TokenError):  # not a refresh token: nothing to end
            named = parse_refresh_token(refresh_token)
            if await svc.sessions.end_family(named.name, named.family, named.digest):
                svc.count("tokens_revoked")
    response = json({"status": "logged out"}, headers=NO_STORE)
    clear_cookies(response, request, svc.settings)
    return response


@authenticated
async def logout_all(request: ApiRequest) -> HTTPResponse:
    """Invalidate all of the user's tokens (new logins work); clear this client's cookies."""
    svc = services(request)
    await svc.sessions.end_all(request.ctx.session)
    svc.count("sessions_ended")
    response = json({"status": "logged out everywhere"}, headers=NO_STORE)
    clear_cookies(response, request, svc.settings)
    return response


@authenticated
async def me(request: ApiRequest) -> HTTPResponse:
    """Return the authenticated user's name."""
    session = request.ctx.session
    await services(request).sessions.check(session)
    return json({"name": session.name})


def _presented_tokens(request: ApiRequest) -> list[str]:
    tokens = []
    try:
        from_header = header_token(request)
    except ApiError:  # a malformed header is just not a token to revoke
        from_header = None
    for token in (from_header, cookie_token(request)):
        if token and token not in tokens:
            tokens.append(token)
    return tokens


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
                "a `refresh_token` too, also in a cookie sent only to `/token/refresh/`.",
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
