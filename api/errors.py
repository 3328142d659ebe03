"""The one place that turns exceptions into HTTP statuses and the JSON error shape."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sanic import HTTPResponse, Request
from sanic.exceptions import RequestCancelled, SanicException
from sanic.handlers import ErrorHandler

from api.hashing import HasherBusy
from api.responses import json
from api.security import TokenError
from storage.errors import (
    NameTaken,
    RateLimited,
    SessionEnded,
    SessionRevoked,
    StorageUnavailable,
    UnknownUser,
)

logger = logging.getLogger("api.errors")

# nginx's status for a request whose client hung up before the answer: never sent, only logged.
CLIENT_CLOSED_REQUEST = 499
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class ApiError(Exception):
    """An error answer: status, machine-readable code, human message and extra headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class ValidationError(ApiError):
    """The body or query is well-formed but a field is wrong: 422 naming the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(422, "validation_error", f"{field}: {problem}")


class ShuttingDown(Exception):
    """The service has been asked to stop: it finishes what is in flight and takes no more."""


def unauthorized(code: str, message: str) -> ApiError:
    """A 401 with the Bearer challenge."""
    headers = {"WWW-Authenticate": "Bearer"} if code == "missing_token" else BEARER_CHALLENGE
    return ApiError(401, code, message, headers)


# Sanic's own exceptions, by status, get these codes.
_SANIC_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    417: "expectation_failed",
    503: "service_unavailable",
}


def to_api_error(exc: BaseException) -> ApiError:
    """Map any exception to the ApiError the client sees."""
    match exc:
        case ApiError():
            return exc
        case TokenError():
            return unauthorized(exc.code, str(exc))
        case SessionRevoked():
            return unauthorized("token_revoked", "the token has been revoked by a logout")
        case SessionEnded():
            return unauthorized(
                "token_revoked", "the user has logged out everywhere since this token was issued"
            )
        case UnknownUser():
            return unauthorized("invalid_token", "the token's user does not exist")
        case NameTaken():
            return ApiError(409, "name_taken", "a user with this name already exists")
        case RateLimited():
            return ApiError(
                429,
                "rate_limited",
                "too many attempts, try again later",
                {"Retry-After": str(exc.retry_after)},
            )
        case HasherBusy():
            return ApiError(
                503, "busy", "too many logins at once, try again shortly", {"Retry-After": "1"}
            )
        case ShuttingDown():
            return ApiError(
                503, "shutting_down", "the service is shutting down", {"Retry-After": "1"}
            )
        case RequestCancelled():
            return ApiError(CLIENT_CLOSED_REQUEST, "client_closed_request", "the client hung up")
        case StorageUnavailable():
            return ApiError(
                503,
                "storage_unavailable",
                "the data store is unavailable, try again shortly",
                {"Retry-After": "1"},
            )
        case SanicException() if 400 <= exc.status_code < 600 and exc.status_code != 500:
            code = _SANIC_CODES.get(exc.status_code, "http_error")
            return ApiError(exc.status_code, code, str(exc.message or code), exc.headers)
    return ApiError(500, "internal_error", "an unexpected error occurred")


def error_response(error: ApiError) -> HTTPResponse:
    """Render an ApiError as `{"error", "message"}` with its status and headers."""
    return json(
        {"error": error.code, "message": error.message},
        status=error.status,
        headers=error.headers,
    )


class JsonErrorHandler(ErrorHandler):
    """Answers every error, Sanic's own included, with the project's JSON error shape."""

    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        """Log unexpected errors with their traceback; answer all of them as JSON."""
        error = to_api_error(exception)
        if error.status == CLIENT_CLOSED_REQUEST:
            logger.info("client hung up before the answer to %s %s", request.method, request.path)
        elif error.status >= 500 and error.code == "internal_error":
            logger.error(
                "unhandled error on %s %s",
                request.method,
                request.path,
                exc_info=exception,
            )
        return error_response(error)
