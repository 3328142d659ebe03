"""OpenAPI descriptions: JSON schemas of every body and one decorator to document a route."""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sanic import Blueprint, HTTPResponse
from sanic_ext import openapi
from sanic_ext.extensions.openapi.builders import OperationStore
from sanic_ext.extensions.openapi.definitions import RequestBody, Response
from sanic_ext.extensions.openapi.types import Integer, String

from api.errors import ERROR_FORMAT, ErrorCode
from api.validation import (
    NAME_MAX_CHARS,
    NAME_PATTERN,
    PASSWORD_MAX_CHARS,
    PASSWORD_MIN_CHARS,
)

Schema = dict[str, Any]
Handler = Callable[..., Coroutine[Any, Any, HTTPResponse | None]]

NAME: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": NAME_MAX_CHARS,
    "pattern": NAME_PATTERN,
    "description": f"1 to {NAME_MAX_CHARS} letters or digits of any script (of Unicode's Basic "
    "Multilingual Plane, with their accents), `_`, `.` or `-`, with at least one letter or "
    "digit: `alice`, `Zoé_1`, `李小龍`. Case counts (`Alice` is another user). Stored "
    "NFC-normalised. The `pattern` states the same rule for machines.",
    "example": "alice",
}
PASSWORD: Schema = {
    "type": "string",
    "minLength": PASSWORD_MIN_CHARS,
    "maxLength": PASSWORD_MAX_CHARS,
    "example": "correct horse battery",
}


def obj(properties: Mapping[str, Schema], *required: str, closed: bool = True) -> Schema:
    """A JSON object schema; request bodies are open (unknown fields are ignored)."""
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(required),
        "additionalProperties": not closed,
    }


CREDENTIALS = {
    **obj({"name": NAME, "password": PASSWORD}, "name", "password", closed=False),
    "example": {"name": "alice", "password": "correct horse battery"},
}


def message_body(max_chars: int) -> Schema:
    """The body of POST /message/."""
    return obj(
        {
            "text": {
                "type": "string",
                "minLength": 1,
                "maxLength": max_chars,
                "description": "A message, or `last N` to get the N newest messages instead.",
                "example": "hello",
            },
            "name": {"type": "string", "description": "If given, must be the token's user."},
            "to": {
                **NAME,
                "description": "The recipient (default: yourself). To another user the text is "
                "always a message, `last N` included; it lands in their history and yours.",
                "example": "bob",
            },
        },
        "text",
        closed=False,
    ) | {"example": {"text": "hello"}}


NAME_REPLY = obj({"name": {"type": "string"}}, "name")
TOKEN_REPLY = obj({"token": {"type": "string"}}, "token")
REFRESH_TOKEN: Schema = {
    "type": "string",
    "description": "An opaque refresh token: send it to `POST /token/refresh/` as it is.",
}
COOKIES_ONLY_REPLY = {
    **obj({"name": {"type": "string"}}, "name"),
    "description": "The tokens went in HttpOnly cookies only: the user's name.",
}
LOGIN_REPLY = {
    "oneOf": [
        obj({"token": {"type": "string"}, "refresh_token": REFRESH_TOKEN}, "token"),
        COOKIES_ONLY_REPLY,
    ]
}
REFRESH_REPLY = {
    "oneOf": [
        obj(
            {"token": {"type": "string"}, "refresh_token": REFRESH_TOKEN},
            "token",
            "refresh_token",
        ),
        COOKIES_ONLY_REPLY,
    ]
}
REFRESH_BODY = {
    **obj({"refresh_token": REFRESH_TOKEN}, closed=False),
    "description": "Optional: without it, the `refresh_token` cookie is used (with "
    "`X-CSRF-Token`).",
    "example": {"refresh_token": "YWxpY2U.3q2-7wEAAAD_____AAAAAA.<43 characters>"},
}
LOGOUT_BODY = {
    **obj({"refresh_token": REFRESH_TOKEN}, closed=False),
    "description": "Optional: a refresh token whose session ends too (or its cookie).",
    "example": {"refresh_token": "YWxpY2U.3q2-7wEAAAD_____AAAAAA.<43 characters>"},
}
DATE_TIME: Schema = {"type": "string", "format": "date-time"}
SESSION = obj(
    {
        "id": {"type": "string", "description": "Ends the session: `DELETE /sessions/{id}/`."},
        "created_at": {**DATE_TIME, "description": "When the login was."},
        "last_used_at": {
            **DATE_TIME,
            "description": "When the session last got a token (its login or a refresh).",
        },
        "user_agent": {
            "type": "string",
            "maxLength": 200,
            "description": "The `User-Agent` of the login, cut to 200 characters.",
        },
        "current": {"type": "boolean", "description": "The session of the calling token."},
    },
    "id",
    "created_at",
    "last_used_at",
    "user_agent",
    "current",
)
SESSIONS_REPLY = obj({"sessions": {"type": "array", "items": SESSION}}, "sessions")
STATUS_REPLY = obj({"status": {"type": "string"}}, "status")
LAST_REPLY: Schema = {
    "type": "object",
    "description": 'Keys N down to "1"; "1" is the newest message.',
    "additionalProperties": {"type": "string"},
}
MESSAGE = obj(
    {
        "id": {
            "type": "string",
            "description": "Opaque; the sender's and the recipient's copy share it.",
        },
        "from": {"type": "string", "description": "The sender's name."},
        "to": {"type": "string", "description": "The recipient's name."},
        "text": {"type": "string"},
        "sent_at": {"type": "string", "format": "date-time"},
    },
    "id",
    "from",
    "to",
    "text",
    "sent_at",
)
MESSAGES_REPLY = obj(
    {
        "messages": {"type": "array", "items": MESSAGE, "description": "Newest first."},
        "next": {
            "type": "string",
            "nullable": True,
            "description": "The cursor of the next (older) page, null when no older message is "
            "left: pass it back as `cursor`.",
        },
    },
    "messages",
    "next",
)
EVENT_STREAM: Schema = {
    "type": "string",
    "description": "Server-Sent Events (an open stream, which OpenAPI cannot model).",
    "example": 'id: 42-Yp3kQ2a8vXc1Lm0z\nevent: message\ndata: {"from":"bob","to":"alice",'
    '"id":"Yp3kQ2a8vXc1Lm0z","sent_at":"2026-12-07T08:00:00.000Z","text":"hi"}\n\n',
}
AFTER = (
    "Resume after this event id (of an event of your stream): every message after it first, "
    "in order, or `reset` when they are no longer kept. `Last-Event-ID` wins over `after`."
)
BLOCKS_REPLY = obj({"blocks": {"type": "array", "items": {"type": "string"}}}, "blocks")
BLOCK_BODY = {
    **obj({"name": NAME}, "name", closed=False),
    "example": {"name": "mallory"},
}
EXPORT_REPLY = obj(
    {
        "name": {"type": "string"},
        "created_at": {**DATE_TIME, "description": "When the account was created."},
        "messages": {"type": "array", "items": MESSAGE, "description": "Newest first."},
        "sessions": {"type": "array", "items": SESSION},
        "blocks": {"type": "array", "items": {"type": "string"}},
    },
    "name",
    "created_at",
    "messages",
    "sessions",
    "blocks",
)
LOGIN_BODY = {
    **obj(
        {
            "name": NAME,
            "password": PASSWORD,
            "refresh": {
                "type": "boolean",
                "default": False,
                "description": "Also issue a refresh token (and the `refresh_token` cookie).",
            },
            "cookie_only": {
                "type": "boolean",
                "default": False,
                "description": "Answer the tokens in the HttpOnly cookies only, none in the "
                'body (which is then `{"name"}`): what a web page wants, so that no script '
                "of it can read them.",
            },
        },
        "name",
        "password",
        closed=False,
    ),
    "example": {"name": "alice", "password": "correct horse battery", "refresh": True},
}
NEW_PASSWORD_BODY = {
    **obj(
        {
            "password": {**PASSWORD, "description": "The current password."},
            "new_password": {
                **PASSWORD,
                "description": "The new password.",
                "example": "a new, longer passphrase",
            },
        },
        "password",
        "new_password",
        closed=False,
    ),
    "example": {"password": "correct horse battery", "new_password": "a new, longer passphrase"},
}
CONFIRM_BODY = {
    **obj(
        {"password": {**PASSWORD, "description": "The current password."}}, "password", closed=False
    ),
    "example": {"password": "correct horse battery"},
}
# The error codes of a route that needs a token, and of one that reads a JSON body.
AUTH_ERRORS = (
    ErrorCode.MISSING_TOKEN,
    ErrorCode.INVALID_TOKEN,
    ErrorCode.TOKEN_EXPIRED,
    ErrorCode.TOKEN_REVOKED,
)
BODY_ERRORS = (
    ErrorCode.INVALID_JSON,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    ErrorCode.VALIDATION_ERROR,
)


def error_responses(codes: Sequence[ErrorCode]) -> dict[int, tuple[Schema, str]]:
    """By status: the error body (its `error` one of that status's codes) and a description
    listing what each code means."""
    by_status: dict[int, list[ErrorCode]] = {}
    for code in codes:
        by_status.setdefault(code.status, []).append(code)
    return {
        status: (
            {
                **obj(
                    {
                        "error": {
                            "type": "string",
                            "enum": list(dict.fromkeys(c.slug for c in group)),
                        },
                        "message": {"type": "string"},
                    },
                    "error",
                    "message",
                ),
                "example": {"error": group[0].slug, "message": "a human-readable explanation"},
            },
            " ".join(f"`{c.slug}`: {c.meaning}" for c in group),
        )
        for status, group in sorted(by_status.items())
    }


# Alternatives: any one of them authenticates.
SECURITY_SCHEMES = ("tokenHeader", "bearer", "cookie")


def json_content(schema: Schema) -> dict[str, Any]:
    """An `application/json` content map for `schema`."""
    return {"application/json": {"schema": schema}}


@dataclass(frozen=True, slots=True)
class Doc:
    """The OpenAPI description of one route: every success and error status it can give."""

    summary: str
    tag: str
    ok: tuple[int, Schema | None, str]  # None: no body
    errors: tuple[ErrorCode, ...] = ()
    body: Schema | None = None
    body_required: bool = True
    secured: bool = False
    also: tuple[tuple[int, Schema, str], ...] = ()
    query: tuple[tuple[str, Any, str], ...] = ()  # name, sanic-ext schema, description
    headers: tuple[tuple[str, Any, str], ...] = ()  # the same, of request headers
    content_type: str = "application/json"  # of the success answer


def add_route(bp: Blueprint, method: str, path: str, handler: Handler, doc: Doc) -> None:
    """Register `handler` on `bp` with its description."""
    bp.add_route(documented(handler, doc), path, methods=[method], error_format=ERROR_FORMAT)


def documented(handler: Callable[..., Any], doc: Doc) -> Any:
    """A copy of `handler` that carries its description.

    sanic-ext keeps descriptions per handler function, so each registration documents its own
    copy of the function (the same code, no wrapper to run): two apps with different settings
    (limits, lengths) get different documents.
    """
    route = types.FunctionType(
        handler.__code__,
        handler.__globals__,
        handler.__name__,
        handler.__defaults__,
        handler.__closure__,
    )
    functools.update_wrapper(route, handler)
    described: Any = route
    operation = OperationStore()[described]  # type: ignore[no-untyped-call]
    responses = [
        (status, {} if schema is None else {doc.content_type: {"schema": schema}}, description)
        for status, schema, description in (doc.ok, *doc.also)
    ]
    for status, (schema, description) in error_responses(doc.errors).items():
        responses.append((status, json_content(schema), description))
    for status, content, description in responses:
        # What openapi.response records; sanic-ext builds its objects from a schema walk that
        # costs more than the rest of making an app, and the same schemas recur on every route.
        operation.responses[status] = _response(orjson.dumps(content), description)
    for location, parameters in (("query", doc.query), ("header", doc.headers)):
        for name, schema, description in parameters:
            described = openapi.parameter(
                name, schema, location, required=False, description=description
            )(described)
    if doc.body is not None:
        # What openapi.body records, without the validating wrapper it would put around the
        # handler: the handlers validate their bodies themselves.
        operation.requestBody = _body(orjson.dumps(json_content(doc.body)), doc.body_required)
    if doc.secured:
        for scheme in SECURITY_SCHEMES:
            described = openapi.secured(scheme)(described)
    return openapi.tag(doc.tag)(openapi.summary(doc.summary)(described))


@functools.lru_cache(maxsize=1024)
def _response(content: bytes, description: str) -> Any:
    """sanic-ext's Response for a content map (as JSON) and description, made once."""
    return Response.make(orjson.loads(content), description)


@functools.lru_cache(maxsize=256)
def _body(content: bytes, required: bool) -> Any:
    """sanic-ext's RequestBody for a content map (as JSON), made once."""
    return RequestBody.make(orjson.loads(content), required=required)


def text_schema(**constraints: Any) -> Any:
    """The schema of a text parameter (`pattern`, `minLength`, ...)."""
    return String(**constraints)  # type: ignore[no-untyped-call]


def limit_schema(maximum: int) -> Any:
    """The schema of the `limit` query parameter."""
    return Integer(minimum=1, maximum=maximum)  # type: ignore[no-untyped-call]
