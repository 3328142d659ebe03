"""Brute-force limits: failed logins per account and per address, signups per address."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from api.settings import Settings
from storage import keys
from storage.connection import Client
from support.processes import PASSWORD
from tests.conftest import Api

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


def test_lock_ends_when_the_window_passes(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings.replace(login_max_failures=3, login_window_seconds=1))
    api.signup("alice")
    for _ in range(3):
        _login(api, "alice", "wrong password")
    status, body = _login(api, "alice", PASSWORD)
    assert (status, body) == (429, RATE_LIMITED)
    # Redis ends the window by itself, a second after its first attempt.
    deadline = time.monotonic() + 10
    while status == 429 and time.monotonic() < deadline:
        time.sleep(0.1)
        status, body = _login(api, "alice", PASSWORD)
    assert status == 200


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


class CountingHasher:
    """Counts the password checks that reach the hasher, and holds them until released, so that
    every request of a burst is in flight before any check ends."""

    def __init__(self, api: Api) -> None:
        self.hasher = api.services.hasher
        self.checks = 0
        self.hashes = 0
        self.released = asyncio.Event()
        self.progress = asyncio.Event()  # set whenever a request reaches the hasher or ends
        self._verify, self._hash = self.hasher.verify, self.hasher.hash

    async def verify(self, *args: Any, **kwargs: Any) -> Any:
        self.checks += 1
        self.progress.set()
        await self.released.wait()
        return await self._verify(*args, **kwargs)

    async def hash(self, *args: Any, **kwargs: Any) -> Any:
        self.hashes += 1
        self.progress.set()
        await self.released.wait()
        return await self._hash(*args, **kwargs)


async def _burst(
    api: Api, counting: CountingHasher, path: str, bodies: list[dict[str, str]]
) -> list[tuple[int, Any, Any]]:
    """Send every body at once; release the hasher once each request is either waiting for it
    or answered (nothing else can happen to them then)."""
    done = 0

    async def send(body: dict[str, str]) -> tuple[int, Any, Any]:
        nonlocal done
        try:
            return await api.post_async(path, body)  # type: ignore[no-any-return]
        finally:
            done += 1
            counting.progress.set()

    async def release() -> None:
        while counting.checks + counting.hashes + done < len(bodies):
            await counting.progress.wait()
            counting.progress.clear()
        counting.released.set()

    releasing = asyncio.ensure_future(release())
    answers = await asyncio.gather(*(send(body) for body in bodies))
    await releasing
    return list(answers)


def test_a_burst_of_guesses_gets_at_most_the_limit_checked(
    make_api: Callable[[Settings], Api], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The address allows more than the burst: only the account's window decides.
    strict = make_api(settings.replace(login_max_failures=3, login_addr_max_failures=100))
    strict.signup("alice")
    counting = CountingHasher(strict)
    monkeypatch.setattr(counting.hasher, "verify", counting.verify)
    guess = {"name": "alice", "password": "wrong password"}
    answers = strict.run(_burst(strict, counting, "/login/", [guess] * 12))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [401] * 3 + [429] * 9
    assert counting.checks == 3
    for status, body, headers in answers:
        if status == 429:
            assert body == RATE_LIMITED
            assert 1 <= int(headers["retry-after"]) <= 900

    async def count(client: Client) -> object:
        return await client.get(keys.login_failures("alice"))

    assert strict.redis(count) == "3"


def test_a_burst_from_one_address_gets_at_most_its_limit_checked(
    strict: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingHasher(strict)
    monkeypatch.setattr(counting.hasher, "verify", counting.verify)
    guesses = [{"name": f"user{n}", "password": "wrong password"} for n in range(12)]
    answers = strict.run(_burst(strict, counting, "/login/", guesses))
    assert sorted(status for status, _, _ in answers) == [401] * 5 + [429] * 7
    assert counting.checks == 5

    async def accounts(client: Client) -> list[object]:
        return [await client.get(keys.login_failures(f"user{n}")) for n in range(12)]

    # The refused ones took nothing from their accounts' windows.
    assert sorted(str(count) for count in strict.redis(accounts)) == ["1"] * 5 + ["None"] * 7


def test_a_burst_of_signups_from_one_address_gets_at_most_its_limit_hashed(
    strict: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingHasher(strict)
    monkeypatch.setattr(counting.hasher, "hash", counting.hash)
    bodies = [{"name": f"user{n}", "password": PASSWORD} for n in range(12)]
    answers = strict.run(_burst(strict, counting, "/signup/", bodies))
    assert sorted(status for status, _, _ in answers) == [201] * 4 + [429] * 8
    assert counting.hashes == 4


def test_a_successful_login_gives_its_attempt_back(strict: Api) -> None:
    strict.signup("alice")
    for _ in range(2):
        _login(strict, "alice", "wrong password")
    for _ in range(10):  # more than the address allows failures
        assert _login(strict, "alice", PASSWORD)[0] == 200

    async def counts(client: Client) -> tuple[object, object]:
        return (
            await client.get(keys.login_failures("alice")),
            await client.get(keys.login_address_failures("127.0.0.1")),
        )

    assert strict.redis(counts) == (None, "2")
