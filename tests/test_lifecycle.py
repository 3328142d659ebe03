"""The account lifecycle: refresh tokens (rotation, reuse detection), sessions, a new password,
deleting and exporting an account; on fakeredis, a real Redis and the cluster."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from api.security import issue_token
from api.settings import Settings
from storage import keys
from storage.connection import Client
from support.processes import PASSWORD, SECRET
from tests.conftest import Api, Reply, cookie_value, csrf_of, set_cookies

NEW_PASSWORD = "a new, longer passphrase"


def login(api: Api, name: str = "alice", **extra: Any) -> Reply:
    """POST /login/ with the test password and `extra` fields."""
    return api.post("/login/", json={"name": name, "password": PASSWORD, **extra})


def login_with_refresh(api: Api, name: str = "alice", user_agent: str = "tests") -> tuple[str, str]:
    """Log in asking for a refresh token; return (token, refresh token)."""
    response = api.post(
        "/login/",
        json={"name": name, "password": PASSWORD, "refresh": True},
        headers={"User-Agent": user_agent},
    )
    assert response.status == 200, response.text
    return response.json["token"], response.json["refresh_token"]


def refresh(api: Api, refresh_token: str) -> Reply:
    """POST /token/refresh/ with the refresh token in the body."""
    return api.post("/token/refresh/", json={"refresh_token": refresh_token})


def error_of(response: Reply) -> tuple[int, str]:
    """The status and error code of an error answer."""
    return response.status, response.json["error"]


def user_keys(api: Api, name: str = "alice") -> list[str]:
    """Every key of the user's (they all carry the `{name}` hash tag)."""

    async def scan(client: Client) -> list[str]:
        return sorted([key async for key in client.scan_iter(match=f"*{{{name}}}*")])

    return api.redis(scan)


def test_a_plain_login_answers_as_before(api: Api) -> None:
    api.signup("alice")
    response = login(api)
    assert response.status == 200
    assert set(response.json) == {"token"}
    assert set(set_cookies(response)) == {"token", "csrf_token"}


def test_a_login_asking_for_refresh_gets_a_refresh_token_and_its_cookie(api: Api) -> None:
    api.signup("alice")
    response = login(api, refresh=True)
    assert response.status == 200
    assert set(response.json) == {"token", "refresh_token"}
    refresh_token = response.json["refresh_token"]
    cookie = set_cookies(response)["refresh_token"]
    assert cookie.startswith(f"refresh_token={refresh_token};")
    for attribute in ("HttpOnly", "Path=/token/refresh;", "SameSite=Lax", "Max-Age=2592000"):
        assert attribute in cookie
    # Opaque, at least 128 random bits, and never stored as such.
    secret = refresh_token.rsplit(".", 1)[1]
    assert len(secret) >= 22

    async def stored(client: Client) -> str:
        values: list[Any] = []
        for key in await client.keys("*"):
            kind = await client.type(key)
            if kind == "hash":
                values += list((await client.hgetall(key)).values())
            elif kind == "zset":
                values += await client.zrange(key, 0, -1)
        return " ".join(str(value) for value in values)

    assert secret not in api.redis(stored)


@pytest.mark.parametrize("flag", ["yes", 1, None, [True]])
def test_refresh_must_be_a_boolean(api: Api, flag: object) -> None:
    api.signup("alice")
    response = login(api, refresh=flag)
    assert (response.status, response.json) == (
        422,
        {"error": "validation_error", "message": "refresh: must be true or false"},
    )


def test_a_refresh_rotates_and_a_reused_token_ends_the_family(api: Api) -> None:
    api.signup("alice")
    first_token, first_refresh = login_with_refresh(api)
    rotated = refresh(api, first_refresh)
    assert rotated.status == 200
    assert set(rotated.json) == {"token", "refresh_token"}
    second_token, second_refresh = rotated.json["token"], rotated.json["refresh_token"]
    assert second_refresh != first_refresh
    assert set(set_cookies(rotated)) == {"token", "csrf_token", "refresh_token"}
    # Both access tokens of the family work until the reuse.
    for token in (first_token, second_token):
        assert api.get("/me/", headers={"token": token}).status == 200

    reused = refresh(api, first_refresh)
    assert error_of(reused) == (401, "token_reused")
    # The whole family ended: its current refresh token and every access token of it.
    assert error_of(refresh(api, second_refresh)) == (401, "invalid_token")
    for token in (first_token, second_token):
        assert error_of(api.get("/me/", headers={"token": token})) == (401, "token_revoked")
        assert api.send(token, "after the reuse").status == 401


def test_a_reuse_ends_only_its_own_family(api: Api) -> None:
    api.signup("alice")
    _, stolen = login_with_refresh(api)
    other_token, other_refresh = login_with_refresh(api)
    assert refresh(api, stolen).status == 200
    assert error_of(refresh(api, stolen)) == (401, "token_reused")
    assert api.get("/me/", headers={"token": other_token}).status == 200
    assert refresh(api, other_refresh).status == 200


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"refresh_token": ""}, 401, "invalid_token"),
        ({"refresh_token": "garbage"}, 401, "invalid_token"),
        ({"refresh_token": "a.b.c"}, 401, "invalid_token"),
        ({"refresh_token": "e3t9.AAAAAAAAAAAAAAAAAAAAAA." + "A" * 43}, 401, "invalid_token"),
        ({"refresh_token": "YWxpY2U.AAAAAAAAAAAAAAAAAAAAAA." + "A" * 43}, 401, "invalid_token"),
        ({"refresh_token": "x" * 5000}, 401, "invalid_token"),
        ({"refresh_token": 42}, 422, "validation_error"),
        ({}, 401, "missing_token"),
    ],
    ids=["empty", "garbage", "short", "hash tag", "unknown family", "long", "number", "none"],
)
def test_a_bad_refresh_token_is_refused(
    api: Api, body: dict[str, Any], status: int, error: str
) -> None:
    api.signup("alice")
    login_with_refresh(api)
    assert error_of(api.post("/token/refresh/", json=body)) == (status, error)


def test_a_wrong_secret_for_a_live_family_is_invalid_not_reuse(api: Api) -> None:
    api.signup("alice")
    token, refresh_token = login_with_refresh(api)
    forged = refresh_token.rsplit(".", 1)[0] + "." + "B" * 43
    assert error_of(refresh(api, forged)) == (401, "invalid_token")
    assert api.get("/me/", headers={"token": token}).status == 200
    assert refresh(api, refresh_token).status == 200


def test_a_refresh_with_the_cookie_needs_the_csrf_value_of_its_family(api: Api) -> None:
    api.signup("alice")
    token, refresh_token = login_with_refresh(api)
    cookie = f"refresh_token={refresh_token}"
    missing = api.post("/token/refresh/", cookie=cookie)
    assert error_of(missing) == (403, "csrf_failed")
    wrong = api.post("/token/refresh/", cookie=cookie, headers={"X-CSRF-Token": "not-it"})
    assert error_of(wrong) == (403, "csrf_failed")
    # A refused request used nothing up: the right value still works, once.
    right = api.post("/token/refresh/", cookie=cookie, headers={"X-CSRF-Token": csrf_of(token)})
    assert right.status == 200
    # A refresh by cookie answers the new pair in the cookies only: no script reads it.
    assert right.json == {"name": "alice"}
    new_refresh, new_token, new_csrf = (
        cookie_value(right, name) for name in ("refresh_token", "token", "csrf_token")
    )
    assert new_csrf == csrf_of(new_token)
    # The next refresh needs the new CSRF value, not the old one.
    next_cookie = f"refresh_token={new_refresh}"
    stale = api.post(
        "/token/refresh/", cookie=next_cookie, headers={"X-CSRF-Token": csrf_of(token)}
    )
    assert error_of(stale) == (403, "csrf_failed")
    fresh = {"X-CSRF-Token": new_csrf}
    assert api.post("/token/refresh/", cookie=next_cookie, headers=fresh).status == 200


@pytest.mark.parametrize("racers", [2, 8])
def test_racing_refreshes_with_one_token_give_exactly_one_pair(api: Api, racers: int) -> None:
    api.signup("alice")
    _, refresh_token = login_with_refresh(api)
    body = {"refresh_token": refresh_token}

    async def race() -> list[Any]:
        requests = (api.post_async("/token/refresh/", body) for _ in range(racers))
        return await asyncio.gather(*requests)

    answers = api.run(race())
    winners = [answer for answer in answers if answer[0] == 200]
    assert len(winners) == 1
    # The first loser is a reuse and ends the family; any later one finds it ended.
    losers = sorted(body["error"] for status, body, _ in answers if status == 401)
    assert losers == ["invalid_token"] * (racers - 2) + ["token_reused"]
    # The winner's new pair ended with the family.
    assert error_of(refresh(api, winners[0][1]["refresh_token"])) == (401, "invalid_token")
    assert api.get("/me/", headers={"token": winners[0][1]["token"]}).status == 401


def _set_family_field(api: Api, token_name: str, field: str, value: int) -> None:
    async def change(client: Client) -> None:
        [family] = await client.zrange(keys.families(token_name), 0, -1)
        await client.hset(keys.family(token_name, str(family)), field, value)

    api.redis(change)


@pytest.mark.parametrize("field", ["refresh_expires", "deadline"])
def test_an_expired_refresh_token_or_family_is_invalid(api: Api, field: str) -> None:
    api.signup("alice")
    token, refresh_token = login_with_refresh(api)
    _set_family_field(api, "alice", field, int(time.time()) - 1)
    assert error_of(refresh(api, refresh_token)) == (401, "invalid_token")
    assert api.get("/me/", headers={"token": token}).status == 200  # its access token lives on


def test_a_refresh_token_never_outlives_its_family(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(
        dataclasses.replace(settings, refresh_ttl_seconds=3600, refresh_max_age_seconds=3700)
    )
    api.signup("alice")
    _, refresh_token = login_with_refresh(api)
    # As if the login were 3,650 s ago: the next refresh token may live 50 s, not an hour.
    _set_family_field(api, "alice", "deadline", int(time.time()) + 50)
    rotated = refresh(api, refresh_token)
    assert rotated.status == 200
    max_age = int(set_cookies(rotated)["refresh_token"].split("Max-Age=")[1].split(";")[0])
    assert 45 <= max_age <= 50


def test_logout_ends_the_family_of_the_refresh_token_and_of_the_token(api: Api) -> None:
    api.signup("alice")
    token, refresh_token = login_with_refresh(api)
    response = api.post("/logout/", json={"refresh_token": refresh_token})
    assert response.status == 200
    assert set_cookies(response)["refresh_token"].startswith('refresh_token="";')
    assert error_of(refresh(api, refresh_token)) == (401, "invalid_token")
    assert error_of(api.get("/me/", headers={"token": token})) == (401, "token_revoked")

    token, refresh_token = login_with_refresh(api)
    assert api.post("/logout/", headers={"token": token}).status == 200
    assert error_of(refresh(api, refresh_token)) == (401, "invalid_token")


def test_logout_everywhere_ends_every_family(api: Api) -> None:
    api.signup("alice")
    pairs = [login_with_refresh(api) for _ in range(3)]
    assert api.post("/logout/all/", headers={"token": pairs[0][0]}).status == 200
    for token, refresh_token in pairs:
        assert error_of(refresh(api, refresh_token)) == (401, "invalid_token")
        assert error_of(api.get("/me/", headers={"token": token})) == (401, "token_revoked")
    assert user_keys(api) == [keys.user("alice")]
    token, refresh_token = login_with_refresh(api)  # a new login works
    assert refresh(api, refresh_token).status == 200


def test_sessions_lists_the_live_families_newest_first(api: Api) -> None:
    api.signup("alice")
    first, _ = login_with_refresh(api, user_agent="first client")
    api.services.sessions.clock = lambda: time.time() + 2  # created_at has whole seconds
    second = api.post(
        "/login/",
        json={"name": "alice", "password": PASSWORD},
        headers={"User-Agent": "u" * 300},
    ).json["token"]
    response = api.get("/sessions/", headers={"token": first})
    assert response.status == 200
    sessions = response.json["sessions"]
    assert [s["user_agent"] for s in sessions] == ["u" * 200, "first client"]
    assert [s["current"] for s in sessions] == [False, True]
    for session in sessions:
        assert set(session) == {"id", "created_at", "last_used_at", "user_agent", "current"}
        assert session["created_at"].endswith("Z")
        assert session["last_used_at"] >= session["created_at"]
    assert api.get("/sessions/", headers={"token": second}).json["sessions"][0]["current"]


def test_ending_a_session_by_id(api: Api) -> None:
    api.signup("alice")
    api.signup("bob")
    mine, my_refresh = login_with_refresh(api)
    other, other_refresh = login_with_refresh(api)
    bobs = login_with_refresh(api, "bob")[0]
    sessions = api.get("/sessions/", headers={"token": mine}).json["sessions"]
    [other_id] = [s["id"] for s in sessions if not s["current"]]
    bobs_id = api.get("/sessions/", headers={"token": bobs}).json["sessions"][0]["id"]

    ended = api.request("delete", f"/sessions/{other_id}/", headers={"token": mine})
    assert (ended.status, ended.content) == (204, b"")
    assert "set-cookie" not in ended.headers  # not this client's session
    assert error_of(api.get("/me/", headers={"token": other})) == (401, "token_revoked")
    assert error_of(refresh(api, other_refresh)) == (401, "invalid_token")
    assert len(api.get("/sessions/", headers={"token": mine}).json["sessions"]) == 1
    for unknown in (other_id, bobs_id, "not-an-id", "A" * 22):
        answer = api.request("delete", f"/sessions/{unknown}/", headers={"token": mine})
        assert (answer.status, answer.json) == (
            404,
            {"error": "not_found", "message": "no live session of yours has this id"},
        )
    assert api.get("/me/", headers={"token": bobs}).status == 200

    [mine_id] = [s["id"] for s in api.get("/sessions/", headers={"token": mine}).json["sessions"]]
    own = api.request("delete", f"/sessions/{mine_id}/", headers={"token": mine})
    assert own.status == 204
    assert set(set_cookies(own)) == {"token", "csrf_token", "refresh_token"}
    assert error_of(api.get("/me/", headers={"token": mine})) == (401, "token_revoked")
    assert error_of(refresh(api, my_refresh)) == (401, "invalid_token")


def test_a_new_password_ends_every_other_session(api: Api) -> None:
    api.signup("alice")
    token, refresh_token = login_with_refresh(api)
    other = api.login("alice")
    response = api.post(
        "/password/",
        json={"password": PASSWORD, "new_password": NEW_PASSWORD},
        headers={"token": token},
    )
    assert response.status == 200
    assert set(response.json) == {"token"}
    new_token = response.json["token"]
    assert set(set_cookies(response)) == {"token", "csrf_token"}
    for old in (token, other):
        assert error_of(api.get("/me/", headers={"token": old})) == (401, "token_revoked")
    assert error_of(refresh(api, refresh_token)) == (401, "invalid_token")
    assert api.get("/me/", headers={"token": new_token}).status == 200
    assert len(api.get("/sessions/", headers={"token": new_token}).json["sessions"]) == 1
    assert login(api).status == 401
    assert api.login("alice", NEW_PASSWORD)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"password": PASSWORD, "new_password": "short"},
            "new_password: must be 8-1024 characters",
        ),
        ({"password": PASSWORD}, "new_password: field required"),
        ({"new_password": NEW_PASSWORD}, "password: field required"),
        ({"password": PASSWORD, "new_password": 12345678}, "new_password: must be a string"),
    ],
)
def test_a_new_password_follows_the_signup_rules(
    api: Api, body: dict[str, Any], message: str
) -> None:
    token = api.user("alice")
    response = api.post("/password/", json=body, headers={"token": token})
    assert (response.status, response.json) == (
        422,
        {"error": "validation_error", "message": message},
    )
    assert api.get("/me/", headers={"token": token}).status == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/password/", {"password": "wrong password", "new_password": NEW_PASSWORD}),
        ("delete", "/me/", {"password": "wrong password"}),
    ],
)
def test_a_wrong_current_password_is_403_and_counts_as_a_failed_login(
    make_api: Callable[[Settings], Api],
    settings: Settings,
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    api = make_api(dataclasses.replace(settings, login_max_failures=3))
    token = api.user("alice")
    for _ in range(3):
        response = api.request(method, path, json=body, headers={"token": token})
        assert (response.status, response.json) == (
            403,
            {"error": "invalid_credentials", "message": "the current password is wrong"},
        )
    # The account's window is full: a stolen token cannot guess on, nor can a login.
    limited = api.request(method, path, json=body, headers={"token": token})
    assert error_of(limited) == (429, "rate_limited")
    assert "retry-after" in limited.headers
    assert error_of(login(api)) == (429, "rate_limited")
    assert api.get("/me/", headers={"token": token}).status == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/password/", {"password": PASSWORD, "new_password": NEW_PASSWORD}),
        ("delete", "/me/", {"password": PASSWORD}),
        ("delete", "/sessions/AAAAAAAAAAAAAAAAAAAAAA/", None),
    ],
)
def test_cookie_clients_need_the_csrf_header(
    api: Api, method: str, path: str, body: dict[str, Any] | None
) -> None:
    token = api.user("alice")
    response = api.request(method, path, json=body, cookie=f"token={token}")
    assert error_of(response) == (403, "csrf_failed")
    assert api.get("/me/", headers={"token": token}).status == 200


def test_deleting_the_account_removes_everything_at_once(api: Api) -> None:
    api.signup("alice")
    token, refresh_token = login_with_refresh(api)
    other = api.login("alice")
    assert api.send(token, "hello").status == 201
    assert login(api, password="wrong password").status == 401  # a failed login, counted
    wrong = api.request("delete", "/me/", json={"password": "wrong pass"}, headers={"token": token})
    assert error_of(wrong) == (403, "invalid_credentials")
    deleted = api.request("delete", "/me/", json={"password": PASSWORD}, headers={"token": token})
    assert (deleted.status, deleted.content) == (204, b"")
    assert set(set_cookies(deleted)) == {"token", "csrf_token", "refresh_token"}
    assert user_keys(api) == []
    for old in (token, other):
        assert error_of(api.get("/me/", headers={"token": old})) == (401, "invalid_token")
    assert error_of(refresh(api, refresh_token)) == (401, "invalid_token")

    # The name can be signed up again, and no token of the deleted account works for it.
    assert api.signup("alice").status == 201
    new_token = api.login("alice")
    for old in (token, other):
        assert error_of(api.get("/me/", headers={"token": old})) == (401, "token_revoked")
    assert error_of(refresh(api, refresh_token)) == (401, "invalid_token")
    assert api.get("/me/", headers={"token": new_token}).status == 200


def test_the_export_holds_everything_kept_about_the_user(api: Api) -> None:
    api.signup("alice")
    api.signup("bob")
    token, _ = login_with_refresh(api, user_agent="exporter")
    for text in ("first", "second"):
        assert api.send(token, text).status == 201
    api.send(api.login("bob"), "not alice's")
    response = api.get("/me/export/", headers={"token": token})
    assert response.status == 200
    assert response.headers["cache-control"] == "no-store"
    data = response.json
    assert set(data) == {"name", "created_at", "messages", "sessions", "blocks"}
    assert data["name"] == "alice"
    assert data["created_at"].endswith("Z")
    assert [m["text"] for m in data["messages"]] == ["second", "first"]
    assert all(set(m) == {"id", "from", "to", "text", "sent_at"} for m in data["messages"])
    assert data["blocks"] == []
    [session] = data["sessions"]
    assert (session["user_agent"], session["current"]) == ("exporter", True)
    assert data["sessions"] == api.get("/sessions/", headers={"token": token}).json["sessions"]


def test_a_message_through_a_family_token_is_one_round_trip(api: Api) -> None:
    api.signup("alice")
    token, _ = login_with_refresh(api)
    metrics = api.services.metrics
    assert metrics is not None
    api.send(token, "warm up")
    counters = metrics.counters
    before = counters["redis_round_trips"].get((), 0), counters["redis_calls"].get((), 0)
    assert api.send(token, "one trip").status == 201
    after = counters["redis_round_trips"].get((), 0), counters["redis_calls"].get((), 0)
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)  # one script, one trip


def test_a_reuse_is_counted_and_logged_without_the_token(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api.signup("alice")
    _, refresh_token = login_with_refresh(api)
    assert refresh(api, refresh_token).status == 200
    with caplog.at_level("WARNING", logger="api.sessions"):
        assert error_of(refresh(api, refresh_token)) == (401, "token_reused")
    metrics = api.services.metrics
    assert metrics is not None
    assert metrics.counters["tokens_refreshed"][()] == 1
    assert metrics.counters["refresh_tokens_reused"][()] == 1
    [record] = [r for r in caplog.records if r.name == "api.sessions"]
    family = refresh_token.split(".")[1]
    assert record.getMessage() == (
        f"a used refresh token of alice was presented again: session {family} ended"
    )
    assert refresh_token.rsplit(".", 1)[1] not in caplog.text


def _jti(token: str) -> str:
    jti: str = jwt.decode(token, options={"verify_signature": False})["jti"]
    return jti


def test_logout_puts_the_token_on_the_denylist_for_as_long_as_it_could_live(api: Api) -> None:
    api.signup("alice")
    token = api.login("alice")
    assert api.post("/logout/", headers={"token": token}).status == 200
    entry = keys.revoked("alice", _jti(token))

    async def ttl(client: Client) -> int:
        return int(await client.ttl(entry))

    lifetime = api.settings.jwt_ttl_seconds + api.settings.jwt_leeway_seconds
    assert lifetime - 5 <= api.redis(ttl) <= lifetime
    assert error_of(api.get("/me/", headers={"token": token})) == (401, "token_revoked")


def test_a_token_on_the_denylist_is_refused_while_its_family_lives(api: Api) -> None:
    api.signup("alice")
    token = api.login("alice")

    async def deny(client: Client) -> None:
        await client.set(keys.revoked("alice", _jti(token)), "1", ex=60)

    api.redis(deny)
    assert keys.family_prefix("alice") in " ".join(user_keys(api))  # the family is still there
    assert error_of(api.get("/me/", headers={"token": token})) == (401, "token_revoked")
    assert error_of(api.send(token, "no")) == (401, "token_revoked")


def test_deleting_the_account_removes_its_denylist_too(api: Api) -> None:
    api.signup("alice")
    for _ in range(3):
        assert api.post("/logout/", headers={"token": api.login("alice")}).status == 200
    assert any(key.startswith("revoked:") for key in user_keys(api))
    token = api.login("alice")
    deleted = api.request("delete", "/me/", json={"password": PASSWORD}, headers={"token": token})
    assert deleted.status == 204
    assert user_keys(api) == []


def test_a_login_beyond_the_cap_ends_the_session_that_expires_first(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings.replace(sessions_max_per_user=3))
    api.signup("alice")
    tokens = [api.login("alice") for _ in range(5)]
    sessions = api.get("/sessions/", headers={"token": tokens[-1]}).json["sessions"]
    assert len(sessions) == 3
    for token in tokens[:2]:  # the first two logins expire first
        assert error_of(api.get("/me/", headers={"token": token})) == (401, "token_revoked")
    for token in tokens[2:]:
        assert api.get("/me/", headers={"token": token}).status == 200
    families = [key for key in user_keys(api) if key.startswith(keys.family_prefix("alice"))]
    assert len(families) == 3  # nothing kept of the ended ones


def test_a_login_that_fails_on_a_server_error_gives_its_places_back(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.signup("alice")

    async def broken(*_: object, **__: object) -> object:
        raise RuntimeError("a bug")

    monkeypatch.setattr(api.services.hasher, "verify", broken)
    assert login(api).status == 500

    async def counters(client: Client) -> list[str]:
        return sorted([key async for key in client.scan_iter(match="throttle:login*")])

    assert api.redis(counters) == []


def test_the_cap_never_ends_the_session_just_begun(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings.replace(sessions_max_per_user=2))
    api.signup("alice")
    long_lived = [login_with_refresh(api)[0] for _ in range(2)]  # expire in 30 days
    short = api.login("alice")  # expires in 3 hours: the first to expire, but just begun
    assert api.get("/me/", headers={"token": short}).status == 200
    alive = [api.get("/me/", headers={"token": t}).status for t in long_lived]
    assert sorted(alive) == [200, 401]


def test_a_login_can_answer_its_tokens_in_the_cookies_only(api: Api) -> None:
    api.signup("alice")
    response = login(api, refresh=True, cookie_only=True)
    assert (response.status, response.json) == (200, {"name": "alice"})
    token = cookie_value(response, "token")
    assert api.get("/me/", headers={"token": token}).status == 200
    assert cookie_value(response, "refresh_token")


def test_with_a_refresh_token_every_cookie_lives_as_long_as_it(api: Api) -> None:
    api.signup("alice")
    cookies = set_cookies(login(api, refresh=True))
    life = f"Max-Age={api.settings.refresh_ttl_seconds}"
    for name in ("token", "csrf_token", "refresh_token"):
        assert (
            life in cookies[name]
            or f"Max-Age={api.settings.refresh_ttl_seconds - 1}" in (cookies[name])
        ), cookies[name]
    plain = set_cookies(login(api))  # without one, the token's own life
    assert f"Max-Age={api.settings.jwt_ttl_seconds}" in plain["token"]


def test_logout_with_an_expired_token_still_ends_its_session(api: Api) -> None:
    api.signup("alice")
    token, refresh_token = login_with_refresh(api)
    claims = jwt.decode(token, options={"verify_signature": False})
    # The same session's token, as it is once expired (a browser still sends it).
    expired, _ = issue_token(
        SECRET,
        "alice",
        claims["gen"],
        api.settings.jwt_ttl_seconds,
        family=claims["fam"],
        now=int(time.time()) - api.settings.jwt_ttl_seconds - 60,
    )
    assert error_of(api.get("/me/", headers={"token": expired})) == (401, "token_expired")
    assert api.post("/logout/", cookie=f"token={expired}").status == 200
    assert error_of(refresh(api, refresh_token)) == (401, "invalid_token")
    assert error_of(api.get("/me/", headers={"token": token})) == (401, "token_revoked")
    # A token that is not genuine ends nothing.
    other, other_refresh = login_with_refresh(api)
    forged = jwt.encode({**jwt.decode(other, options={"verify_signature": False})}, "x" * 40)
    assert api.post("/logout/", cookie=f"token={forged}").status == 200
    assert refresh(api, other_refresh).status == 200
