"""Hostile bytes from outside: every value a client controls, on every route, against the service
as a process. One client's bytes never reach another client: no 500, no stall of other users'
requests, `/metrics` and the logs well-formed afterwards.

Every new route and every new value the service reads joins the tables below.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from storage import keys
from support.processes import PASSWORD, RedisServer, Service, start_service
from tests.conftest import csrf_of

pytestmark = pytest.mark.redis_server

METRICS_TOKEN = "metrics-token-0123456789"
FORWARDED_SECRET = "proxy-secret-0123456789"

# Values a client can put anywhere: bytes that are not UTF-8 (one ISO-8859-1 byte, as some
# clients send, and bytes no encoding makes), terminal control sequences, 64 KiB, nothing.
HOSTILE: dict[str, bytes] = {
    "latin-1": b"J\xfcrgen",
    "not UTF-8": b"\xff\xfe\xc3(",
    "control": b"\x1b[2K\rFAKE\x07",
    "64 KiB": b"x" * 65536,
    "empty": b"",
}
ODD_METHODS = (b"GET\xff", b"FOO", b"M" * 200, b"get", b"PROPFIND", b"\x1b[2K")


@dataclass
class Answer:
    """A raw HTTP answer: the status (0 when the server closed without one) and the bytes."""

    status: int
    raw: bytes

    @property
    def body(self) -> bytes:
        """What follows the headers."""
        return self.raw.partition(b"\r\n\r\n")[2]


def send_raw(url: str, request: bytes, timeout: float = 15, *, head_only: bool = False) -> Answer:
    """Send `request` (which asks for `Connection: close`) as it is; read the whole answer (or,
    for a stream that stays open, its status and headers)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        # Refused before the whole request arrived: the answer is still there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if head_only and b"\r\n\r\n" in b"".join(chunks):
                    break
        except ConnectionResetError:
            pass
    raw = b"".join(chunks)
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", raw)
    return Answer(int(match.group(1)) if match else 0, raw)


def build(
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes | None = None,
) -> bytes:
    """A raw HTTP/1.1 request, every byte as given."""
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if body is not None:
        lines += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


@dataclass
class Target:
    """A route to attack: its method and path, a valid body, whether it needs a token, and
    whether a call ends the session (or the account) it is made with."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    authenticated: bool = True
    ends_session: bool = False
    query: dict[str, str] = field(default_factory=dict)
    stream: bool = False  # an answer that stays open: only its head is read
    headers: tuple[tuple[bytes, bytes], ...] = ()  # sent besides the attack's


WEBSOCKET_HANDSHAKE = (
    (b"Upgrade", b"websocket"),
    (b"Connection", b"Upgrade"),
    (b"Sec-WebSocket-Version", b"13"),
    (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
)


def targets(session_id: str) -> list[Target]:
    """Every route of the service, with what a valid call of it sends."""
    password = {"password": PASSWORD}
    return [
        Target("POST", "/signup/", {"name": "x", "password": PASSWORD}, authenticated=False),
        Target("POST", "/login/", {"name": "alice", "password": PASSWORD}, authenticated=False),
        Target(
            "POST",
            "/login/",
            {"name": "alice", "password": PASSWORD, "refresh": True},
            authenticated=False,
        ),
        Target("POST", "/token/refresh/", {"refresh_token": "r"}, authenticated=False),
        Target("POST", "/logout/", None, ends_session=True),
        Target("POST", "/logout/all/", None, ends_session=True),
        Target("GET", "/me/"),
        Target("HEAD", "/me/"),
        Target("POST", "/message/", {"text": "hello"}),
        Target("POST", "/message/", {"text": "last 3"}),
        Target("POST", "/message/", {"text": "hi", "to": "bob"}),
        Target("GET", "/messages/", query={"limit": "5"}),
        Target("GET", "/messages/", query={"with": "bob", "cursor": "AAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
        Target("POST", "/blocks/", {"name": "bob"}),
        Target("GET", "/blocks/"),
        Target("DELETE", "/blocks/bob/"),
        Target("GET", "/events/", stream=True),
        Target("GET", "/events/", query={"after": "1-abc"}, stream=True),
        Target("GET", "/ws/"),
        Target("GET", "/ws/", stream=True, headers=WEBSOCKET_HANDSHAKE),
        Target("HEAD", "/events/"),
        Target("GET", "/sessions/"),
        Target("DELETE", f"/sessions/{session_id}/", ends_session=True),
        Target("POST", "/password/", {**password, "new_password": PASSWORD}, ends_session=True),
        Target("GET", "/me/export/"),
        Target("DELETE", "/me/", password, ends_session=True),
        Target("GET", "/healthz", authenticated=False),
        Target("GET", "/readyz", authenticated=False),
        Target("GET", "/metrics", authenticated=False),
        Target("GET", "/", authenticated=False),
        Target("GET", "/app/app.js", authenticated=False),
        Target("GET", "/docs", authenticated=False),
        Target("GET", "/docs/assets/docs.js", authenticated=False),
        Target("GET", "/docs/openapi.json", authenticated=False),
        Target("GET", "/nowhere", authenticated=False),
    ]


# Where a hostile value goes: a header (whole value or after a prefix), a cookie, a query value.
PLACES = (
    "token",
    "authorization",
    "bearer-lowercase",
    "cookie token",
    "cookie refresh_token",
    "x-csrf-token",
    "x-request-id",
    "user-agent",
    "x-forwarded-for",
    "forwarded",
    "x-forwarded-proto",
    "content-type",
    "if-none-match",
    "idempotency-key",
    "last-event-id",
    "origin",
    "sec-websocket-protocol",
    "query",
)


def attack(
    service: Service, target: Target, place: str, value: bytes, token: str
) -> tuple[bytes, Answer]:
    """Send `target` with `value` at `place` (and valid credentials everywhere else)."""
    headers: list[tuple[bytes, bytes]] = list(target.headers)
    query = dict(target.query)
    cookie_parts: list[bytes] = []
    credentials = token.encode()
    if place == "token":
        headers.append((b"token", value))
    elif place == "authorization":
        headers.append((b"Authorization", b"Bearer " + value))
    elif place == "bearer-lowercase":
        headers.append((b"Authorization", b"bearer " + value))
    elif place == "cookie token":
        cookie_parts.append(b"token=" + value)
        headers.append((b"X-CSRF-Token", csrf_of(token).encode()))
    elif place == "cookie refresh_token":
        cookie_parts.append(b"refresh_token=" + value)
        headers.append((b"token", credentials))
    elif place == "x-csrf-token":
        cookie_parts.append(b"token=" + credentials)
        headers.append((b"X-CSRF-Token", value))
    elif place == "query":
        headers.append((b"token", credentials))
    else:
        headers.append((b"token", credentials))
        name = {"forwarded": b"Forwarded"}.get(place, place.encode())
        if place == "forwarded":
            value = b"for=" + value + b";secret=" + FORWARDED_SECRET.encode()
        headers.append((name, value))
    if cookie_parts:
        headers.append((b"Cookie", b"; ".join(cookie_parts)))
    target_bytes = target.path.encode()
    if place == "query":  # the value percent-encoded, as a URL carries raw bytes
        quoted = urllib.parse.quote_from_bytes(value).encode()
        target_bytes += b"?" + b"&".join(k.encode() + b"=" + quoted for k in query or ["limit"])
    elif query:
        target_bytes += b"?" + urllib.parse.urlencode(query).encode()
    body = None if target.body is None else json.dumps(target.body).encode()
    method = target.method.encode()
    if place == "content-type" and body is not None:
        headers += [(b"Content-Type", value), (b"Content-Length", b"%d" % len(body))]
        request = build(method, target_bytes, headers) + body
    else:
        request = build(method, target_bytes, headers, body)
    return request, send_raw(service.url, request, head_only=target.stream)


@pytest.fixture(params=["text", "json"])
def hostile_service(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[Service]:
    """The service on a real Redis, trusting a proxy's headers, with a metrics token, logging in
    the format of the test's parameter, and limits out of the way of the attack's volume."""
    redis_server.client().flushall()
    running = start_service(
        {
            "REDIS_URL": redis_server.url,
            "LOG_FORMAT": request.param,
            "PROXIES_COUNT": "1",
            "FORWARDED_SECRET": FORWARDED_SECRET,
            "METRICS_TOKEN": METRICS_TOKEN,
            "SIGNUP_ADDR_MAX": "100000",
            "LOGIN_ADDR_MAX_FAILURES": "100000",
        }
    )
    running.call("POST", "/signup/", {"name": "alice", "password": PASSWORD})
    running.call("POST", "/signup/", {"name": "bob", "password": PASSWORD})
    yield running
    running.stop()


def _others_keep_being_served(service: Service, stop: threading.Event, slow: list[float]) -> None:
    """Another user's requests, as fast as they come, while the attack goes on."""
    token = service.login("bob")
    while not stop.is_set():
        started = time.monotonic()
        status, _, _ = service.call("GET", "/me/", headers={"token": token})
        elapsed = time.monotonic() - started
        if status != 200 or elapsed > 2:
            slow.append(elapsed if status == 200 else -status)


def test_hostile_bytes_anywhere_never_hurt_anyone(hostile_service: Service) -> None:
    service = hostile_service
    stop = threading.Event()
    slow: list[float] = []
    bystander = threading.Thread(target=_others_keep_being_served, args=(service, stop, slow))
    bystander.start()
    failures: list[str] = []
    try:
        token = service.login()
        sessions = service.call("GET", "/sessions/", headers={"token": token})[1]["sessions"]
        victims = 0
        for target in targets(sessions[0]["id"]):
            for place in PLACES:
                for label, value in HOSTILE.items():
                    if target.method == "DELETE" and target.path == "/me/":
                        victims += 1  # each deletes an account of its own
                        token = service.user(f"victim{victims}")
                    elif target.ends_session:
                        token = service.login()
                    _, answer = attack(service, target, place, value, token)
                    if not 100 <= answer.status < 500:
                        failures.append(
                            f"{target.method} {target.path} {place}={label}: {answer.raw[:300]!r}"
                        )
        for method in ODD_METHODS:
            for path in (b"/me/", b"/message/", b"/nowhere", b"/metrics", b"/events/", b"/ws/"):
                answer = send_raw(service.url, build(method, path, [(b"token", token.encode())]))
                if not 100 <= answer.status < 500:
                    failures.append(f"{method!r} {path!r}: {answer.raw[:300]!r}")
    finally:
        stop.set()
        bystander.join(timeout=30)
    assert not failures, "\n".join(failures[:20])
    assert not slow, slow  # nobody else waited or failed
    status, _, _ = service.call("GET", "/me/", headers={"token": service.login()})
    assert status == 200
    _assert_metrics_well_formed(service)
    _assert_logs_well_formed(service.stop(), service)  # a stopping service writes out its log


def _assert_metrics_well_formed(service: Service) -> None:
    request = build(b"GET", b"/metrics", [(b"Authorization", b"bearer " + METRICS_TOKEN.encode())])
    answer = send_raw(service.url, request)
    assert answer.status == 200, answer.raw[:300]
    text = answer.body.decode("utf-8")  # strictly UTF-8
    families = {family.name: family for family in text_string_to_metric_families(text)}
    methods = {s.labels["method"] for s in families["http_requests"].samples}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert "other" in methods
    for family in families.values():
        for sample in family.samples:
            for label in sample.labels.values():
                assert label.isprintable(), (family.name, sample.labels)


def _assert_logs_well_formed(output: str, service: Service) -> None:
    lines = output.splitlines()
    json_format = any(line.startswith('{"time"') for line in lines)
    assert "\x1b" not in output
    assert "FAKE" not in output or "\\x1b[2K\\x0dFAKE" in output or "\\u001b[2K\\rFAKE" in output
    for line in lines:
        assert "\r" not in line
        if json_format:
            json.loads(line)  # every line is one JSON object
    assert "Traceback" not in output or json_format
    assert "Logging error" not in output


def test_a_latin_1_user_agent_logs_in_and_stalls_nobody(redis_server: RedisServer) -> None:
    redis_server.client().flushall()
    running = start_service({"REDIS_URL": redis_server.url})
    try:
        running.call("POST", "/signup/", {"name": "alice", "password": PASSWORD})
        bob = running.user("bob")
        body = json.dumps({"name": "alice", "password": PASSWORD}).encode()
        login = build(b"POST", b"/login/", [(b"User-Agent", b"J\xfcrgen")], body)

        def me() -> tuple[int, float]:
            started = time.monotonic()
            status = running.call("GET", "/me/", headers={"token": bob})[0]
            return status, time.monotonic() - started

        with ThreadPoolExecutor(max_workers=16) as pool:
            others = [pool.submit(me) for _ in range(64)]
            # One after another: logins in flight at once each hold a place in the window.
            answers = [send_raw(running.url, login) for _ in range(12)]
            served = [f.result() for f in others]
        assert [a.status for a in answers] == [200] * 12  # more than LOGIN_MAX_FAILURES
        assert all(status == 200 and seconds < 2 for status, seconds in served), served
        token = json.loads(answers[0].body)["token"]
        sessions = running.call("GET", "/sessions/", headers={"token": token})[1]["sessions"]
        assert {s["user_agent"] for s in sessions} == {"J\ufffdrgen"}
        # Correct-password logins are not failures: the account's window is empty.
        assert not redis_server.client().exists(keys.login_failures("alice"))
        change = {"password": PASSWORD, "new_password": "another password"}
        assert running.call("POST", "/password/", change, {"token": token})[0] == 200
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("headers", "path", "method", "expected"),
    [
        ([(b"token", b"\xff\xfe")], b"/me/", b"GET", 401),
        ([(b"Authorization", b"Bearer \xfc\xfc")], b"/me/", b"GET", 401),
        ([(b"Cookie", b"token=\xff\xfe")], b"/me/", b"GET", 401),
        ([(b"token", b"\xff")], b"/logout/", b"POST", 200),
        ([(b"Cookie", b"token=\xff; refresh_token=\xfe")], b"/logout/", b"POST", 200),
        ([(b"Authorization", b"Bearer \xff")], b"/metrics", b"GET", 401),
        ([(b"Authorization", b"bearer " + METRICS_TOKEN.encode())], b"/metrics", b"GET", 200),
    ],
)
def test_credentials_that_are_not_utf_8_are_refused_like_any_bad_one(
    redis_server: RedisServer,
    headers: list[tuple[bytes, bytes]],
    path: bytes,
    method: bytes,
    expected: int,
) -> None:
    running = start_service({"REDIS_URL": redis_server.url, "METRICS_TOKEN": METRICS_TOKEN})
    try:
        answer = send_raw(running.url, build(method, path, headers))
    finally:
        running.stop()
    assert answer.status == expected, answer.raw[:300]
    assert answer.body.startswith(b"{") or path == b"/metrics"


def test_a_csrf_value_that_is_not_utf_8_is_a_403(redis_server: RedisServer) -> None:
    redis_server.client().flushall()
    running = start_service({"REDIS_URL": redis_server.url})
    try:
        token = running.user("alice")
        body = b'{"text": "hi"}'
        request = build(
            b"POST",
            b"/message/",
            [(b"Cookie", b"token=" + token.encode()), (b"X-CSRF-Token", b"\xff\xfe")],
            body,
        )
        answer = send_raw(running.url, request)
    finally:
        running.stop()
    assert answer.status == 403, answer.raw[:300]
    assert json.loads(answer.body)["error"] == "csrf_failed"
