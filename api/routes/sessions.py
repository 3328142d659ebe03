"""Sessions: refresh a token (rotation with reuse detection), list your sessions, end one."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse
from sanic.response import empty

from api import docs, validation
from api.context import ApiRequest
from api.errors import ApiError, ErrorCode, unauthorized
from api.guard import authenticated
from api.responses import json
from api.transports import NO_STORE, HeaderTransport
from api.views import session_view


async def refresh(request: ApiRequest) -> HTTPResponse:
    """Use up a refresh token for a new access token and refresh token (RFC 9700 4.14.2).

    The refresh token comes in the body (the new pair is answered in the body, and the cookies),
    or as the cookie with `X-CSRF-Token` set to the `csrf_token` cookie issued with it (the new
    pair goes in the cookies only: no script reads it). A token used before ends its whole
    family: 401 `token_reused`.
    """
    svc = request.services
    sent = validation.optional_string(validation.optional_object(request), "refresh_token")
    csrf = None
    if sent is None:
        sent = svc.cookies.read_refresh(request)
        if sent is None:
            raise unauthorized(
                ErrorCode.MISSING_TOKEN,
                "a refresh token is required (the refresh_token field or cookie)",
            )
        csrf = svc.cookies.csrf_value(request)
    issued = await svc.auth.refresh(sent, validation.client(request), csrf=csrf)
    body = {"name": issued.name} if csrf is not None else HeaderTransport.body(issued)
    response = json(body, headers=NO_STORE)
    svc.cookies.set(response, request, issued)
    return response


@authenticated
async def list_sessions(request: ApiRequest) -> HTTPResponse:
    """The user's live sessions (families of tokens), newest first."""
    session = request.ctx.session
    families = await request.services.auth.sessions(session)
    return json({"sessions": [session_view(f, session.family) for f in families]})


@authenticated
async def end_session(request: ApiRequest, session_id: str) -> HTTPResponse:
    """End one of the user's sessions: every token of it stops working."""
    svc = request.services
    session = request.ctx.session
    family_id = validation.family_id(session_id)
    if family_id is None:
        raise ApiError(ErrorCode.NO_SUCH_SESSION, "no live session of yours has this id")
    await svc.auth.end_session(session, family_id)
    response = empty(headers=NO_STORE)
    if family_id == session.family:
        svc.cookies.clear(response, request)
    return response


def blueprint() -> Blueprint:
    """A new blueprint with this module's routes and their descriptions."""
    bp = Blueprint("sessions")
    docs.add_route(
        bp,
        "POST",
        "/token/refresh/",
        refresh,
        docs.Doc(
            "Refresh: use up a refresh token for a new token and refresh token",
            "sessions",
            ok=(
                200,
                docs.REFRESH_REPLY,
                "A new pair, in the `token`, `csrf_token` and `refresh_token` cookies and, for "
                "a refresh token sent in the body, in the body too; for one sent as the cookie "
                'the body is `{"name"}` (no script of a page reads a token). The refresh '
                "token presented is used up: presenting it again ends its session.",
            ),
            errors=(
                *docs.BODY_ERRORS,
                ErrorCode.MISSING_TOKEN,
                ErrorCode.INVALID_TOKEN,
                ErrorCode.TOKEN_REUSED,
                ErrorCode.CSRF_FAILED,
                ErrorCode.STORAGE_UNAVAILABLE,
            ),
            body=docs.REFRESH_BODY,
            body_required=False,
        ),
    )
    docs.add_route(
        bp,
        "GET",
        "/sessions/",
        list_sessions,
        docs.Doc(
            "Your sessions: one per login that still has a live token",
            "sessions",
            ok=(200, docs.SESSIONS_REPLY, "The live sessions, newest first."),
            errors=(*docs.AUTH_ERRORS, ErrorCode.STORAGE_UNAVAILABLE),
            secured=True,
        ),
    )
    docs.add_route(
        bp,
        "DELETE",
        "/sessions/<session_id:str>/",
        end_session,
        docs.Doc(
            "End one of your sessions: its tokens and refresh token stop working",
            "sessions",
            ok=(204, None, "Ended (ending the calling token's own session clears its cookies)."),
            errors=(
                *docs.AUTH_ERRORS,
                ErrorCode.CSRF_FAILED,
                ErrorCode.NO_SUCH_SESSION,
                ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                ErrorCode.STORAGE_UNAVAILABLE,
            ),
            secured=True,
        ),
    )
    return bp
