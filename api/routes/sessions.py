"""Sessions: refresh a token (rotation with reuse detection), list your sessions, end one."""

from __future__ import annotations

import logging
from typing import Any

from sanic import Blueprint, HTTPResponse
from sanic.response import empty

from api import docs, issue, validation
from api.context import ApiRequest
from api.cookies import REFRESH_COOKIE, clear_cookies
from api.errors import ErrorCode, unauthorized
from api.guard import CSRF_HEADER, authenticated
from api.issue import NO_STORE
from api.responses import json
from api.security import digest, parse_refresh_token
from api.services import services
from storage.errors import NoSuchFamily, RefreshCsrfFailed, RefreshReused
from storage.models import FamilyInfo

logger = logging.getLogger("api.sessions")


async def refresh(request: ApiRequest) -> HTTPResponse:
    """Use up a refresh token for a new access token and refresh token (RFC 9700 4.14.2).

    The refresh token comes in the body, or as the cookie with `X-CSRF-Token` set to the
    `csrf_token` cookie issued with it. A token used before ends its whole family: 401
    `token_reused`.
    """
    svc = services(request)
    sent = validation.optional_string(validation.optional_object(request), "refresh_token")
    csrf_digest = ""
    if sent is None:
        sent = request.cookies.get(REFRESH_COOKIE)
        if not sent:
            raise unauthorized(
                ErrorCode.MISSING_TOKEN,
                "a refresh token is required (the refresh_token field or cookie)",
            )
        if svc.settings.csrf_protection:
            csrf = request.headers.get(CSRF_HEADER, "")
            if not csrf:
                raise RefreshCsrfFailed()
            csrf_digest = digest(csrf)
    named = parse_refresh_token(sent)
    pending = issue.prepare(svc, request, named.name, refresh=True, family_id=named.family)
    try:
        rotation = await svc.sessions.rotate(
            named.name, named.family, named.digest, csrf_digest, pending.family
        )
    except RefreshReused:
        svc.count("refresh_tokens_reused")
        logger.warning(
            "a used refresh token of %s was presented again: session %s ended",
            named.name,
            named.family,
        )
        raise
    svc.count("tokens_refreshed")
    return issue.answer(
        svc,
        request,
        pending,
        named.name,
        rotation.generation,
        refresh_expires=rotation.refresh_expires,
    )


@authenticated
async def list_sessions(request: ApiRequest) -> HTTPResponse:
    """The user's live sessions (families of tokens), newest first."""
    session = request.ctx.session
    families = await services(request).sessions.families(session)
    return json({"sessions": [session_view(f, session.family) for f in families]})


@authenticated
async def end_session(request: ApiRequest, session_id: str) -> HTTPResponse:
    """End one of the user's sessions: every token of it stops working."""
    svc = services(request)
    session = request.ctx.session
    family_id = validation.family_id(session_id)
    if family_id is None:
        raise NoSuchFamily(session_id)
    await svc.sessions.end_own(session, family_id)
    svc.count("tokens_revoked")
    response = empty(headers=NO_STORE)
    if family_id == session.family:
        clear_cookies(response, request, svc.settings)
    return response


def session_view(family: FamilyInfo, current: str | None) -> dict[str, Any]:
    """A session as `/sessions/` and the export show it."""
    return {
        "id": family.id,
        "created_at": family.created_at,
        "last_used_at": family.last_used_at,
        "user_agent": family.user_agent,
        "current": family.id == current,
    }


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
                "A new pair; also sets the `token`, `csrf_token` and `refresh_token` cookies. "
                "The refresh token presented is used up: presenting it again ends its session.",
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
