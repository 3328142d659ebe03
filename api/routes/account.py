"""Your account: change the password, delete the account, export its data."""

from __future__ import annotations

import asyncio
import time

from sanic import Blueprint, HTTPResponse
from sanic.response import empty

from api import docs, issue, validation
from api.context import ApiRequest
from api.cookies import clear_cookies
from api.errors import ApiError, ErrorCode
from api.guard import authenticated
from api.issue import NO_STORE
from api.responses import json
from api.routes.auth import attempt
from api.routes.sessions import session_view
from api.security import cost_of
from api.services import Services, services
from storage.models import LoginState
from storage.throttle import Window


async def _confirm_password(
    svc: Services, request: ApiRequest, password: str
) -> tuple[LoginState, tuple[Window, Window]]:
    """Check the session's user's current password as a login does (throttled the same way, a
    wrong one counted as a failed login); 403 if it is wrong. Returns what the login read and
    its windows, to be given back once the change is made."""
    session = request.ctx.session
    await svc.sessions.check(session)  # a token that no longer works guesses nothing
    state, verdict, windows = await attempt(svc, request, session.name, password)
    if not verdict.ok or state.password_hash is None:
        raise ApiError(ErrorCode.WRONG_PASSWORD, "the current password is wrong")
    return state, windows


@authenticated
async def change_password(request: ApiRequest) -> HTTPResponse:
    """Set a new password: every other session of the user ends; this client gets a new token."""
    data = validation.json_object(request)
    password = validation.password(data)
    new_password = validation.password(data, "new_password")
    svc = services(request)
    session = request.ctx.session
    state, (account, address) = await _confirm_password(svc, request, password)
    new_hash = await svc.hasher.hash(new_password)
    old_cost = cost_of(state.password_hash or "") or svc.hasher.rounds
    pending = issue.prepare(svc, request, session.name, refresh=False)
    generation, _ = await asyncio.gather(
        svc.users.change_password(session, new_hash, (old_cost, svc.hasher.rounds), pending.family),
        svc.users.finish_login(session.name, clear=(account,), refund=(address,)),
    )
    svc.count("sessions_ended")
    return issue.answer(svc, request, pending, session.name, generation)


@authenticated
async def delete_account(request: ApiRequest) -> HTTPResponse:
    """Delete the account and everything kept about it; every token of it stops working."""
    password = validation.password(validation.json_object(request))
    svc = services(request)
    session = request.ctx.session
    state, (_, address) = await _confirm_password(svc, request, password)
    cost = cost_of(state.password_hash or "") or svc.hasher.rounds
    await asyncio.gather(
        svc.users.delete_user(session, cost),
        svc.throttle.give_back(refund=(address,)),
    )
    svc.count("sessions_ended")
    response = empty(headers=NO_STORE)
    clear_cookies(response, request, svc.settings)
    return response


@authenticated
async def export_account(request: ApiRequest) -> HTTPResponse:
    """Everything the service keeps about the user, as JSON."""
    session = request.ctx.session
    data = await services(request).users.export(session, int(time.time()))
    return json(
        {
            "name": session.name,
            "created_at": data.created_at,
            "messages": [{"text": m.text, "sent_at": m.sent_at} for m in data.messages],
            "sessions": [session_view(f, session.family) for f in data.families],
        },
        headers=NO_STORE,
    )


PASSWORD_CHECK_ERRORS = (
    *docs.AUTH_ERRORS,
    *docs.BODY_ERRORS,
    ErrorCode.WRONG_PASSWORD,
    ErrorCode.CSRF_FAILED,
    ErrorCode.RATE_LIMITED,
    ErrorCode.BUSY,
    ErrorCode.STORAGE_UNAVAILABLE,
)


def blueprint() -> Blueprint:
    """A new blueprint with this module's routes and their descriptions."""
    bp = Blueprint("account")
    docs.add_route(
        bp,
        "POST",
        "/password/",
        change_password,
        docs.Doc(
            "Change your password: every other session ends",
            "account",
            ok=(
                200,
                docs.TOKEN_REPLY,
                "Changed; a new token for this client (and its cookies). Every other token "
                "and refresh token of the user stops working.",
            ),
            errors=PASSWORD_CHECK_ERRORS,
            body=docs.NEW_PASSWORD_BODY,
            secured=True,
        ),
    )
    docs.add_route(
        bp,
        "DELETE",
        "/me/",
        delete_account,
        docs.Doc(
            "Delete your account and everything kept about it",
            "account",
            ok=(204, None, "Deleted; every token of the account stops working."),
            errors=PASSWORD_CHECK_ERRORS,
            body=docs.CONFIRM_BODY,
            secured=True,
        ),
    )
    docs.add_route(
        bp,
        "GET",
        "/me/export/",
        export_account,
        docs.Doc(
            "Export everything kept about you",
            "account",
            ok=(200, docs.EXPORT_REPLY, "The account, its messages and its sessions."),
            errors=(*docs.AUTH_ERRORS, ErrorCode.STORAGE_UNAVAILABLE),
            secured=True,
        ),
    )
    return bp
