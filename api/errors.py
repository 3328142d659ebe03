"""The one place that turns exceptions into HTTP statuses and the JSON error shape."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import Enum
from typing import cast

from sanic import HTTPResponse, Request
from sanic.exceptions import RequestCancelled, SanicException
from sanic.handlers import ErrorHandler

from api.context import AppCtx
from api.hashing import HasherBusy
from api.live import Busy
from api.logs import printable
from api.responses import json
from api.security import TokenError
from storage.errors import (
    BlocksFull,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    NameTaken,
    NoSuchBlock,
    NoSuchFamily,
    RateLimited,
    RecipientUnavailable,
    RefreshCsrfFailed,
    RefreshInvalid,
    RefreshReused,
    SessionEnded,
    SessionRevoked,
    StorageUnavailable,
    StreamsFull,
    UnknownRecipient,
    UnknownUser,
)

logger = logging.getLogger("api.errors")

# Every route names its error format: Sanic otherwise guesses one from each handler's source with
# ast.parse when the route is registered, which costs start-up time and, with another thread
# parsing at the same moment, fails on CPython 3.11 ("AST constructor recursion depth mismatch",
# python/cpython#106905). The handler below answers JSON whatever the format says.
ERROR_FORMAT = "json"


class ErrorCode(Enum):
    """Every error code the API answers with: its status and what it means. The raising code,
    the error handler and the OpenAPI document all read this one list."""

    INVALID_JSON = ("invalid_json", 400, "The body is not valid JSON.")
    BAD_REQUEST = ("bad_request", 400, "The request is malformed HTTP.")
    MISSING_TOKEN = ("missing_token", 401, "No token in the `token` header, Bearer or cookie.")
    INVALID_TOKEN = (
        "invalid_token",
        401,
        "The token is malformed, wrongly signed, of a user "
        "that does not exist, or meant to live too long.",
    )
    TOKEN_EXPIRED = ("token_expired", 401, "The token has expired.")
    TOKEN_REVOKED = (
        "token_revoked",
        401,
        "The token's session has ended: logged out, ended from `/sessions/`, its refresh token "
        "reused, or all of its user's sessions ended (log out everywhere, a new password).",
    )
    TOKEN_REUSED = (
        "token_reused",
        401,
        "The refresh token was used before: the whole session it belongs to has ended.",
    )
    INVALID_CREDENTIALS = (
        "invalid_credentials",
        401,
        "Wrong name or password (the same answer whether or not the name exists).",
    )
    METRICS_UNAUTHORIZED = (
        "metrics_unauthorized",
        401,
        "/metrics needs the METRICS_TOKEN as a Bearer token.",
    )
    WRONG_PASSWORD = (
        "invalid_credentials",
        403,
        "The current password is wrong (it counts as a failed login of the account).",
    )
    CSRF_FAILED = (
        "csrf_failed",
        403,
        "A cookie-authenticated request that changes state lacks the right `X-CSRF-Token`.",
    )
    NAME_MISMATCH = ("name_mismatch", 403, "`name` differs from the token's user.")
    ORIGIN_REFUSED = (
        "origin_refused",
        403,
        "A cookie-authenticated WebSocket from a page of another origin (not the service's own "
        "nor in `ALLOWED_ORIGINS`).",
    )
    RECIPIENT_UNAVAILABLE = (
        "recipient_unavailable",
        403,
        "The recipient does not take messages from you (they blocked you); nothing was stored.",
    )
    NOT_FOUND = ("not_found", 404, "No such path.")
    NO_SUCH_SESSION = ("not_found", 404, "No live session of yours has this id.")
    NO_SUCH_BLOCK = ("not_found", 404, "You have not blocked this name.")
    UNKNOWN_RECIPIENT = ("unknown_recipient", 404, "No user has this name; nothing was stored.")
    METHOD_NOT_ALLOWED = (
        "method_not_allowed",
        405,
        "The path does not take this method (see `Allow`).",
    )
    REQUEST_TIMEOUT = ("request_timeout", 408, "The request did not arrive whole in time.")
    NAME_TAKEN = (
        "name_taken",
        409,
        "A user with this name, or one that looks the same (case, width, look-alike letters), "
        "already exists.",
    )
    IDEMPOTENCY_KEY_IN_USE = (
        "idempotency_key_in_use",
        409,
        "A request with this Idempotency-Key is still running; see `Retry-After`.",
    )
    PAYLOAD_TOO_LARGE = ("payload_too_large", 413, "The body is larger than allowed.")
    UNSUPPORTED_MEDIA_TYPE = (
        "unsupported_media_type",
        415,
        "A body that is not `application/json`.",
    )
    RANGE_NOT_SATISFIABLE = ("range_not_satisfiable", 416, "The range cannot be served.")
    EXPECTATION_FAILED = ("expectation_failed", 417, "The expectation cannot be met.")
    VALIDATION_ERROR = (
        "validation_error",
        422,
        "A field is missing or wrong; the message names it.",
    )
    IDEMPOTENCY_KEY_REUSED = (
        "idempotency_key_reused",
        422,
        "This Idempotency-Key was used for a request with another body.",
    )
    UPGRADE_REQUIRED = (
        "upgrade_required",
        426,
        "Not a WebSocket handshake (`Upgrade: websocket`, `Connection: Upgrade`).",
    )
    RATE_LIMITED = (
        "rate_limited",
        429,
        "Too many attempts; try again after `Retry-After` seconds.",
    )
    STREAMS_FULL = (
        "rate_limited",
        429,
        "You have as many live streams open as you may; close one, or retry after "
        "`Retry-After` seconds.",
    )
    CLIENT_CLOSED_REQUEST = (
        "client_closed_request",
        499,
        "The client hung up before the answer (logged only, never sent).",
    )
    INTERNAL_ERROR = ("internal_error", 500, "An unexpected error (a bug).")
    STORAGE_UNAVAILABLE = (
        "storage_unavailable",
        503,
        "Redis is unreachable, hanging or refusing writes; see `Retry-After`.",
    )
    BUSY = ("busy", 503, "Too many logins are waiting for a password check; see `Retry-After`.")
    LIVE_BUSY = (
        "busy",
        503,
        "This worker has as many live streams open as it may; see `Retry-After`.",
    )
    SHUTTING_DOWN = ("shutting_down", 503, "The service is shutting down.")
    SERVICE_UNAVAILABLE = ("service_unavailable", 503, "The answer took too long.")
    HTTP_ERROR = ("http_error", 400, "Another HTTP error.")

    def __init__(self, slug: str, status: int, meaning: str) -> None:
        self.slug = slug  # what the answer's "error" field says
        self.status = status
        self.meaning = meaning


RETRY_SOON = {"Retry-After": "1"}
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class ApiError(Exception):
    """An error answer: its code (which gives the status), a human message and extra headers."""

    def __init__(
        self, code: ErrorCode, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = code.status
        self.message = message
        self.headers = dict(headers or {})


class ValidationError(ApiError):
    """The body or query is well-formed but a field is wrong: 422 naming the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(ErrorCode.VALIDATION_ERROR, f"{field}: {problem}")


class ShuttingDown(Exception):
    """The service has been asked to stop: it finishes what is in flight and takes no more."""


def unauthorized(code: ErrorCode, message: str) -> ApiError:
    """A 401 with the Bearer challenge."""
    headers = (
        {"WWW-Authenticate": "Bearer"} if code is ErrorCode.MISSING_TOKEN else BEARER_CHALLENGE
    )
    return ApiError(code, message, headers)


# Sanic's own exceptions, by status, get these codes.
_SANIC_CODES = {
    400: ErrorCode.BAD_REQUEST,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    408: ErrorCode.REQUEST_TIMEOUT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    416: ErrorCode.RANGE_NOT_SATISFIABLE,
    417: ErrorCode.EXPECTATION_FAILED,
    426: ErrorCode.UPGRADE_REQUIRED,
    503: ErrorCode.SERVICE_UNAVAILABLE,
}
_TOKEN_CODES = {"invalid_token": ErrorCode.INVALID_TOKEN, "token_expired": ErrorCode.TOKEN_EXPIRED}


def to_api_error(exc: BaseException) -> ApiError:
    """Map any exception to the ApiError the client sees."""
    match exc:
        case ApiError():
            return exc
        case TokenError():
            return unauthorized(_TOKEN_CODES[exc.code], str(exc))
        case SessionRevoked():
            return unauthorized(ErrorCode.TOKEN_REVOKED, "the token's session has ended")
        case SessionEnded():
            return unauthorized(
                ErrorCode.TOKEN_REVOKED,
                "every session of the user was ended (log out everywhere or a new password) "
                "since this token was issued",
            )
        case RefreshInvalid():
            return unauthorized(
                ErrorCode.INVALID_TOKEN, "the refresh token is unknown, expired or ended"
            )
        case RefreshReused():
            return unauthorized(
                ErrorCode.TOKEN_REUSED,
                "this refresh token was used before: its session has been ended",
            )
        case RefreshCsrfFailed():
            return ApiError(
                ErrorCode.CSRF_FAILED,
                "a refresh with the refresh_token cookie needs the X-CSRF-Token header set to "
                "the csrf_token cookie",
            )
        case NoSuchFamily():
            return ApiError(ErrorCode.NO_SUCH_SESSION, "no live session of yours has this id")
        case NoSuchBlock():
            return ApiError(ErrorCode.NO_SUCH_BLOCK, "you have not blocked this name")
        case UnknownRecipient():
            return ApiError(ErrorCode.UNKNOWN_RECIPIENT, "no user has this name")
        case RecipientUnavailable():
            return ApiError(
                ErrorCode.RECIPIENT_UNAVAILABLE, "the recipient does not take messages from you"
            )
        case IdempotencyKeyReused():
            return ApiError(
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was used for a request with another body",
            )
        case IdempotencyKeyInUse():
            return ApiError(
                ErrorCode.IDEMPOTENCY_KEY_IN_USE,
                "a request with this Idempotency-Key is still running",
                {"Retry-After": str(exc.retry_after)},
            )
        case BlocksFull():
            return ApiError(
                ErrorCode.VALIDATION_ERROR, "name: you have blocked as many names as you may"
            )
        case UnknownUser():
            return unauthorized(ErrorCode.INVALID_TOKEN, "the token's user does not exist")
        case NameTaken() if exc.look_alike:
            return ApiError(
                ErrorCode.NAME_TAKEN,
                "a user with a name that looks the same (case, width or look-alike letters) "
                "already exists",
            )
        case NameTaken():
            return ApiError(ErrorCode.NAME_TAKEN, "a user with this name already exists")
        case RateLimited():
            return ApiError(
                ErrorCode.RATE_LIMITED,
                "too many attempts, try again later",
                {"Retry-After": str(exc.retry_after)},
            )
        case StreamsFull():
            return ApiError(
                ErrorCode.STREAMS_FULL,
                "you have as many live streams open as you may",
                {"Retry-After": "5"},
            )
        case Busy():
            return ApiError(
                ErrorCode.LIVE_BUSY, "too many live streams here, try again shortly", RETRY_SOON
            )
        case HasherBusy():
            return ApiError(
                ErrorCode.BUSY, "too many logins at once, try again shortly", RETRY_SOON
            )
        case ShuttingDown():
            return ApiError(ErrorCode.SHUTTING_DOWN, "the service is shutting down", RETRY_SOON)
        case RequestCancelled():
            return ApiError(ErrorCode.CLIENT_CLOSED_REQUEST, "the client hung up")
        case StorageUnavailable():
            return ApiError(
                ErrorCode.STORAGE_UNAVAILABLE,
                "the data store is unavailable, try again shortly",
                RETRY_SOON,
            )
        case SanicException() if 400 <= exc.status_code < 600 and exc.status_code != 500:
            code = _SANIC_CODES.get(exc.status_code, ErrorCode.HTTP_ERROR)
            # Sanic's messages may quote what the client sent (a method, a path): bytes that
            # are not UTF-8 among them would make the JSON body fail to serialise.
            error = ApiError(code, printable(str(exc.message or code.slug)), exc.headers)
            error.status = exc.status_code  # http_error stands for any status
            return error
    return ApiError(ErrorCode.INTERNAL_ERROR, "an unexpected error occurred")


def error_body(error: ApiError) -> dict[str, str]:
    """An ApiError as the JSON the client reads: `{"error", "message"}`."""
    return {"error": error.code.slug, "message": error.message}


def error_response(error: ApiError) -> HTTPResponse:
    """Render an ApiError as `{"error", "message"}` with its status and headers."""
    return json(error_body(error), status=error.status, headers=error.headers)


class JsonErrorHandler(ErrorHandler):
    """Answers every error, Sanic's own included, with the project's JSON error shape."""

    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        """Log unexpected errors with their traceback; answer all of them as JSON."""
        error = to_api_error(exception)
        metrics = cast(AppCtx, request.app.ctx).metrics
        if metrics is not None:
            metrics.inc("api_errors", (error.code.slug,))
        if error.code is ErrorCode.CLIENT_CLOSED_REQUEST:
            logger.info("client hung up before the answer to %s %s", request.method, request.path)
        elif error.code is ErrorCode.INTERNAL_ERROR:
            logger.error(
                "unhandled error on %s %s",
                request.method,
                request.path,
                exc_info=exception,
            )
        return error_response(error)
