"""Live delivery: GET /events/ (SSE) and GET /ws/ (WebSocket), on fakeredis, a real Redis and the
3-master cluster: events, resume, session ends, limits, slow clients."""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from api.auth import session_of
from api.security import issue_token
from api.settings import Settings
from storage import keys
from storage.connection import Client
from support.processes import PASSWORD, SECRET, RedisServer, start_service
from tests.conftest import Api

# A live event as a client reads it: its kind, id and data (None for the end of the stream).
EventTuple = tuple[str, str, Any]


@dataclass
class SseClient:
    """An SSE stream read in a thread of its own, event by event."""

    url: str
    headers: dict[str, str]
    events: queue.Queue[EventTuple | None] = field(default_factory=queue.Queue)
    status: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    first_line: str = ""
    comments: list[float] = field(default_factory=list)
    error: dict[str, Any] | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> SseClient:
        threading.Thread(target=self._read, daemon=True).start()
        assert self._ready.wait(10), "no answer"
        return self

    def _read(self) -> None:
        try:
            with httpx.stream("GET", self.url, headers=self.headers, timeout=30) as response:
                self.status = response.status_code
                self.response_headers = dict(response.headers)
                if response.status_code != 200:
                    self.error = json.loads(response.read())
                    self._ready.set()
                    self.events.put(None)
                    return
                kind, ident, data = "message", "", ""
                for line in response.iter_lines():
                    if not self.first_line:
                        self.first_line = line
                        self._ready.set()
                    if line.startswith(":"):
                        self.comments.append(time.monotonic())
                    elif line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("id: "):
                        ident = line[4:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif line == "" and data:
                        self.events.put((kind, ident, json.loads(data)))
                        kind, ident, data = "message", "", ""
        except (httpx.HTTPError, OSError):
            pass
        finally:
            self._ready.set()
            self.events.put(None)

    def next(self, timeout: float = 5) -> EventTuple | None:
        """The next event, or None when the stream has closed."""
        return self.events.get(timeout=timeout)

    def take(self, count: int, timeout: float = 5) -> list[EventTuple]:
        """The next `count` events (fails if the stream closes first)."""
        found: list[EventTuple] = []
        for _ in range(count):
            event = self.next(timeout)
            assert event is not None, found
            found.append(event)
        return found

    def closed_after(self, timeout: float = 5) -> list[EventTuple]:
        """Every event until the stream closes."""
        found: list[EventTuple] = []
        while (event := self.next(timeout)) is not None:
            found.append(event)
        return found


def sse(api: Api, token: str, query: str = "", **headers: str) -> SseClient:
    return SseClient(f"{api.base}/events/{query}", {"token": token, **headers}).start()


def ws_url(api: Api, query: str = "") -> str:
    return f"ws://{api.base.removeprefix('http://')}/ws/{query}"


def send(api: Api, token: str, text: str, to: str | None = None) -> None:
    body = {"text": text} if to is None else {"text": text, "to": to}
    response = api.post("/message/", json=body, headers={"token": token})
    assert response.status == 201, response.text


def texts(events: list[EventTuple]) -> list[str]:
    return [data["text"] for kind, _, data in events if kind == "message"]


@pytest.fixture
def live_api(make_api: Callable[[Settings], Api], settings: Settings) -> Api:
    """The app with a leeway of 0 (a token expires when it says) and quick heartbeats."""
    return make_api(settings.replace(jwt_leeway_seconds=0, response_timeout=2.0))


# 1. Server-Sent Events.


def test_every_message_entering_the_history_is_one_event(live_api: Api) -> None:
    api = live_api
    alice, bob = api.user("alice"), api.user("bob")
    stream = sse(api, bob)
    assert stream.status == 200
    assert stream.response_headers["content-type"] == "text/event-stream; charset=utf-8"
    assert stream.response_headers["cache-control"] == "no-store"
    assert stream.first_line == ": connected"
    send(api, alice, "received", to="bob")
    send(api, bob, "sent from another device", to="alice")
    send(api, bob, "a note")
    events = stream.take(3)
    assert texts(events) == ["received", "sent from another device", "a note"]
    history = api.get("/messages/", headers={"token": bob}).json["messages"]
    assert [data for _, _, data in events] == list(reversed(history))  # the entries, as stored
    numbers = [int(ident.split("-")[0]) for _, ident, _ in events]
    assert numbers == [1, 2, 3]
    assert all(ident.split("-", 1)[1] == data["id"] for _, ident, data in events)


def test_a_quiet_stream_sends_comments(live_api: Api) -> None:
    stream = sse(live_api, live_api.user("alice"))
    time.sleep(2.5)  # RESPONSE_TIMEOUT is 2 s here: a comment at least every 1 s
    assert len(stream.comments) >= 3  # the first line and two heartbeats
    assert stream.events.empty()


@pytest.mark.parametrize("how", ["Last-Event-ID", "after"])
def test_a_resume_replays_what_was_missed_in_order_then_goes_live(live_api: Api, how: str) -> None:
    api = live_api
    alice, bob = api.user("alice"), api.user("bob")
    first = sse(api, bob)
    send(api, alice, "m1", to="bob")
    [(_, last_id, _)] = first.take(1)
    for n in range(2, 6):
        send(api, alice, f"m{n}", to="bob")
    resumed = (
        sse(api, bob, **{"Last-Event-ID": last_id})
        if how == "Last-Event-ID"
        else sse(api, bob, f"?after={last_id}")
    )
    send(api, alice, "m6", to="bob")
    events = resumed.take(5)
    assert texts(events) == ["m2", "m3", "m4", "m5", "m6"]
    assert resumed.events.empty()


def test_a_resume_the_history_cannot_serve_begins_with_reset(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings.replace(message_history_limit=3))
    alice, bob = api.user("alice"), api.user("bob")
    stream = sse(api, bob)
    send(api, alice, "m1", to="bob")
    [(_, first_id, _)] = stream.take(1)
    for n in range(2, 7):  # m1 is trimmed away
        send(api, alice, f"m{n}", to="bob")
    resumed = sse(api, bob, **{"Last-Event-ID": first_id})
    kind, reset_id, data = resumed.take(1)[0]
    assert (kind, data) == ("reset", {})
    send(api, alice, "after", to="bob")
    assert texts(resumed.take(1)) == ["after"]
    # Another history's event id (lost data, another account): reset too.
    assert sse(api, bob, "?after=2-notthisone").take(1)[0][0] == "reset"
    # The reset's own id resumes from where it stood.
    assert texts(sse(api, bob, **{"Last-Event-ID": reset_id}).take(1)) == ["after"]


@pytest.mark.parametrize("bad", ["x", "-1", "12", "1-a b", "9" * 30 + "-x"])
def test_an_event_id_that_is_not_one_is_a_422(live_api: Api, bad: str) -> None:
    stream = sse(live_api, live_api.user("alice"), **{"Last-Event-ID": bad})
    assert stream.status == 422
    assert stream.error == {
        "error": "validation_error",
        "message": "Last-Event-ID: is not an event id of this stream",
    }


# 3. A session's end ends its streams.


def _ends_within_a_second(stream: SseClient, action: Callable[[], Any]) -> None:
    started = time.monotonic()
    action()
    events = stream.closed_after(5)
    assert events[-1][0] == "end", events
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("how", ["logout", "logout all", "password", "session", "delete"])
def test_the_end_of_a_session_ends_its_streams(live_api: Api, how: str) -> None:
    api = live_api
    api.signup("alice")
    token = api.login("alice")
    other = api.login("alice")
    stream = sse(api, token)
    bystander = sse(api, other)  # another session of the same user
    session_id = api.get("/sessions/", headers={"token": token}).json["sessions"]
    mine = next(s["id"] for s in session_id if s["current"])
    actions: dict[str, Callable[[], Any]] = {
        "logout": lambda: api.post("/logout/", headers={"token": token}),
        "logout all": lambda: api.post("/logout/all/", headers={"token": token}),
        "password": lambda: api.post(
            "/password/",
            json={"password": PASSWORD, "new_password": "another password"},
            headers={"token": token},
        ),
        "session": lambda: api.request("delete", f"/sessions/{mine}/", headers={"token": other}),
        "delete": lambda: api.request(
            "delete", "/me/", json={"password": PASSWORD}, headers={"token": token}
        ),
    }
    _ends_within_a_second(stream, actions[how])
    if how in ("logout", "session"):  # one session: the other one's stream goes on
        send(api, other, "still here")
        assert texts(bystander.take(1)) == ["still here"]
    else:
        assert bystander.closed_after(5)[-1][0] == "end"


def test_a_stream_ends_when_its_token_expires(live_api: Api) -> None:
    api = live_api
    api.signup("alice")
    now = int(time.time())
    token, _ = issue_token(SECRET, "alice", api.generation(), 3, now=now)  # of no family
    stream = sse(api, token)
    assert stream.closed_after(6)[-1][0] == "end"
    assert now + 3 <= time.time() < now + 4  # within a second of its expiry


# 2. WebSocket.


def _ws(api: Api, token: str | None = None, query: str = "", **headers: str) -> ClientConnection:
    all_headers = {**({"token": token} if token else {}), **headers}
    return connect(ws_url(api, query), additional_headers=all_headers, open_timeout=10)


def _frame(socket_: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(socket_.recv(timeout=timeout))
    return frame


def test_a_websocket_gets_the_same_events_and_sends(live_api: Api) -> None:
    api = live_api
    alice, bob = api.user("alice"), api.user("bob")
    with _ws(api, bob) as ws:
        send(api, alice, "over http", to="bob")
        frame = _frame(ws)
        assert frame["type"] == "message"
        assert frame["message"]["text"] == "over http"
        assert frame["event_id"].split("-", 1)[1] == frame["message"]["id"]
        ws.send(json.dumps({"type": "send", "to": "alice", "text": "over the socket"}))
        sent = _frame(ws)
        assert sent["type"] in ("sent", "message")
        frames = [sent, _frame(ws)]
        [ack] = [f for f in frames if f["type"] == "sent"]
        [echo] = [f for f in frames if f["type"] == "message"]
        assert echo["message"]["id"] == ack["id"]
        assert echo["message"]["text"] == "over the socket"
    [received] = api.get("/messages/?limit=1", headers={"token": alice}).json["messages"]
    assert (received["from"], received["text"]) == ("bob", "over the socket")


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("not json", {"error": "invalid_json", "message": "the frame is not valid JSON"}),
        ("[1]", {"error": "validation_error", "message": "frame: must be a JSON object"}),
        ('{"type": "hello"}', {"error": "validation_error", "message": "type: must be send"}),
        ('{"type": "send"}', {"error": "validation_error", "message": "text: field required"}),
        (
            '{"type": "send", "text": "hi", "to": "ghost"}',
            {"error": "unknown_recipient", "message": "no user has this name"},
        ),
        (
            '{"type": "send", "text": "hi", "to": null}',
            {"error": "validation_error", "message": "to: must be a string"},
        ),
        (
            '{"type": "send", "text": "hi", "idempotency_key": "a b"}',
            {
                "error": "validation_error",
                "message": "idempotency_key: must be given once, 1-128 visible ASCII characters",
            },
        ),
        (
            '{"type": "send", "text": "last 3"}',
            {
                "error": "validation_error",
                "message": "text: `last N` is a query: ask it with POST /message/",
            },
        ),
        ("\udcff", None),  # bytes that are not UTF-8 (sent as a binary frame)
    ],
)
def test_a_bad_frame_gets_an_error_frame_and_the_socket_goes_on(
    live_api: Api, frame: str, error: dict[str, str] | None
) -> None:
    api = live_api
    alice = api.user("alice")
    with _ws(api, alice) as ws:
        if error is None:
            ws.send(b"\xff\xfe not utf-8")
            assert _frame(ws) == {
                "type": "error",
                "error": "validation_error",
                "message": "frame: must be a text frame of JSON",
            }
        else:
            ws.send(frame)
            assert _frame(ws) == {"type": "error", **error}
        ws.send(json.dumps({"type": "send", "text": "still open"}))
        kinds = {_frame(ws)["type"], _frame(ws)["type"]}
        assert kinds == {"sent", "message"}


def test_a_websocket_ends_with_4401_when_its_session_does(live_api: Api) -> None:
    api = live_api
    token = api.user("alice")
    with _ws(api, token) as ws:
        started = time.monotonic()
        api.post("/logout/", headers={"token": token})
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401
        assert time.monotonic() - started < 1.5


def test_a_cookie_websocket_from_another_origin_is_refused_before_the_upgrade(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings.replace(allowed_origins="https://app.example.com"))
    token = api.user("alice")
    cookie = f"token={token}"
    with pytest.raises(InvalidStatus) as refused:
        _ws(api, Cookie=cookie, Origin="https://evil.example.com")
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body) == {
        "error": "origin_refused",
        "message": "a cookie-authenticated WebSocket must come from the service's own origin",
    }
    for origin in (api.base, "https://app.example.com"):
        with _ws(api, Cookie=cookie, Origin=origin):
            pass
    # A header token is no browser's: no Origin needed.
    with _ws(api, token):
        pass
    with pytest.raises(InvalidStatus) as unauthenticated:
        _ws(api)
    assert unauthenticated.value.response.status_code == 401


# 5. Limits.


def test_at_most_so_many_streams_per_user_then_429(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    first = make_api(settings.replace(live_max_per_user=2))
    second = make_api(settings.replace(live_max_per_user=2))  # counted across instances
    token = first.user("alice")
    streams = [sse(first, token), sse(second, token)]
    refused = sse(first, token)
    assert refused.status == 429
    assert refused.error is not None
    assert refused.error["error"] == "rate_limited"
    assert refused.response_headers["retry-after"] == "5"
    first.post("/logout/", headers={"token": token})  # their session ends: places go back
    for stream in streams:
        stream.closed_after(5)
    assert sse(first, first.login("alice")).status == 200


def test_at_most_so_many_streams_per_worker_then_503(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings.replace(live_max_connections=2))
    opened = [sse(api, api.user(name)) for name in ("a1", "a2")]
    refused = sse(api, api.user("a3"))
    assert refused.status == 503
    assert refused.error == {
        "error": "busy",
        "message": "too many live streams here, try again shortly",
    }
    assert refused.response_headers["retry-after"] == "1"
    assert all(stream.status == 200 for stream in opened)


def test_a_client_that_does_not_read_is_closed_and_its_memory_bounded(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(
        settings.replace(
            message_max_chars=4096, message_history_limit=5000, message_rate_per_minute=10_000
        )
    )
    alice, bob = api.user("alice"), api.user("bob")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: no autotuning
    sock.connect(("127.0.0.1", api._server.port))
    sock.sendall(f"GET /events/ HTTP/1.1\r\nHost: x\r\ntoken: {bob}\r\n\r\n".encode())
    time.sleep(0.5)
    big = "x" * 4000
    hub = api.services.hub
    try:
        for n in range(2000):
            send(api, alice, f"{n}{big}", to="bob")
            if not hub._streams.get("bob"):
                break
        assert "bob" not in hub._streams  # closed: it stopped reading
    finally:
        sock.close()
    text = api.get("/metrics").text
    assert 'live_streams_closed_total{reason="slow"} 1.0' in text


# 4. Across workers of one process: the subscriber's connections.


def test_one_subscriber_connection_per_node_whatever_the_streams(live_api: Api) -> None:
    api = live_api
    tokens = [api.user(f"u{n}") for n in range(10)]
    streams = [sse(api, token) for token in tokens for _ in range(2)]
    subscriber = api.services.hub.subscriber
    nodes = [node for node in subscriber._nodes.values() if node.channels]
    assert sum(len(node.channels) for node in nodes) == 10
    assert len(subscriber._nodes) <= 3  # one per node (the cluster has 3)
    send(api, tokens[0], "to u1", to="u1")
    assert texts(streams[2].take(1)) == ["to u1"]
    assert texts(streams[3].take(1)) == ["to u1"]


def test_streams_opened_at_once_on_an_idle_worker_all_open(live_api: Api) -> None:
    # An idle worker has no subscriber connection: the first streams of a burst (a reconnect
    # storm after a deploy) race to make it. Each must open, on one connection.
    api = live_api
    names = [f"u{n}" for n in range(6)]
    for name in names:
        api.signup(name)
    subscriber = api.services.hub.subscriber
    for _ in range(3):
        tokens = [api.login(name) for name in names]
        with ThreadPoolExecutor(len(tokens)) as pool:
            streams = list(pool.map(lambda token: sse(api, token), tokens))
        assert [stream.status for stream in streams] == [200] * len(tokens)
        send(api, tokens[0], "to u5", to="u5")
        assert texts(streams[5].take(1)) == ["to u5"]
        for node in subscriber._nodes.values():
            pool_ = node.client.connection_pool
            assert len(pool_._in_use_connections) + len(pool_._available_connections) <= 1
        for token, stream in zip(tokens, streams, strict=True):
            api.post("/logout/", headers={"token": token})
            stream.closed_after(5)
        deadline = time.monotonic() + 5  # the last stream gone, the connection goes
        while any(node.channels for node in subscriber._nodes.values()):
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_metrics_of_live_streams(live_api: Api) -> None:
    api = live_api
    alice, bob = api.user("alice"), api.user("bob")
    stream = sse(api, bob)
    send(api, alice, "hi", to="bob")
    stream.take(1)
    text = api.get("/metrics").text
    assert 'live_streams{transport="sse"} 1.0' in text
    assert 'live_events_delivered_total{transport="sse"} 1.0' in text
    assert "live_delivery_seconds_count 1.0" in text


def _keys(api: Api, pattern: str) -> list[str]:
    async def scan(client: Client) -> list[str]:
        return sorted([key async for key in client.scan_iter(match=pattern)])

    return api.redis(scan)


def test_a_stream_takes_a_place_and_gives_it_back(live_api: Api) -> None:
    api = live_api
    token = api.user("alice")
    stream = sse(api, token)

    async def places(client: Client) -> int:
        return int(await client.zcard(keys.live_streams("alice")))

    assert api.redis(places) == 1
    api.post("/logout/", headers={"token": token})
    stream.closed_after(5)
    deadline = time.monotonic() + 5
    while api.redis(places) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.redis(places) == 0


# What a client that misbehaves leaves behind: nothing.


def _places(api: Api, name: str = "alice") -> int:
    async def count(client: Client) -> int:
        return int(await client.zcard(keys.live_streams(name)))

    return api.redis(count)


def _until(condition: Callable[[], bool], seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _nothing_left(api: Api, name: str = "alice") -> None:
    hub = api.services.hub
    assert _until(lambda: not hub._streams and _places(api, name) == 0), (
        hub._streams,
        _places(api, name),
    )
    assert hub._by_transport == {"sse": 0, "ws": 0}


HANDSHAKE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@pytest.mark.parametrize(
    ("change", "status", "body"),
    [
        (
            {"Upgrade": None, "Connection": None},
            426,
            {"error": "upgrade_required", "message": "connect with a WebSocket client"},
        ),
        (
            {"Sec-WebSocket-Key": None},
            400,
            {"error": "bad_request", "message": "the WebSocket handshake is malformed"},
        ),
        (
            {"Sec-WebSocket-Key": "c2hvcnQ="},  # not 16 bytes
            400,
            {"error": "bad_request", "message": "the WebSocket handshake is malformed"},
        ),
        (
            {"Sec-WebSocket-Version": "8"},
            400,
            {"error": "bad_request", "message": "the WebSocket handshake is malformed"},
        ),
        (
            {"Sec-WebSocket-Protocol": "chat\x01"},
            400,
            {"error": "bad_request", "message": "a header of the handshake is malformed"},
        ),
    ],
)
def test_a_get_of_ws_that_cannot_become_a_websocket_is_refused_and_takes_nothing(
    live_api: Api, change: dict[str, str | None], status: int, body: dict[str, str]
) -> None:
    api = live_api
    token = api.user("alice")
    headers = {**HANDSHAKE, "token": token, **change}
    sent = {name: value for name, value in headers.items() if value is not None}
    for _ in range(api.settings.live_max_per_user + 2):  # more than a user's places
        response = httpx.get(f"{api.base}/ws/", headers=sent, timeout=10)
        assert (response.status_code, response.json()) == (status, body)
    _nothing_left(api)
    assert sse(api, token).status == 200


def test_a_websocket_opens_on_the_service_as_run_py_serves_it(redis_server: RedisServer) -> None:
    redis_server.client().flushall()
    service = start_service({"REDIS_URL": redis_server.url})
    try:
        token = service.user("alice")
        url = service.url.replace("http://", "ws://") + "/ws/"
        with connect(url, additional_headers={"token": token}, open_timeout=10) as socket_:
            socket_.send(json.dumps({"type": "send", "text": "over the socket"}))
            answers = [_frame(socket_), _frame(socket_)]
        assert {frame["type"] for frame in answers} == {"sent", "message"}
    finally:
        output = service.stop()
    assert "Traceback" not in output


def test_a_stream_no_transport_takes_is_released(
    live_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A handshake that fails in a way nothing answers for (the client gone mid-handshake): the
    # stream opened before it is released by its claim deadline.
    monkeypatch.setattr("api.live.CLAIM_SECONDS", 0.3)
    api = live_api
    token = api.user("alice")
    hub = api.services.hub
    claims = api.services.auth.verify(token)
    stream = api.run(hub.open(session_of(claims), claims, "ws", None))
    assert not stream.attached
    assert _places(api) == 1
    _nothing_left(api)
    assert stream.closed == "client"


def test_a_client_that_leaves_while_its_stream_opens_gives_its_place_back(
    live_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = live_api
    token = api.user("alice")
    store = api.services.hub.store
    real_open = store.open
    taken = threading.Event()

    async def open_then_stall(*args: Any) -> Any:
        catchup = await real_open(*args)
        taken.set()
        await asyncio.sleep(30)  # the client leaves meanwhile
        return catchup

    monkeypatch.setattr(store, "open", open_then_stall)
    for _ in range(api.settings.live_max_per_user + 2):
        taken.clear()
        sock = socket.create_connection(("127.0.0.1", api._server.port))
        sock.sendall(f"GET /events/ HTTP/1.1\r\nHost: x\r\ntoken: {token}\r\n\r\n".encode())
        assert taken.wait(5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset, as a phone losing its network sends
        _nothing_left(api)
    monkeypatch.setattr(store, "open", real_open)
    assert sse(api, token).status == 200


def test_one_client_leaving_mid_subscribe_fails_no_other_open(
    live_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = live_api
    token = api.user("alice")
    hub = api.services.hub
    real_subscribe = hub.subscriber.subscribe
    gate = asyncio.Event()

    async def slow_subscribe(channel: str) -> None:
        await gate.wait()
        await real_subscribe(channel)

    monkeypatch.setattr(hub.subscriber, "subscribe", slow_subscribe)
    leaving = socket.create_connection(("127.0.0.1", api._server.port))
    leaving.sendall(f"GET /events/ HTTP/1.1\r\nHost: x\r\ntoken: {token}\r\n\r\n".encode())
    assert _until(lambda: "alice" in hub._subscribing)
    with ThreadPoolExecutor(1) as pool:
        staying = pool.submit(sse, api, token)
        assert _until(lambda: len(hub._streams.get("alice", ())) == 2)
        leaving.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        leaving.close()
        assert _until(lambda: len(hub._streams.get("alice", ())) == 1)
        api.run(_set(gate))
        stream = staying.result(timeout=10)
    assert stream.status == 200
    send(api, token, "still here")
    assert texts(stream.take(1)) == ["still here"]


async def _set(event: asyncio.Event) -> None:
    event.set()


def test_head_of_events_answers_the_headers_and_opens_nothing(live_api: Api) -> None:
    api = live_api
    token = api.user("alice")
    with httpx.Client(base_url=api.base, timeout=10) as client:
        head = client.head("/events/", headers={"token": token})
        assert head.status_code == 200
        assert head.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert client.get("/me/", headers={"token": token}).status_code == 200  # same connection
    _nothing_left(api)


def test_a_resume_of_more_than_a_queue_holds_replays_them_all(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings.replace(message_history_limit=1000))
    token = api.user("alice")
    stream = sse(api, token)
    send(api, token, "seen")
    _, seen, _ = stream.take(1)[0]
    api.post("/logout/", headers={"token": token})
    stream.closed_after(5)
    token = api.login("alice")
    missed = [f"missed {n}" for n in range(300)]  # more than EVENT_QUEUE (256)
    for text in missed:
        send(api, token, text)
    resumed = sse(api, token, **{"Last-Event-ID": seen})
    assert texts(resumed.take(300)) == missed
    assert 'live_streams_closed_total{reason="slow"}' not in api.get("/metrics").text


def test_last_event_id_given_twice_is_a_422(live_api: Api) -> None:
    api = live_api
    token = api.user("alice")
    sock = socket.create_connection(("127.0.0.1", api._server.port), timeout=10)
    sock.sendall(
        f"GET /events/ HTTP/1.1\r\nHost: x\r\ntoken: {token}\r\nLast-Event-ID: 1-a\r\n"
        "Last-Event-ID: 2-b\r\nConnection: close\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 422"), answer  # not a stream, which never ends
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    assert answer.endswith(
        b'{"error":"validation_error","message":"Last-Event-ID: must be given once"}'
    )


def test_a_refused_send_frame_says_when_to_retry(
    make_api: Callable[[Settings], Api], settings: Settings
) -> None:
    api = make_api(settings.replace(message_rate_per_minute=1))
    alice = api.user("alice")
    api.user("bob")
    answers: list[dict[str, Any]] = []
    with _ws(api, alice) as socket_:
        for text in ("one", "two"):
            socket_.send(json.dumps({"type": "send", "to": "bob", "text": text}))
        while len(answers) < 2:
            frame = _frame(socket_)
            if frame["type"] != "message":  # its own copy of "one"
                answers.append(frame)
    assert answers[0]["type"] == "sent"
    assert {key: answers[1][key] for key in ("type", "error")} == {
        "type": "error",
        "error": "rate_limited",
    }
    assert answers[1]["retry_after"] >= 1


def test_a_stream_busy_for_longer_than_the_response_timeout_stays_open(live_api: Api) -> None:
    # Messages flowing keep heartbeats away, and go out past Sanic's send: the response must
    # still count as writing, or Sanic closes it after RESPONSE_TIMEOUT (2 s here).
    api = live_api
    token = api.user("alice")
    stream = sse(api, token)
    sent = [f"busy {n}" for n in range(12)]
    for text in sent:
        send(api, token, text)
        time.sleep(api.settings.response_timeout / 4)
    assert texts(stream.take(len(sent))) == sent
    send(api, token, "still open")
    assert texts(stream.take(1)) == ["still open"]
