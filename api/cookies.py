"""The cookies a login sets: the token, its CSRF value, and the refresh token."""

from __future__ import annotations

from sanic import HTTPResponse

from api.context import ApiRequest
from api.settings import Settings

TOKEN_COOKIE = "token"  # noqa: S105 (a cookie name, not a secret)
CSRF_COOKIE = "csrf_token"
REFRESH_COOKIE = "refresh_token"
# The refresh token goes only where it is used: no other request carries it.
REFRESH_COOKIE_PATH = "/token/refresh"


def _secure(request: ApiRequest, settings: Settings) -> bool:
    if settings.cookie_secure == "auto":
        return request.scheme == "https"
    return settings.cookie_secure == "true"


def _set(
    response: HTTPResponse,
    request: ApiRequest,
    settings: Settings,
    cookie: tuple[str, str, bool, str],
    max_age: int,
) -> None:
    name, value, httponly, path = cookie
    response.add_cookie(
        name,
        value,
        max_age=max_age,
        httponly=httponly,
        samesite=settings.cookie_samesite,
        secure=_secure(request, settings),
        path=path,
    )


def set_token_cookies(
    response: HTTPResponse,
    request: ApiRequest,
    settings: Settings,
    token: str,
    csrf: str,
    *,
    csrf_max_age: int | None = None,
) -> None:
    """Set the HttpOnly token cookie for the token's life and the script-readable CSRF cookie
    (for `csrf_max_age`, by default as long), with the configured SameSite and Secure flags.

    With a refresh token the CSRF cookie lives as long as it does: a refresh with the cookie
    needs it after the token has expired."""
    max_age = settings.jwt_ttl_seconds
    _set(response, request, settings, (TOKEN_COOKIE, token, True, "/"), max_age)
    csrf_age = max_age if csrf_max_age is None else csrf_max_age
    _set(response, request, settings, (CSRF_COOKIE, csrf, False, "/"), csrf_age)


def set_refresh_cookie(
    response: HTTPResponse, request: ApiRequest, settings: Settings, token: str, max_age: int
) -> None:
    """Set the HttpOnly refresh token cookie, sent only to the refresh endpoint."""
    _set(response, request, settings, (REFRESH_COOKIE, token, True, REFRESH_COOKIE_PATH), max_age)


def clear_cookies(response: HTTPResponse, request: ApiRequest, settings: Settings) -> None:
    """Clear the token, CSRF and refresh token cookies."""
    for cookie in (
        (TOKEN_COOKIE, "", True, "/"),
        (CSRF_COOKIE, "", False, "/"),
        (REFRESH_COOKIE, "", True, REFRESH_COOKIE_PATH),
    ):
        _set(response, request, settings, cookie, 0)
