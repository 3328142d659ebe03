"""Messages between users: recipients, histories with ids and cursors, safe retries, rate limits,
blocks, the old history format; on fakeredis, a real Redis and the 3-master cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from api.settings import Settings
from storage import keys
from storage.connection import Client
from storage.errors import StorageUnavailable
from tests.conftest import Api, Reply, csrf_of

CREATED = {"status": "Сообщение создано"}
NAME_RULE = (
    "must be 1-64 letters, digits, underscores, dots or hyphens, with at least one letter or digit"
)


def send(api: Api, token: str, text: str, to: str | None = None, **headers: str) -> Reply:
    """POST /message/ with a header token, to `to` when given."""
    body: dict[str, Any] = {"text": text} if to is None else {"text": text, "to": to}
    return api.post("/message/", json=body, headers={"token": token, **headers})


def history(api: Api, token: str, query: str = "") -> dict[str, Any]:
    """GET /messages/ with a header token and a query string."""
    response = api.get(f"/messages/{query}", headers={"token": token})
    assert response.status == 200, response.text
    body: dict[str, Any] = response.json
    return body


def stored(api: Api, name: str) -> list[dict[str, Any]]:
    """The entries of a user's history as Redis holds them, newest first."""

    async def read(client: Client) -> list[Any]:
        return [orjson.loads(e) for e in await client.lrange(keys.messages(name), 0, -1)]

    return api.redis(read)


def keys_of(api: Api, name: str) -> list[str]:
    """Every key carrying the user's hash tag."""

    async def scan(client: Client) -> list[str]:
        return sorted([key async for key in client.scan_iter(match=f"*{{{name}}}*")])

    return api.redis(scan)


# 1. A recipient.


def test_a_message_to_another_user_is_in_both_histories_with_one_id(api: Api) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    response = send(api, alice, "hi bob", to="bob")
    assert (response.status, response.json) == (201, CREATED)
    [mine] = history(api, alice)["messages"]
    [theirs] = history(api, bob)["messages"]
    assert mine == theirs
    assert (mine["from"], mine["to"], mine["text"]) == ("alice", "bob", "hi bob")
    assert mine["id"] == response.headers["x-message-id"]
    assert stored(api, "alice") == stored(api, "bob")  # one entry, the same bytes


def test_a_message_to_oneself_is_stored_once(api: Api) -> None:
    alice = api.user("alice")
    assert send(api, alice, "a note").status == 201
    assert send(api, alice, "another", to="alice").status == 201
    assert [m["text"] for m in history(api, alice)["messages"]] == ["another", "a note"]
    assert len(stored(api, "alice")) == 2


def test_an_unknown_recipient_is_a_404_and_nothing_is_stored(api: Api) -> None:
    alice = api.user("alice")
    response = send(api, alice, "hello?", to="ghost", **{"Idempotency-Key": "k1"})
    assert response.status == 404
    assert response.json == {"error": "unknown_recipient", "message": "no user has this name"}
    assert stored(api, "alice") == []
    assert keys_of(api, "ghost") == []
    assert [k for k in keys_of(api, "alice") if not k.startswith(("user:", "famil"))] == []


@pytest.mark.parametrize(
    ("to", "problem"),
    [
        (None, "must be a string"),
        (7, "must be a string"),
        ("", NAME_RULE),
        ("a b", NAME_RULE),
        ("x" * 65, NAME_RULE),
        ("{bob}", NAME_RULE),
    ],
)
def test_to_is_a_name(api: Api, to: object, problem: str) -> None:
    alice = api.user("alice")
    response = api.post("/message/", json={"text": "hi", "to": to}, headers={"token": alice})
    assert response.status == 422
    assert response.json == {"error": "validation_error", "message": f"to: {problem}"}
    assert stored(api, "alice") == []


def test_last_n_to_another_user_is_an_ordinary_message(api: Api) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    send(api, bob, "from bob", to="alice")
    assert send(api, alice, "last 5", to="bob").json == CREATED
    assert history(api, bob)["messages"][0]["text"] == "last 5"
    # `last N` is about your own history, received messages included.
    assert send(api, alice, "last 5").json == {"2": "from bob", "1": "last 5"}


def test_a_revoked_token_stores_nothing_anywhere(api: Api) -> None:
    alice = api.user("alice")
    api.user("bob")
    assert api.post("/logout/", headers={"token": alice}).status == 200
    assert send(api, alice, "too late", to="bob").status == 401
    assert stored(api, "bob") == stored(api, "alice") == []


def test_two_instances_share_the_histories(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    first, second = make_api(settings), make_api(settings)
    alice, bob = first.user("alice"), second.user("bob")
    assert send(first, alice, "across instances", to="bob").status == 201
    [received] = history(second, bob)["messages"]
    assert (received["from"], received["text"]) == ("alice", "across instances")


# 2. History entries, conversations, cursors.


def test_a_conversation_is_the_messages_between_two_users(api: Api) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    api.user("carol")
    send(api, alice, "to bob", to="bob")
    send(api, alice, "to carol", to="carol")
    send(api, bob, "to alice", to="alice")
    send(api, alice, "a note")
    texts = [m["text"] for m in history(api, alice, "?with=bob")["messages"]]
    assert texts == ["to alice", "to bob"]
    assert [m["text"] for m in history(api, alice, "?with=alice")["messages"]] == ["a note"]
    assert history(api, alice, "?with=nobody") == {"messages": [], "next": None}
    assert [m["text"] for m in history(api, bob, "?with=alice")["messages"]] == texts


@pytest.mark.parametrize("conversation", [False, True])
def test_pages_never_skip_or_repeat_while_messages_arrive(api: Api, conversation: bool) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    for n in range(7):
        send(api, bob, f"old{n}", to="alice")
        send(api, alice, f"note{n}")  # not in the conversation
    query = "?limit=3&with=bob" if conversation else "?limit=3"
    seen: list[str] = []
    page = history(api, alice, query)
    while True:
        seen += [m["text"] for m in page["messages"]]
        send(api, bob, f"new{len(seen)}", to="alice")  # arrives between pages
        if page["next"] is None:
            break
        page = history(api, alice, f"{query}&cursor={page['next']}")
    olds = [f"old{n}" for n in reversed(range(7))]
    if conversation:
        assert seen == olds
    else:
        interleaved = [t for n in reversed(range(7)) for t in (f"note{n}", f"old{n}")]
        assert seen == interleaved


def test_a_cursor_is_its_users_alone_and_malformed_ones_are_422(api: Api) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    for n in range(3):
        send(api, alice, f"m{n}")
        send(api, bob, f"m{n}")
    cursor = history(api, alice, "?limit=1")["next"]
    assert cursor
    for bad in ("", "x", cursor[:-1], cursor + "A", "%FF" * 9, cursor.swapcase()):
        response = api.get(f"/messages/?cursor={bad}", headers={"token": alice})
        assert response.status == 422, bad
        assert response.json == {
            "error": "validation_error",
            "message": "cursor: is not a cursor of yours",
        }
    theirs = api.get(f"/messages/?cursor={cursor}", headers={"token": bob})
    assert theirs.status == 422
    twice = api.get(f"/messages/?cursor={cursor}&cursor={cursor}", headers={"token": alice})
    assert twice.json["message"] == "cursor: must be given once"


def test_a_cursor_whose_older_messages_were_trimmed_answers_what_is_left(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings.replace(message_history_limit=5))
    alice = api.user("alice")
    for n in range(5):
        send(api, alice, f"m{n}")
    page = history(api, alice, "?limit=2")
    assert [m["text"] for m in page["messages"]] == ["m4", "m3"]
    for n in range(5, 9):
        send(api, alice, f"m{n}")  # m0-m3 are trimmed away
    rest = history(api, alice, f"?limit=2&cursor={page['next']}")
    assert rest == {"messages": [], "next": None}


def test_a_history_written_before_ids_reads_as_notes_to_oneself(
    backend: Callable[[], Client], make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    # The old service's history: a user hash without `seq`, elements {"text", "sent_at"}.
    async def write_the_old_way(client: Client) -> None:
        await client.hset(keys.user("alice"), mapping={"password_hash": "x", "generation": 1})
        for n in range(3):
            element = {"text": f"old{n}", "sent_at": f"2026-11-0{n + 1}T00:00:00.000Z"}
            await client.lpush(keys.messages("alice"), orjson.dumps(element))
        await client.delete(keys.user("alice"))

    asyncio.run(write_the_old_way(backend()))
    api = make_api(settings)  # the new service starts on it
    assert api.signup("alice").status == 201
    alice = api.login("alice")
    before = history(api, alice)["messages"]
    assert [(m["text"], m["from"], m["to"]) for m in before] == [
        ("old2", "alice", "alice"),
        ("old1", "alice", "alice"),
        ("old0", "alice", "alice"),
    ]
    assert len({m["id"] for m in before}) == 3
    api.user("bob")
    send(api, alice, "new", to="bob")
    after = history(api, alice)["messages"]
    assert after[1:] == before  # the same ids after new messages
    assert [m["text"] for m in history(api, alice, "?with=alice")["messages"]] == [
        "old2",
        "old1",
        "old0",
    ]
    page = history(api, alice, "?limit=2")
    assert [m["text"] for m in history(api, alice, f"?cursor={page['next']}")["messages"]] == [
        "old1",
        "old0",
    ]
    assert send(api, alice, "last 2").json == {"2": "old2", "1": "new"}


# 3. Safe retries.


@pytest.mark.parametrize("key", ["", "x" * 129, "has space", "tab\tin", "é", '"quoted"x\x7f'])
def test_a_bad_idempotency_key_is_a_422_and_stores_nothing(api: Api, key: str) -> None:
    alice = api.user("alice")
    response = api.post(
        "/message/",
        json={"text": "hi"},
        headers={"token": alice.encode(), "Idempotency-Key": key.encode()},
    )
    assert response.status == 422
    assert response.json == {
        "error": "validation_error",
        "message": "Idempotency-Key: must be given once, 1-128 visible ASCII characters",
    }
    assert stored(api, "alice") == []


@pytest.mark.parametrize("to", ["alice", "bob"])
def test_a_repeat_answers_the_same_and_stores_nothing(api: Api, to: str) -> None:
    alice = api.user("alice")
    api.user("bob")
    key = {"Idempotency-Key": '"quoted"-key'}  # no Structured Field parsing: quotes count
    first = send(api, alice, "once", to=to, **key)
    again = send(api, alice, "once", to=to, **key)
    assert (first.status, first.json) == (again.status, again.json) == (201, CREATED)
    assert first.headers["x-message-id"] == again.headers["x-message-id"]
    assert len(stored(api, "alice")) == 1
    assert len(stored(api, to)) == 1
    other = send(api, alice, "another body", to=to, **key)
    assert other.status == 422
    assert other.json["error"] == "idempotency_key_reused"
    # Scoped to the sender: bob may use the same key.
    assert send(api, api.login("bob"), "bob's", to="alice", **key).status == 201


def test_concurrent_requests_with_one_key_store_one_message(api: Api) -> None:
    alice = api.user("alice")
    api.user("bob")
    headers = {"token": alice, "Idempotency-Key": "one"}

    async def race() -> list[Any]:
        return list(
            await asyncio.gather(
                *(
                    api.post_async("/message/", {"text": "hi", "to": "bob"}, headers)
                    for _ in range(20)
                )
            )
        )

    answers = api.run(race())
    statuses = sorted(status for status, _, _ in answers)
    assert set(statuses) <= {201, 409}
    assert statuses.count(201) >= 1
    assert len(stored(api, "bob")) == len(stored(api, "alice")) == 1
    for status, body, headers_ in answers:
        if status == 409:
            assert body["error"] == "idempotency_key_in_use"
            assert int(headers_["retry-after"]) >= 1


def test_a_retry_after_a_failure_between_the_steps_stores_nothing_twice(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = api.user("alice")
    api.user("bob")
    store = api.services.messages
    if not store._cluster:  # one script: a failure leaves nothing behind to complete
        pytest.skip("only a cluster takes steps")
    real_commit = store._commit

    async def fails(*_: Any, **__: Any) -> Any:
        raise StorageUnavailable("the sender's node failed")

    monkeypatch.setattr(store, "_commit", fails)
    key = {"Idempotency-Key": "k"}
    assert send(api, alice, "hi", to="bob", **key).status == 503
    assert len(stored(api, "bob")) == 1  # the recipient's copy is in
    assert stored(api, "alice") == []
    monkeypatch.setattr(store, "_commit", real_commit)
    busy = send(api, alice, "hi", to="bob", **key)
    assert (busy.status, busy.json["error"]) == (409, "idempotency_key_in_use")
    clock = store._clock
    monkeypatch.setattr(store, "_clock", lambda: clock() + 11)  # the claim's lease runs out
    done = send(api, alice, "hi", to="bob", **key)
    assert done.status == 201
    assert len(stored(api, "bob")) == len(stored(api, "alice")) == 1
    assert stored(api, "alice")[0]["id"] == done.headers["x-message-id"]


# 4. Abuse.


def test_messages_to_others_are_rate_limited_per_sender(
    make_api: Callable[[Settings], Api], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_api(settings.replace(message_rate_per_minute=3))
    second = make_api(settings.replace(message_rate_per_minute=3))
    alice = first.user("alice")
    first.user("bob")
    now = time.time()
    for api in (first, second):
        monkeypatch.setattr(api.services.messages, "_clock", lambda: now)
    for n in range(3):
        assert send((first, second)[n % 2], alice, f"m{n}", to="bob").status == 201
    refused = send(second, alice, "one too many", to="bob")  # the bucket is shared
    assert (refused.status, refused.json["error"]) == (429, "rate_limited")
    assert refused.headers["retry-after"] == "20"
    assert len(stored(first, "bob")) == 3
    assert send(first, alice, "to myself is not counted").status == 201
    monkeypatch.setattr(first.services.messages, "_clock", lambda: now + 20)  # one token back
    assert send(first, alice, "again", to="bob").status == 201
    assert send(first, alice, "and again", to="bob").status == 429


def test_blocks(api: Api) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    send(api, bob, "before", to="alice")
    assert api.post("/blocks/", json={"name": "bob"}, headers={"token": alice}).status == 204
    assert api.post("/blocks/", json={"name": "bob"}, headers={"token": alice}).status == 204
    assert api.get("/blocks/", headers={"token": alice}).json == {"blocks": ["bob"]}
    refused = send(api, bob, "after", to="alice")
    assert refused.status == 403
    assert refused.json == {
        "error": "recipient_unavailable",
        "message": "the recipient does not take messages from you",
    }
    assert [m["text"] for m in history(api, alice)["messages"]] == ["before"]
    assert [m["text"] for m in history(api, bob)["messages"]] == ["before"]
    assert send(api, alice, "one way", to="bob").status == 201  # the blocker can still write
    assert api.request("delete", "/blocks/bob/", headers={"token": alice}).status == 204
    again = api.request("delete", "/blocks/bob/", headers={"token": alice})
    assert (again.status, again.json["error"]) == (404, "not_found")
    assert send(api, bob, "after", to="alice").status == 201


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"name": "ghost"}, 404, "unknown_recipient"),
        ({"name": "alice"}, 422, "validation_error"),
        ({"name": "a b"}, 422, "validation_error"),
        ({"name": None}, 422, "validation_error"),
        ({}, 422, "validation_error"),
    ],
)
def test_bad_blocks(api: Api, body: dict[str, Any], status: int, error: str) -> None:
    alice = api.user("alice")
    response = api.post("/blocks/", json=body, headers={"token": alice})
    assert (response.status, response.json["error"]) == (status, error)
    assert api.get("/blocks/", headers={"token": alice}).json == {"blocks": []}


def test_blocks_are_capped(make_api: Callable[[Settings], Api], settings: Settings) -> None:
    api = make_api(settings.replace(blocks_max_per_user=2))
    alice = api.user("alice")
    for name in ("b1", "b2", "b3"):
        api.signup(name)
    assert api.post("/blocks/", json={"name": "b1"}, headers={"token": alice}).status == 204
    assert api.post("/blocks/", json={"name": "b2"}, headers={"token": alice}).status == 204
    full = api.post("/blocks/", json={"name": "b3"}, headers={"token": alice})
    assert full.status == 422
    assert full.json["message"] == "name: you have blocked as many names as you may"


def test_blocks_need_csrf_with_the_cookie(api: Api) -> None:
    alice = api.user("alice")
    api.signup("bob")
    cookie = f"token={alice}"
    assert api.post("/blocks/", json={"name": "bob"}, cookie=cookie).status == 403
    ok = api.post(
        "/blocks/", json={"name": "bob"}, cookie=cookie, headers={"X-CSRF-Token": csrf_of(alice)}
    )
    assert ok.status == 204


# 6. Everything else.


def test_deleting_an_account_removes_every_key_of_it_and_frees_its_name(api: Api) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    send(api, alice, "to bob", to="bob", **{"Idempotency-Key": "k"})
    send(api, bob, "to alice", to="alice")
    api.post("/blocks/", json={"name": "bob"}, headers={"token": alice})
    export = api.get("/me/export/", headers={"token": alice}).json
    assert export["blocks"] == ["bob"]
    assert [m["text"] for m in export["messages"]] == ["to alice", "to bob"]
    deleted = api.request(
        "delete", "/me/", json={"password": "correct horse battery"}, headers={"token": alice}
    )
    assert deleted.status == 204
    assert keys_of(api, "alice") == []
    # Bob keeps his copies; the name, and what looks like it, are free again.
    assert [m["text"] for m in history(api, api.login("bob"))["messages"]] == ["to alice", "to bob"]
    assert api.signup("Alice").status == 201


def test_metrics_count_messages_and_refusals(api: Api) -> None:
    alice = api.user("alice")
    api.user("bob")
    send(api, alice, "to bob", to="bob")
    send(api, alice, "note")
    send(api, alice, "?", to="ghost")
    text = api.get("/metrics").text
    assert 'messages_sent_total{to="other"} 1.0' in text
    assert 'messages_sent_total{to="self"} 1.0' in text
    assert 'messages_refused_total{reason="unknown_recipient"} 1.0' in text
