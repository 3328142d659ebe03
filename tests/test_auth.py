"""Signup, login, logout and /me/ over HTTP, on fakeredis and on a real Redis."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest

from api.settings import Settings
from support.processes import PASSWORD, SECRET
from tests.conftest import Api, set_cookies, token_for


def test_signup_creates_user(api: Api) -> None:
    response = api.signup("alice")
    assert response.status == 201
    assert response.json == {"name": "alice"}


def test_signup_same_name_twice_is_409(api: Api) -> None:
    api.signup("alice")
    response = api.signup("alice", "another password")
    assert response.status == 409
    assert response.json == {
        "error": "name_taken",
        "message": "a user with this name already exists",
    }


def test_signup_normalises_unicode_names(api: Api) -> None:
    decomposed = "Zoe\u0301"  # "Zoé" with a combining accent
    assert api.signup(decomposed).json == {"name": "Zo\u00e9"}
    assert api.signup("Zo\u00e9").status == 409


def test_login_returns_token_and_cookie(api: Api) -> None:
    api.signup("alice")
    response = api.post("/login/", json={"name": "alice", "password": PASSWORD})
    assert response.status == 200
    assert list(response.json) == ["token"]
    token = response.json["token"]
    cookies = set_cookies(response)
    assert cookies["token"].startswith(f"token={token};")
    csrf = jwt.decode(token, SECRET, algorithms=["HS256"])["csrf"]
    assert cookies["csrf_token"].startswith(f"csrf_token={csrf};")
    for cookie in cookies.values():
        for attribute in ("SameSite=Lax", "Path=/", "Max-Age=10800"):
            assert attribute in cookie
        assert "Secure" not in cookie  # plain HTTP with COOKIE_SECURE=auto
    assert "HttpOnly" in cookies["token"]
    assert "HttpOnly" not in cookies["csrf_token"]  # scripts must read it to echo it
    assert response.headers["cache-control"] == "no-store"


def test_token_claims(api: Api) -> None:
    api.signup("alice")
    before = int(time.time())
    token = api.login("alice")
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert header["alg"] == "HS256"
    assert set(claims) == {"sub", "name", "iat", "exp", "jti", "gen", "csrf", "fam"}
    assert claims["sub"] == claims["name"] == "alice"
    assert before <= claims["iat"] <= before + 5
    assert claims["exp"] == claims["iat"] + 10800


def test_every_login_issues_a_new_jti(api: Api) -> None:
    api.signup("alice")
    first, second = api.login("alice"), api.login("alice")
    jti = [jwt.decode(t, SECRET, algorithms=["HS256"])["jti"] for t in (first, second)]
    assert jti[0] != jti[1]


@pytest.mark.parametrize(
    ("name", "password"),
    [("alice", "wrong password"), ("nobody", PASSWORD), ("ALICE", PASSWORD)],
)
def test_login_failures_are_indistinguishable(api: Api, name: str, password: str) -> None:
    api.signup("alice")
    response = api.post("/login/", json={"name": name, "password": password})
    assert response.status == 401
    assert response.json == {"error": "invalid_credentials", "message": "wrong name or password"}
    assert "set-cookie" not in response.headers


def test_long_passwords_are_compared_in_full(api: Api) -> None:
    long_password = "x" * 100
    api.signup("alice", long_password)
    wrong_tail = "x" * 99 + "y"  # plain bcrypt would ignore everything past 72 bytes
    assert api.post("/login/", json={"name": "alice", "password": wrong_tail}).status == 401
    assert api.login("alice", long_password)


def test_me_with_each_transport(api: Api) -> None:
    token = api.user("alice")
    assert api.get("/me/", headers={"token": token}).json == {"name": "alice"}
    assert api.get("/me", headers={"Authorization": f"Bearer {token}"}).json == {"name": "alice"}
    assert api.get("/me/", cookie=f"token={token}").json == {"name": "alice"}


def test_bad_header_does_not_fall_back_to_cookie(api: Api) -> None:
    token = api.user("alice")
    response = api.get("/me/", headers={"token": "garbage"}, cookie=f"token={token}")
    assert response.status == 401
    assert response.json["error"] == "invalid_token"


AUTH_FAILURES = [
    ({}, "missing_token", "Bearer"),
    ({"token": "not-a-jwt"}, "invalid_token", 'Bearer error="invalid_token"'),
    ({"Authorization": "Basic YWxpY2U6eA=="}, "invalid_token", 'Bearer error="invalid_token"'),
    ({"Authorization": "Bearer"}, "invalid_token", 'Bearer error="invalid_token"'),
    (
        {"token": jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")},
        "invalid_token",
        'Bearer error="invalid_token"',
    ),
    (
        {"token": token_for("alice", ttl=60, now=int(time.time()) - 3600)},
        "token_expired",
        'Bearer error="invalid_token"',
    ),
    (
        {"token": jwt.encode({"sub": "alice"}, "another secret " * 3, algorithm="HS256")},
        "invalid_token",
        'Bearer error="invalid_token"',
    ),
]


@pytest.mark.parametrize(("headers", "code", "challenge"), AUTH_FAILURES)
def test_auth_failures(api: Api, headers: dict[str, str], code: str, challenge: str) -> None:
    api.signup("alice")
    response = api.get("/me/", headers=headers)
    assert response.status == 401
    assert response.json["error"] == code
    assert response.headers["www-authenticate"] == challenge


def test_token_of_a_user_that_does_not_exist(api: Api) -> None:
    response = api.get("/me/", headers={"token": token_for("ghost")})
    assert response.status == 401
    assert response.json == {"error": "invalid_token", "message": "the token's user does not exist"}


def test_logout_revokes_the_token_and_clears_the_cookie(api: Api) -> None:
    token = api.user("alice")
    response = api.post("/logout/", headers={"token": token})
    assert response.status == 200
    assert response.json == {"status": "logged out"}
    cookies = set_cookies(response)
    assert cookies["token"].startswith('token="";')
    assert cookies["csrf_token"].startswith('csrf_token="";')
    assert cookies["refresh_token"].startswith('refresh_token="";')
    assert "Path=/token/refresh" in cookies["refresh_token"]
    assert all("Max-Age=0" in cookie for cookie in cookies.values())
    for transport in ({"headers": {"token": token}}, {"cookie": f"token={token}"}):
        revoked = api.get("/me/", **transport)
        assert revoked.status == 401
        assert revoked.json == {
            "error": "token_revoked",
            "message": "the token's session has ended",
        }
    assert api.send(token, "after logout").status == 401


def test_logout_with_cookie_revokes_it(api: Api) -> None:
    token = api.user("alice")
    assert api.post("/logout", cookie=f"token={token}").status == 200
    assert api.get("/me/", headers={"token": token}).json["error"] == "token_revoked"


def test_logout_leaves_other_tokens_valid(api: Api) -> None:
    api.signup("alice")
    first, second = api.login("alice"), api.login("alice")
    assert api.post("/logout/", headers={"token": first}).json == {"status": "logged out"}
    assert api.get("/me/", headers={"token": second}).status == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"token": "garbage"}, {"Authorization": "Basic abc"}, {"token": token_for("ghost")}],
)
def test_logout_never_fails_for_missing_or_invalid_tokens(
    api: Api, headers: dict[str, str]
) -> None:
    response = api.post("/logout/", headers=headers)
    assert response.status == 200
    assert response.json == {"status": "logged out"}
    assert "Max-Age=0" in set_cookies(response)["token"]


def test_new_login_after_logout_works(api: Api) -> None:
    token = api.user("alice")
    assert api.post("/logout/", headers={"token": token}).json == {"status": "logged out"}
    fresh = api.login("alice")
    assert api.get("/me/", headers={"token": fresh}).status == 200


def test_cookie_secure_and_samesite_settings(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings.replace(cookie_secure="true", cookie_samesite="Strict"))
    api.signup("alice")
    response = api.post("/login/", json={"name": "alice", "password": PASSWORD})
    for cookie in set_cookies(response).values():
        assert "Secure" in cookie
        assert "SameSite=Strict" in cookie
