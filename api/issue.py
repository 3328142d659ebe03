"""Issuing a session's tokens: what a login, a refresh and a new password have in common."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sanic import HTTPResponse

from api.context import ApiRequest
from api.cookies import set_refresh_cookie, set_token_cookies
from api.responses import json
from api.security import digest, issue_refresh_token, issue_token, new_csrf, new_family_id
from api.services import Services
from api.validation import header_text
from storage.models import NewFamily
from storage.sessions import USER_AGENT_MAX_CHARS

NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True, slots=True)
class Pending:
    """Tokens about to be issued for a family, before the store has taken it: the family (new,
    or the next state of one being refreshed), the CSRF value the access token will carry and
    the refresh token, if there is one."""

    family: NewFamily
    csrf: str
    refresh_token: str | None


def prepare(
    svc: Services,
    request: ApiRequest,
    name: str,
    *,
    refresh: bool,
    family_id: str | None = None,
) -> Pending:
    """New values for the family `family_id` (a new family by default), with a refresh token
    if `refresh`."""
    family_id = family_id or new_family_id()
    csrf = new_csrf()
    refresh_token, refresh_digest = None, ""
    if refresh:
        refresh_token, named = issue_refresh_token(name, family_id)
        refresh_digest = named.digest
    family = svc.sessions.plan(
        family_id,
        user_agent=header_text(request.headers.get("user-agent"), USER_AGENT_MAX_CHARS),
        refresh_digest=refresh_digest,
        csrf_digest=digest(csrf),
    )
    return Pending(family, csrf, refresh_token)


def answer(
    svc: Services,
    request: ApiRequest,
    pending: Pending,
    name: str,
    generation: int,
    *,
    refresh_expires: int = 0,
) -> HTTPResponse:
    """200 `{"token"}` (and `refresh_token`), with the cookies, for a family the store took.

    `refresh_expires`: when the refresh token expires (seconds since the epoch), if not when
    the family planned it.
    """
    settings = svc.settings
    token, _ = issue_token(
        svc.secret,
        name,
        generation,
        settings.jwt_ttl_seconds,
        family=pending.family.id,
        csrf=pending.csrf,
    )
    body = {"token": token}
    if pending.refresh_token is not None:
        body["refresh_token"] = pending.refresh_token
    response = json(body, headers=NO_STORE)
    if pending.refresh_token is None:
        set_token_cookies(response, request, settings, token, pending.csrf)
        return response
    expires = refresh_expires or pending.family.refresh_expires
    max_age = max(expires - int(time.time()), 0)
    set_token_cookies(response, request, settings, token, pending.csrf, csrf_max_age=max_age)
    set_refresh_cookie(response, request, settings, pending.refresh_token, max_age)
    return response
