"""How tokens travel between a client and the service: the two transports.

A token is made and checked by the auth service (`api.auth`, with `api.security`); how it travels
is a transport's, each with its reading, setting and clearing in one place (fastapi-users'
Transport and Strategy, joined by one backend):

- `HeaderTransport`: the `token` header or `Authorization: Bearer` in, the JSON body out. For
  programs: what they send and read is theirs to keep.
- `CookieTransport`: HttpOnly cookies in and out, with a CSRF double submit (`X-CSRF-Token` must
  echo the script-readable `csrf_token` cookie) on every request that changes state. For browser
  pages: no script of theirs ever reads a token.

A login or a new password answers through both (the seed's contract: the token in the body and in
a cookie) unless it asks for the cookies only; a refresh answers through the transport it came by.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from sanic import HTTPResponse

from api.auth import Issued
from api.context import ApiRequest
from api.errors import ApiError, ErrorCode, unauthorized
from api.security import TokenClaims
from api.settings import Settings

TOKEN_HEADER = "token"  # noqa: S105 (a header name, not a secret)
CSRF_HEADER = "x-csrf-token"
TOKEN_COOKIE = "token"  # noqa: S105 (a cookie name, not a secret)
CSRF_COOKIE = "csrf_token"
REFRESH_COOKIE = "refresh_token"
# The refresh token goes only where it is used: no other request carries it.
REFRESH_COOKIE_PATH = "/token/refresh"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
NO_STORE = {"Cache-Control": "no-store"}


def bearer_credentials(authorization: str) -> str | None:
    """The credentials of an `Authorization: Bearer <credentials>` value (the scheme in any case,
    RFC 9110 11.1), None for another scheme or none at all."""
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


class HeaderTransport:
    """The token in the `token` header or `Authorization: Bearer`; tokens answered in the body."""

    @staticmethod
    def read(request: ApiRequest) -> str | None:
        """The token of the `token` header, else of `Authorization: Bearer`; 401 if malformed."""
        token: str | None = request.headers.get(TOKEN_HEADER)
        if token is not None:
            return token.strip()
        authorization: str | None = request.headers.get("authorization")
        if authorization is None:
            return None
        credentials = bearer_credentials(authorization)
        if credentials is None:
            raise unauthorized(
                ErrorCode.INVALID_TOKEN, "the Authorization header must be 'Bearer <token>'"
            )
        return credentials

    @staticmethod
    def body(issued: Issued) -> dict[str, Any]:
        """The answer's body: the token, and the refresh token if one was issued."""
        body = {"token": issued.token}
        if issued.refresh_token is not None:
            body["refresh_token"] = issued.refresh_token
        return body


class CookieTransport:
    """The token in the HttpOnly `token` cookie, the refresh token in its own, sent only to the
    refresh endpoint, and the script-readable `csrf_token` cookie the page echoes in
    `X-CSRF-Token`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @staticmethod
    def read(request: ApiRequest) -> str | None:
        """The token of the `token` cookie, if any."""
        token: str | None = request.cookies.get(TOKEN_COOKIE)
        return token or None

    @staticmethod
    def read_refresh(request: ApiRequest) -> str | None:
        """The refresh token of its cookie, if any."""
        token: str | None = request.cookies.get(REFRESH_COOKIE)
        return token or None

    @staticmethod
    def csrf_value(request: ApiRequest) -> str:
        """What the request sent in X-CSRF-Token ('' if nothing, or bytes no CSRF value has)."""
        sent: str = request.headers.get(CSRF_HEADER, "")
        return sent if sent.isascii() else ""  # CSRF values are base64url

    def check_csrf(self, request: ApiRequest, claims: TokenClaims) -> None:
        """Double submit, for a request that changes state: X-CSRF-Token must equal the token's
        `csrf` claim (403 otherwise)."""
        if not self._settings.csrf_protection or request.method in SAFE_METHODS:
            return
        sent = self.csrf_value(request)
        if not (claims.csrf and sent and hmac.compare_digest(sent.encode(), claims.csrf.encode())):
            raise ApiError(
                ErrorCode.CSRF_FAILED,
                "a cookie-authenticated request that changes state needs the X-CSRF-Token header "
                "set to the csrf_token cookie",
            )

    def set(self, response: HTTPResponse, request: ApiRequest, issued: Issued) -> None:
        """Set the token and CSRF cookies, and the refresh cookie if a refresh token was issued.

        With a refresh token every cookie lives as long as it does: a browser keeps sending the
        expired token (so the page learns `token_expired` and refreshes, instead of seeing no
        token at all) and the CSRF value a cookie refresh needs."""
        life = self._settings.jwt_ttl_seconds
        if issued.refresh_token is not None:
            life = max(issued.refresh_expires - int(time.time()), 0)
        self._cookie(response, request, TOKEN_COOKIE, issued.token, life, httponly=True)
        self._cookie(response, request, CSRF_COOKIE, issued.csrf, life, httponly=False)
        if issued.refresh_token is not None:
            self._cookie(
                response,
                request,
                REFRESH_COOKIE,
                issued.refresh_token,
                life,
                httponly=True,
                path=REFRESH_COOKIE_PATH,
            )

    def clear(self, response: HTTPResponse, request: ApiRequest) -> None:
        """Clear the token, CSRF and refresh token cookies."""
        self._cookie(response, request, TOKEN_COOKIE, "", 0, httponly=True)
        self._cookie(response, request, CSRF_COOKIE, "", 0, httponly=False)
        self._cookie(
            response, request, REFRESH_COOKIE, "", 0, httponly=True, path=REFRESH_COOKIE_PATH
        )

    def _cookie(
        self,
        response: HTTPResponse,
        request: ApiRequest,
        name: str,
        value: str,
        max_age: int,
        *,
        httponly: bool,
        path: str = "/",
    ) -> None:
        settings = self._settings
        secure = (
            request.scheme == "https"
            if settings.cookie_secure == "auto"
            else settings.cookie_secure == "true"
        )
        response.add_cookie(
            name,
            value,
            max_age=max_age,
            httponly=httponly,
            samesite=settings.cookie_samesite,
            secure=secure,
            path=path,
        )
