"""Double-submit CSRF protection for cookie clients, and the JSON-only body rule."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from api.settings import Settings
from tests.conftest import Api, csrf_of

CSRF_FAILED = {
    "error": "csrf_failed",
    "message": "a cookie-authenticated request that changes state needs the X-CSRF-Token "
    "header set to the csrf_token cookie",
}


def _stored(api: Api, token: str) -> list[str]:
    messages = api.get("/messages/", headers={"token": token}).json["messages"]
    return [m["text"] for m in messages]


@pytest.mark.parametrize("sent", [None, "", "wrong", "x" * 32])
def test_cookie_post_without_the_right_csrf_header_is_403(api: Api, sent: str | None) -> None:
    token = api.user("alice")
    headers = {} if sent is None else {"X-CSRF-Token": sent}
    response = api.post("/message/", json={"text": "hi"}, cookie=f"token={token}", headers=headers)
    assert response.status == 403
    assert response.json == CSRF_FAILED
    assert _stored(api, token) == []


def test_cookie_post_with_the_csrf_header_works(api: Api) -> None:
    token = api.user("alice")
    response = api.post(
        "/message/",
        json={"text": "hi"},
        cookie=f"token={token}; csrf_token={csrf_of(token)}",
        headers={"X-CSRF-Token": csrf_of(token)},
    )
    assert response.status == 201
    assert _stored(api, token) == ["hi"]


def test_csrf_value_of_another_session_is_refused(api: Api) -> None:
    api.signup("alice")
    first, second = api.login("alice"), api.login("alice")
    response = api.post(
        "/message/",
        json={"text": "hi"},
        cookie=f"token={first}",
        headers={"X-CSRF-Token": csrf_of(second)},
    )
    assert response.status == 403


def test_header_tokens_and_cookie_reads_need_no_csrf(api: Api) -> None:
    token = api.user("alice")
    assert api.send(token, "hi").status == 201
    assert api.get("/me/", cookie=f"token={token}").status == 200
    assert api.get("/messages/", cookie=f"token={token}").status == 200


def test_logout_all_by_cookie_needs_csrf_but_logout_does_not(api: Api) -> None:
    token = api.user("alice")
    refused = api.post("/logout/all/", cookie=f"token={token}")
    assert refused.status == 403
    assert refused.json == CSRF_FAILED
    assert api.get("/me/", headers={"token": token}).status == 200
    assert api.post("/logout/", cookie=f"token={token}").status == 200
    assert api.get("/me/", headers={"token": token}).status == 401


def test_csrf_protection_can_be_turned_off(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings.replace(csrf_protection=False))
    token = api.user("alice")
    assert api.post("/message/", json={"text": "hi"}, cookie=f"token={token}").status == 201


UNSUPPORTED = {
    "error": "unsupported_media_type",
    "message": "the request body must be application/json",
}


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "json"],
)
def test_bodies_that_are_not_json_are_415_before_any_change(
    api: Api, content_type: str | None
) -> None:
    token = api.user("bob")
    headers = {} if content_type is None else {"Content-Type": content_type}
    body = b'{"name": "alice", "password": "password one"}'
    assert api.post("/signup/", content=body, headers=headers).json == UNSUPPORTED
    assert api.post("/login/", content=body, headers=headers).status == 415
    response = api.post("/message/", content=b'{"text": "x"}', headers={**headers, "token": token})
    assert response.status == 415
    assert response.json == UNSUPPORTED
    assert api.post("/login/", json={"name": "alice", "password": "password one"}).status == 401
    assert _stored(api, token) == []


def test_json_with_a_charset_and_bodiless_posts_are_fine(api: Api) -> None:
    body = b'{"name": "alice", "password": "password one"}'
    headers = {"Content-Type": "application/json; charset=utf-8"}
    assert api.post("/signup/", content=body, headers=headers).status == 201
    assert api.post("/logout/").status == 200
