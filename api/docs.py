"""OpenAPI descriptions: JSON schemas of every body and one decorator to document a route."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sanic_ext import openapi
from sanic_ext.extensions.openapi.types import Integer

from api.validation import NAME_MAX_CHARS, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS

Schema = dict[str, Any]
F = TypeVar("F", bound=Callable[..., Any])

NAME: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": NAME_MAX_CHARS,
    "pattern": r"^[\w.-]+$",
    "description": "Unicode letters, digits, `_`, `.` or `-`.",
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


CREDENTIALS = obj({"name": NAME, "password": PASSWORD}, "name", "password", closed=False)


MESSAGE = obj(
    {
        "text": {
            "type": "string",
            "minLength": 1,
            "description": "A message of at most MESSAGE_MAX_CHARS (default 4096) "
            "characters, or `last N` to get the N newest messages instead.",
            "example": "hello",
        },
        "name": {"type": "string", "description": "If given, must be the token's user."},
    },
    "text",
    closed=False,
)


NAME_REPLY = obj({"name": {"type": "string"}}, "name")
TOKEN_REPLY = obj({"token": {"type": "string"}}, "token")
STATUS_REPLY = obj({"status": {"type": "string"}}, "status")
LAST_REPLY: Schema = {
    "type": "object",
    "description": 'Keys N down to "1"; "1" is the newest message.',
    "additionalProperties": {"type": "string"},
}
MESSAGES_REPLY = obj(
    {
        "messages": {
            "type": "array",
            "items": obj(
                {"text": {"type": "string"}, "sent_at": {"type": "string", "format": "date-time"}},
                "text",
                "sent_at",
            ),
        }
    },
    "messages",
)
ERROR = obj({"error": {"type": "string"}, "message": {"type": "string"}}, "error", "message")

ERRORS = {
    400: "The body is not valid JSON (`invalid_json`).",
    401: "Missing (`missing_token`), invalid (`invalid_token`), expired (`token_expired`) "
    "or revoked (`token_revoked`) token.",
    403: "`name` differs from the token's user (`name_mismatch`), or a cookie-authenticated "
    "request lacks the right X-CSRF-Token (`csrf_failed`).",
    409: "The name is taken (`name_taken`).",
    415: "The body is not `application/json` (`unsupported_media_type`).",
    422: "A field is missing or wrong (`validation_error`); the message names it.",
    429: "Too many attempts (`rate_limited`); see Retry-After.",
    503: "Redis is unavailable (`storage_unavailable`), or too many logins are waiting for a "
    "password check (`busy`); see Retry-After.",
}

# Alternatives: any one of them authenticates.
SECURITY_SCHEMES = ("tokenHeader", "bearer", "cookie")


def json_content(schema: Schema) -> dict[str, Any]:
    """An `application/json` content map for `schema`."""
    return {"application/json": {"schema": schema}}


def describe(
    summary: str,
    *,
    ok: tuple[int, Schema, str],
    errors: tuple[int, ...] = (),
    body: Schema | None = None,
    secured: bool = False,
    tag: str,
) -> Callable[[F], F]:
    """Document a route: summary, body, the success reply and every error status it can give."""

    def decorate(handler: F) -> F:
        status, schema, description = ok
        decorated: Any = handler
        for code in errors:
            decorated = openapi.response(code, json_content(ERROR), ERRORS[code])(decorated)
        decorated = openapi.response(status, json_content(schema), description)(decorated)
        if body is not None:
            decorated = openapi.body(json_content(body), required=True)(decorated)
        if secured:
            for scheme in SECURITY_SCHEMES:
                decorated = openapi.secured(scheme)(decorated)
        decorated = openapi.summary(summary)(decorated)
        decorated = openapi.tag(tag)(decorated)
        result: F = decorated
        return result

    return decorate


def also(status: int, schema: Schema, description: str) -> Callable[[F], F]:
    """Document one more success reply of a route."""
    result: Callable[[F], F] = openapi.response(status, json_content(schema), description)
    return result


limit_parameter = openapi.parameter(
    "limit",
    Integer(minimum=1),  # type: ignore[no-untyped-call]
    "query",
    required=False,
    description="How many messages, 1 to MESSAGE_HISTORY_LIMIT (default 1000); default 20.",
)
