"""Messages: send one (to yourself or another user), ask for the last N, page through them."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse

from api import docs, validation
from api.context import ApiRequest
from api.cursors import CURSOR_CHARS
from api.errors import ApiError, ErrorCode
from api.guard import authenticated
from api.responses import json
from api.settings import Settings
from api.validation import IDEMPOTENCY_KEY_MAX_CHARS, NAME_MAX_CHARS, NAME_PATTERN
from api.views import message_view

CREATED = "Сообщение создано"
DEFAULT_LIMIT = 20


@authenticated
async def post_message(request: ApiRequest) -> HTTPResponse:
    """Store the text for the recipient (yourself by default), or answer `last N` with your N
    newest messages (a query only about your own history; not stored)."""
    svc = request.services
    data = validation.json_object(request)
    text = validation.text(data, svc.settings.message_max_chars)
    claimed = validation.optional_name(data)
    session = request.ctx.session
    if claimed is not None and claimed != session.name:
        raise ApiError(ErrorCode.NAME_MISMATCH, "name differs from the token's user")
    recipient = validation.recipient(data, session.name)
    key = validation.idempotency_key(request)
    if recipient == session.name:
        count = validation.last_count(text, svc.settings.message_history_limit)
        if count is not None:
            newest_first = await svc.messaging.last(session, count)
            total = len(newest_first)
            return json({str(n): newest_first[n - 1] for n in range(total, 0, -1)})
    sent = await svc.messaging.send(session, recipient, text, key)
    return json({"status": CREATED}, status=201, headers={"X-Message-ID": sent.id})


@authenticated
async def list_messages(request: ApiRequest) -> HTTPResponse:
    """A page of your messages (or of one conversation), newest first, with the next cursor."""
    svc = request.services
    cap = svc.settings.message_history_limit
    limit = validation.limit(request, default=DEFAULT_LIMIT, maximum=cap)
    page = await svc.messaging.page(
        request.ctx.session,
        limit,
        cursor=validation.cursor(request),
        with_user=validation.with_user(request),
    )
    return json({"messages": [message_view(m) for m in page.messages], "next": page.next})


def blueprint(settings: Settings) -> Blueprint:
    """A new blueprint with this module's routes and their descriptions."""
    bp = Blueprint("messages")
    docs.add_route(
        bp,
        "POST",
        "/message/",
        post_message,
        docs.Doc(
            "Send a message (to yourself or `to` another user), or `last N` for your N newest",
            "messages",
            ok=(
                201,
                docs.STATUS_REPLY,
                "The message was stored (in the recipient's history and yours); "
                "`X-Message-ID` is its id. A repeat of a request with the same "
                "`Idempotency-Key` and body answers the same and stores nothing.",
            ),
            also=((200, docs.LAST_REPLY, 'For `last N`: keys N down to "1", "1" the newest.'),),
            errors=(
                *docs.BODY_ERRORS,
                *docs.AUTH_ERRORS,
                ErrorCode.CSRF_FAILED,
                ErrorCode.NAME_MISMATCH,
                ErrorCode.RECIPIENT_UNAVAILABLE,
                ErrorCode.UNKNOWN_RECIPIENT,
                ErrorCode.IDEMPOTENCY_KEY_IN_USE,
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                ErrorCode.RATE_LIMITED,
                ErrorCode.STORAGE_UNAVAILABLE,
            ),
            body=docs.message_body(settings.message_max_chars),
            secured=True,
            headers=(
                (
                    "Idempotency-Key",
                    docs.text_schema(
                        minLength=1,
                        maxLength=IDEMPOTENCY_KEY_MAX_CHARS,
                        pattern=f"^[!-~]{{1,{IDEMPOTENCY_KEY_MAX_CHARS}}}$",
                    ),
                    "Makes a retry safe: a repeat with the same key and body within 24 hours "
                    "stores nothing and answers what the first answered; the same key with "
                    "another body is 422 `idempotency_key_reused`, a repeat while the first runs "
                    "409 `idempotency_key_in_use`. Scoped to you; the raw value is the key.",
                ),
            ),
        ),
    )
    docs.add_route(
        bp,
        "GET",
        "/messages/",
        list_messages,
        docs.Doc(
            "Your messages (sent and received), newest first, a page at a time",
            "messages",
            ok=(
                200,
                docs.MESSAGES_REPLY,
                "Up to `limit` messages, newest first, and the cursor of the older ones. Pages "
                "never skip or repeat a message while new ones arrive.",
            ),
            errors=(*docs.AUTH_ERRORS, ErrorCode.VALIDATION_ERROR, ErrorCode.STORAGE_UNAVAILABLE),
            secured=True,
            query=(
                (
                    "limit",
                    docs.limit_schema(settings.message_history_limit),
                    f"How many messages (default {DEFAULT_LIMIT}).",
                ),
                (
                    "with",
                    docs.text_schema(minLength=1, maxLength=NAME_MAX_CHARS, pattern=NAME_PATTERN),
                    "Only the conversation with this user (yourself: your notes to yourself); "
                    "a name of no user is an empty conversation.",
                ),
                (
                    "cursor",
                    docs.text_schema(minLength=CURSOR_CHARS, maxLength=CURSOR_CHARS),
                    "The `next` of the page before; another user's or a malformed one is a 422.",
                ),
            ),
        ),
    )
    return bp
