"""Messages: send one, ask for the last N, list the newest."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse

from api import docs, validation
from api.context import ApiRequest
from api.errors import ApiError, ErrorCode
from api.guard import authenticated
from api.responses import json
from api.settings import Settings

CREATED = "Сообщение создано"
DEFAULT_LIMIT = 20


@authenticated
async def post_message(request: ApiRequest) -> HTTPResponse:
    """Store the text, or answer `last N` with the N newest messages (the query is not stored)."""
    svc = request.services
    data = validation.json_object(request)
    text = validation.text(data, svc.settings.message_max_chars)
    claimed = validation.optional_name(data)
    session = request.ctx.session
    if claimed is not None and claimed != session.name:
        raise ApiError(ErrorCode.NAME_MISMATCH, "name differs from the token's user")
    count = validation.last_count(text, svc.settings.message_history_limit)
    if count is None:
        await svc.messages.append_message(session, text)
        return json({"status": CREATED}, status=201)
    newest_first = await svc.messages.last_messages(session, count)
    total = len(newest_first)
    return json({str(n): newest_first[n - 1].text for n in range(total, 0, -1)})


@authenticated
async def list_messages(request: ApiRequest) -> HTTPResponse:
    """Return up to `limit` (default 20) of the user's newest messages with their send times."""
    svc = request.services
    cap = svc.settings.message_history_limit
    limit = validation.limit(request, default=DEFAULT_LIMIT, maximum=cap)
    messages = await svc.messages.last_messages(request.ctx.session, limit)
    return json({"messages": [{"text": m.text, "sent_at": m.sent_at} for m in messages]})


def blueprint(settings: Settings) -> Blueprint:
    """A new blueprint with this module's routes and their descriptions."""
    bp = Blueprint("messages")
    docs.add_route(
        bp,
        "POST",
        "/message/",
        post_message,
        docs.Doc(
            "Send a message, or send `last N` to get your N newest messages",
            "messages",
            ok=(201, docs.STATUS_REPLY, "The message was stored."),
            also=((200, docs.LAST_REPLY, 'For `last N`: keys N down to "1", "1" the newest.'),),
            errors=(
                *docs.BODY_ERRORS,
                *docs.AUTH_ERRORS,
                ErrorCode.CSRF_FAILED,
                ErrorCode.NAME_MISMATCH,
                ErrorCode.STORAGE_UNAVAILABLE,
            ),
            body=docs.message_body(settings.message_max_chars),
            secured=True,
        ),
    )
    docs.add_route(
        bp,
        "GET",
        "/messages/",
        list_messages,
        docs.Doc(
            "Your newest messages, newest first",
            "messages",
            ok=(200, docs.MESSAGES_REPLY, "Up to `limit` messages, newest first."),
            errors=(*docs.AUTH_ERRORS, ErrorCode.VALIDATION_ERROR, ErrorCode.STORAGE_UNAVAILABLE),
            secured=True,
            query=(
                (
                    "limit",
                    docs.limit_schema(settings.message_history_limit),
                    f"How many messages (default {DEFAULT_LIMIT}).",
                ),
            ),
        ),
    )
    return bp
