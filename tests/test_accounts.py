"""Accounts over their life: identity across lost data, password forms, hash costs, token life."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable

import bcrypt
import jwt
import pytest

from api.security import _prehash, cost_of, hash_password
from api.settings import Settings
from storage import keys
from storage.connection import Client
from support.processes import PASSWORD, SECRET
from tests.conftest import Api, claims_of, token_for

TOKEN_TOO_LONG = {
    "error": "invalid_token",
    "message": "the token's lifetime is longer than tokens may live",
}


def test_a_recreated_account_accepts_no_token_of_the_earlier_one(api: Api) -> None:
    old = api.user("alice")
    api.send(old, "before the loss")

    async def lose_everything(client: Client) -> None:
        await client.flushall()

    api.redis(lose_everything)
    assert api.signup("alice").status == 201
    for headers in ({"token": old}, {"Authorization": f"Bearer {old}"}):
        response = api.get("/me/", headers=headers)
        assert response.status == 401
        assert response.json["error"] == "token_revoked"
    assert api.send(old, "after the loss").status == 401
    fresh = api.login("alice")
    assert api.get("/me/", headers={"token": fresh}).json == {"name": "alice"}


@pytest.mark.parametrize("exp_offset", [2**62, 10800 + 3600])
def test_a_token_meant_to_live_too_long_is_refused(api: Api, exp_offset: int) -> None:
    api.signup("alice")
    now = int(time.time())
    claims = claims_of(iat=now, exp=now + exp_offset, gen=api.generation())
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    response = api.get("/me/", headers={"token": token})
    assert (response.status, response.json) == (401, TOKEN_TOO_LONG)
    # Its logout writes nothing it cannot (and is no 500).
    assert api.post("/logout/", headers={"token": token}).status == 200


def test_a_logout_of_a_token_before_families_is_remembered_for_its_life_at_most(
    api: Api,
) -> None:
    api.signup("alice")
    token = token_for("alice", generation=api.generation())  # no `fam` claim
    assert api.get("/me/", headers={"token": token}).status == 200
    assert api.post("/logout/", headers={"token": token}).status == 200
    assert api.get("/me/", headers={"token": token}).json["error"] == "token_revoked"
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]

    async def ttl(client: Client) -> int:
        return int(await client.ttl(keys.revoked("alice", jti)))

    settings = api.settings
    assert 0 < api.redis(ttl) <= settings.jwt_ttl_seconds + 2 * settings.jwt_leeway_seconds


PASSWORDS = [
    ("p\u00e4ssw\u00f6rt!", "pa\u0308sswo\u0308rt!"),  # NFC signed up, NFD typed (macOS)
    ("pa\u0308sswo\u0308rt!", "p\u00e4ssw\u00f6rt!"),
    ("\uff50\uff41\uff53\uff53word", "password"),  # fullwidth letters are NFKC-equal
]


@pytest.mark.parametrize(("signed_up", "typed"), PASSWORDS)
def test_passwords_are_normalised(api: Api, signed_up: str, typed: str) -> None:
    assert api.signup("alice", signed_up).status == 201
    assert api.login("alice", typed)
    assert api.login("alice", signed_up)
    wrong = api.post("/login/", json={"name": "alice", "password": typed + "x"})
    assert wrong.status == 401


def _stored_hash(api: Api, name: str = "alice") -> str:
    async def read(client: Client) -> object:
        return await client.hget(keys.user(name), "password_hash")

    return str(api.redis(read))


def _replace_hash(api: Api, password_hash: str, name: str = "alice") -> None:
    async def write(client: Client) -> None:
        await client.hset(keys.user(name), "password_hash", password_hash)

    api.redis(write)


def test_a_hash_stored_before_normalisation_still_logs_in_and_is_made_anew(api: Api) -> None:
    sent = "pa\u0308sswo\u0308rt!"  # stored, before this release, as sent (NFD)
    api.signup("alice")
    salt = bcrypt.gensalt(4)
    legacy = bcrypt.hashpw(_prehash(sent, salt), salt).decode()
    _replace_hash(api, legacy)
    assert api.login("alice", sent)
    renewed = _stored_hash(api)
    assert renewed != legacy
    # The new hash is of the normalised password: both forms log in.
    assert api.login("alice", unicodedata.normalize("NFC", sent))
    assert api.login("alice", sent)


def test_a_hash_of_another_cost_is_made_anew_at_the_current_one(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings)  # bcrypt cost 4
    api.signup("alice")
    _replace_hash(api, hash_password(PASSWORD, 5))

    async def count_cost_5(client: Client) -> None:
        await client.hincrby(keys.password_costs(), "5", 1)
        await client.hincrby(keys.password_costs(), "4", -1)

    api.redis(count_cost_5)
    assert api.login("alice")
    assert cost_of(_stored_hash(api)) == 4

    async def costs(client: Client) -> object:
        return await client.hgetall(keys.password_costs())

    assert api.redis(costs) == {"4": "1"}


def test_unknown_names_are_checked_at_the_highest_cost_stored(api: Api) -> None:
    api.signup("alice")

    async def count_cost_6(client: Client) -> None:
        await client.hincrby(keys.password_costs(), "6", 1)

    api.redis(count_cost_6)
    response = api.post("/login/", json={"name": "nobody", "password": PASSWORD})
    assert response.status == 401
    dummies = api.services.hasher._dummies
    assert sorted(dummies) == [6]
    assert cost_of(dummies[6]) == 6
