"""Brute-force limits: failed logins per account and per address, signups per address."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from api.settings import Settings
from storage import keys
from storage.connection import Client
from tests.conftest import PASSWORD, Api

RATE_LIMITED = {"error": "rate_limited", "message": "too many attempts, try again later"}


@pytest.fixture
def strict(make_api: Callable[[Settings], Api], settings: Settings) -> Api:
    return make_api(
        settings.replace(
            login_max_failures=3,
            login_addr_max_failures=5,
            login_window_seconds=900,
            signup_addr_max=4,
        )
    )


def _login(api: Api, name: str, password: str, **kwargs: object) -> tuple[int, object]:
    response = api.post("/login/", json={"name": name, "password": password}, **kwargs)
    return response.status, response.json


def test_account_is_locked_after_max_failures_even_with_the_right_password(strict: Api) -> None:
    strict.signup("alice")
    for _ in range(3):
        assert _login(strict, "alice", "wrong password")[0] == 401
    response = strict.post("/login/", json={"name": "alice", "password": PASSWORD})
    assert response.status == 429
    assert response.json == RATE_LIMITED
    assert 890 <= int(response.headers["retry-after"]) <= 900


def test_lock_ends_when_the_window_passes(strict: Api) -> None:
    strict.signup("alice")
    for _ in range(3):
        _login(strict, "alice", "wrong password")
    assert _login(strict, "alice", PASSWORD)[0] == 429

    async def window_passes(client: Client) -> None:
        await client.delete(keys.login_failures("alice"))

    strict.redis(window_passes)
    assert _login(strict, "alice", PASSWORD)[0] == 200


def test_success_resets_the_accounts_count(strict: Api) -> None:
    strict.signup("alice")
    for _ in range(2):
        _login(strict, "alice", "wrong password")
    assert _login(strict, "alice", PASSWORD)[0] == 200
    for _ in range(2):
        assert _login(strict, "alice", "wrong password")[0] == 401
    assert _login(strict, "alice", PASSWORD)[0] == 200


def test_unknown_names_count_too_and_are_locked_alike(strict: Api) -> None:
    for _ in range(3):
        assert _login(strict, "nobody", "wrong password") == (
            401,
            {"error": "invalid_credentials", "message": "wrong name or password"},
        )
    assert _login(strict, "nobody", "wrong password") == (429, RATE_LIMITED)


def test_failures_per_address_are_capped_across_accounts(strict: Api) -> None:
    strict.signup("alice")
    for n in range(5):
        assert _login(strict, f"user{n}", "wrong password")[0] == 401
    assert _login(strict, "alice", PASSWORD)[0] == 429


def test_spoofed_forwarded_for_does_not_dodge_the_address_limit(strict: Api) -> None:
    for n in range(5):
        headers = {"X-Forwarded-For": f"203.0.113.{n}"}
        assert _login(strict, f"user{n}", "wrong password", headers=headers)[0] == 401
    headers = {"X-Forwarded-For": "198.51.100.7"}
    assert _login(strict, "another", "wrong password", headers=headers)[0] == 429


def test_forwarded_for_counts_when_a_proxy_is_configured(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings.replace(login_addr_max_failures=2, proxies_count=1))
    for n in range(4):
        headers = {"X-Forwarded-For": f"203.0.113.{n}"}
        assert _login(api, f"user{n}", "wrong password", headers=headers)[0] == 401
    repeated = {"X-Forwarded-For": "203.0.113.0"}
    assert _login(api, "user8", "wrong password", headers=repeated)[0] == 401
    assert _login(api, "user9", "wrong password", headers=repeated)[0] == 429


def test_signups_per_address_are_capped(strict: Api) -> None:
    for n in range(4):
        assert strict.signup(f"user{n}").status == 201
    response = strict.signup("user4")
    assert response.status == 429
    assert response.json == RATE_LIMITED
    assert 3590 <= int(response.headers["retry-after"]) <= 3600
    assert _login(strict, "user4", PASSWORD)[0] == 401  # it was not created
