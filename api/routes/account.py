"""Your account: change the password, delete the account, export its data."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse
from sanic.response import empty

from api import docs, validation
from api.context import ApiRequest
from api.errors import ErrorCode
from api.guard import authenticated
from api.responses import json
from api.transports import NO_STORE, HeaderTransport
from api.views import message_view, session_view


@authenticated
async def change_password(request: ApiRequest) -> HTTPResponse:
    """Set a new password: every other session of the user ends; this client gets a new token."""
    data = validation.json_object(request)
    password = validation.password(data)
    new_password = validation.password(data, "new_password")
    svc = request.services
    issued = await svc.auth.change_password(
        request.ctx.session, password, new_password, validation.client(request)
    )
    response = json(HeaderTransport.body(issued), headers=NO_STORE)
    svc.cookies.set(response, request, issued)
    return response


@authenticated
async def delete_account(request: ApiRequest) -> HTTPResponse:
    """Delete the account and everything kept about it; every token of it stops working."""
    password = validation.password(validation.json_object(request))
    svc = request.services
    await svc.auth.delete_account(request.ctx.session, password, validation.client(request))
    response = empty(headers=NO_STORE)
    svc.cookies.clear(response, request)
    return response


@authenticated
async def export_account(request: ApiRequest) -> HTTPResponse:
    """Everything the service keeps about the user, as JSON."""
    session = request.ctx.session
    data = await request.services.auth.export(session)
    return json(
        {
            "name": session.name,
            "created_at": data.created_at,
            "messages": [message_view(m) for m in data.messages],
            "sessions": [session_view(f, session.family) for f in data.families],
            "blocks": data.blocks,
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
