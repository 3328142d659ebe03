"""POST /message/ (including `last N`) and GET /messages/, on fakeredis and on a real Redis."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from api.settings import Settings
from tests.conftest import Api, csrf_of

CREATED = {"status": "Сообщение создано"}
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def test_send_message_with_each_transport(api: Api) -> None:
    token = api.user("alice")
    for transport in (
        {"headers": {"token": token}},
        {"headers": {"Authorization": f"Bearer {token}"}},
        {"cookie": f"token={token}", "headers": {"X-CSRF-Token": csrf_of(token)}},
    ):
        response = api.post("/message/", json={"text": "hi"}, **transport)
        assert response.status == 201
        assert response.json == CREATED
    assert len(api.get("/messages/", headers={"token": token}).json["messages"]) == 3


def test_send_message_requires_a_token(api: Api) -> None:
    response = api.post("/message/", json={"text": "hi"})
    assert response.status == 401
    assert response.json["error"] == "missing_token"


def test_name_in_body_must_match_the_token(api: Api) -> None:
    token = api.user("alice")
    assert (
        api.post("/message/", json={"text": "hi", "name": "alice"}, headers={"token": token}).status
        == 201
    )
    response = api.post("/message/", json={"text": "hi", "name": "bob"}, headers={"token": token})
    assert response.status == 403
    assert response.json == {
        "error": "name_mismatch",
        "message": "name differs from the token's user",
    }


def test_last_n_returns_oldest_to_newest_keyed_n_to_1(api: Api) -> None:
    token = api.user("alice")
    for text in ["one", "two", "three", "four"]:
        api.send(token, text)
    response = api.send(token, "last 3")
    assert response.status == 200
    assert list(response.json.items()) == [("3", "two"), ("2", "three"), ("1", "four")]
    assert response.text == '{"3":"two","2":"three","1":"four"}'


def test_last_n_is_not_stored(api: Api) -> None:
    token = api.user("alice")
    api.send(token, "hello")
    api.send(token, "last 5")
    assert api.send(token, "last 5").json == {"1": "hello"}


def test_last_n_beyond_history_returns_all_and_empty_returns_empty(api: Api) -> None:
    token = api.user("alice")
    assert api.send(token, "last 5").json == {}
    api.send(token, "only")
    assert api.send(token, "last 999999999999999999999").json == {"1": "only"}


@pytest.mark.parametrize(
    "text", ["last 2", "  last 2  ", "last\t2", "last 02", "\nlast   2\n", "last 0000000002"]
)
def test_last_n_forms(api: Api, text: str) -> None:
    token = api.user("alice")
    api.send(token, "a")
    api.send(token, "b")
    api.send(token, "c")
    assert api.send(token, text).json == {"2": "b", "1": "c"}


@pytest.mark.parametrize(
    "text", ["last -1", "lastly", "last", "last 2 please", "Last 2", "last ٣", "last 2.0"]
)
def test_texts_that_are_ordinary_messages(api: Api, text: str) -> None:
    token = api.user("alice")
    assert api.send(token, text).json == CREATED
    assert api.send(token, "last 1").json == {"1": text}


@pytest.mark.parametrize("text", ["last 0", "last 000", " last 0 ", "last " + "0" * 4000])
def test_last_zero_is_422(api: Api, text: str) -> None:
    token = api.user("alice")
    response = api.send(token, text)
    assert response.status == 422
    assert response.json == {
        "error": "validation_error",
        "message": "text: last N needs N of at least 1",
    }


def test_messages_are_per_user(api: Api) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    api.send(alice, "from alice")
    api.send(bob, "from bob")
    assert api.send(alice, "last 10").json == {"1": "from alice"}
    assert api.send(bob, "last 10").json == {"1": "from bob"}


def test_history_is_capped(make_api: Callable[[Settings], Api], settings: Settings) -> None:
    api = make_api(settings.replace(message_history_limit=3))
    token = api.user("alice")
    for n in range(1, 8):
        api.send(token, f"m{n}")
    assert api.send(token, "last 100").json == {"3": "m5", "2": "m6", "1": "m7"}


def test_list_messages_newest_first_with_times(api: Api) -> None:
    token = api.user("alice")
    for text in ["one", "two", "three"]:
        api.send(token, text)
    response = api.get("/messages/?limit=2", headers={"token": token})
    assert response.status == 200
    messages = response.json["messages"]
    assert [m["text"] for m in messages] == ["three", "two"]
    # Every message also has its id, sender and recipient (additive: the text and time are as
    # they were).
    assert all(set(m) == {"id", "from", "to", "text", "sent_at"} for m in messages)
    assert all(ISO_UTC.fullmatch(m["sent_at"]) for m in messages)
    assert all((m["from"], m["to"]) == ("alice", "alice") for m in messages)
    assert messages[0]["sent_at"] >= messages[1]["sent_at"]


def test_list_messages_default_limit_is_20(api: Api) -> None:
    token = api.user("alice")
    for n in range(25):
        api.send(token, f"m{n}")
    messages = api.get("/messages", headers={"token": token}).json["messages"]
    assert len(messages) == 20
    assert messages[0]["text"] == "m24"


def test_unicode_and_long_texts_round_trip(api: Api) -> None:
    token = api.user("alice")
    text = "Привет, мир! 👋 " + "ж" * 4000
    assert api.send(token, text).status == 201
    assert api.send(token, "last 1").json == {"1": text}


def test_limit_with_leading_zeros_is_its_value(api: Api) -> None:
    token = api.user("alice")
    for text in ("a", "b", "c"):
        api.send(token, text)
    response = api.get("/messages/?limit=0000000002", headers={"token": token})
    assert [m["text"] for m in response.json["messages"]] == ["c", "b"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit: must be an integer from 1 to 50"),
        ("limit=51", "limit: must be an integer from 1 to 50"),
        ("limit=-1", "limit: must be an integer from 1 to 50"),
        ("limit=abc", "limit: must be an integer from 1 to 50"),
        ("limit=", "limit: must be an integer from 1 to 50"),
        ("limit=1.5", "limit: must be an integer from 1 to 50"),
        ("limit=99999999999999999999", "limit: must be an integer from 1 to 50"),
        ("limit=0000000000", "limit: must be an integer from 1 to 50"),
        ("limit=1&limit=2", "limit: must be given once"),
    ],
)
def test_bad_limits(api: Api, query: str, message: str) -> None:
    token = api.user("alice")
    response = api.get(f"/messages/?{query}", headers={"token": token})
    assert response.status == 422
    assert response.json == {"error": "validation_error", "message": message}
