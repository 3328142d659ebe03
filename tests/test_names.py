"""Names others see: a new name that looks like an existing one is refused (NFKC, case folding,
Unicode's confusables skeleton); logins and recipients still go by the exact name."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from api.names import CONFUSABLES, CONFUSABLES_SHA256, skeleton
from storage import keys
from support.processes import PASSWORD, RedisServer, start_service
from tests.conftest import Api

LOOK_ALIKE = {
    "error": "name_taken",
    "message": "a user with a name that looks the same (case, width or look-alike letters) "
    "already exists",
}


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("admin", "Admin"),
        ("admin", "ADMIN"),
        ("admin", "\uff41dmin"),  # fullwidth a
        ("admin", "\u0430dmin"),  # Cyrillic a
        ("admin", "adm\u0456n"),  # Cyrillic i
        ("paypal", "PAYPAL"),
        ("Zoe\u0301", "zoé"),  # decomposed and composed
        ("mike", "rnike"),  # m and rn read alike
        ("user0", "userO"),
    ],
)
def test_names_that_read_alike_share_a_skeleton(one: str, other: str) -> None:
    assert skeleton(one) == skeleton(other)


@pytest.mark.parametrize(("one", "other"), [("alice", "alicia"), ("bob", "bob1"), ("a.b", "a-b")])
def test_different_names_do_not(one: str, other: str) -> None:
    assert skeleton(one) != skeleton(other)


def test_the_data_is_unicodes_own_file_of_its_version() -> None:
    raw = CONFUSABLES.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == CONFUSABLES_SHA256
    assert b"# Version: 18.0.0" in raw[:500]


@pytest.mark.parametrize("name", ["Admin", "ADMIN", "\uff41dmin", "\u0430dmin"])
def test_a_look_alike_of_an_existing_name_is_refused(api: Api, name: str) -> None:
    assert api.signup("admin").status == 201
    response = api.signup(name)
    assert (response.status, response.json) == (409, LOOK_ALIKE)
    # The exact name is what logins and messages go by.
    assert api.post("/login/", json={"name": name, "password": PASSWORD}).status == 401
    token = api.login("admin")
    sent = api.post("/message/", json={"text": "hi", "to": name}, headers={"token": token})
    assert (sent.status, sent.json["error"]) == (404, "unknown_recipient")


def test_the_same_name_twice_is_still_the_plain_name_taken(api: Api) -> None:
    assert api.signup("admin").status == 201
    response = api.signup("admin")
    assert response.json == {
        "error": "name_taken",
        "message": "a user with this name already exists",
    }


def test_concurrent_look_alikes_one_wins(api: Api) -> None:
    async def race() -> list[int]:
        answers = await asyncio.gather(
            *(
                api.post_async("/signup/", {"name": name, "password": PASSWORD})
                for name in ("admin", "Admin", "ADMIN", "\uff41dmin", "admin")
            )
        )
        return [status for status, _, _ in answers]

    statuses = api.run(race())
    assert sorted(statuses) == [201, 409, 409, 409, 409]


@pytest.mark.redis_server
def test_names_of_before_folding_are_indexed_at_start_and_keep_working(
    redis_server: RedisServer,
) -> None:
    redis_server.client().flushall()
    first = start_service({"REDIS_URL": redis_server.url})
    try:
        first.user("bob")
    finally:
        first.stop()
    # Data of before folding: a look-alike pair, and no skeleton kept.
    client = redis_server.client()
    copy: dict[str, str] = client.hgetall(keys.user("bob"))  # type: ignore[assignment]
    client.hset(keys.user("Bob"), mapping=copy)  # type: ignore[arg-type]
    for key in client.keys("skeleton:*"):
        client.delete(key)
    client.delete(keys.skeleton_census())
    service = start_service({"REDIS_URL": redis_server.url})
    try:
        for name in ("bob", "Bob"):
            service.login(name)  # both still work
        status, body, _ = service.call("POST", "/signup/", {"name": "BOB", "password": PASSWORD})
        assert (status, body) == (409, LOOK_ALIKE)
        assert service.call("POST", "/signup/", {"name": "carol", "password": PASSWORD})[0] == 201
    finally:
        output = service.stop()
    assert "indexed the skeletons of the existing names: 1" in output
    assert client.get(keys.skeleton_census()) == "18.0.0"
