"""Request limits, security headers and the bounded password hasher."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any

import pytest
from sanic.response import JSONResponse

from api.app import create_app
from api.hashing import HASH_THREAD_NICENESS, HasherBusy, PasswordHasher
from api.responses import json
from api.settings import Settings
from storage import keys
from storage.connection import Client, create_memory_redis
from tests.conftest import Api


def test_oversized_body_is_json_413(api: Api) -> None:
    body = b'{"text": "' + b"x" * 70_000 + b'"}'
    response = api.post("/signup/", content=body, headers={"Content-Type": "application/json"})
    assert response.status == 413
    assert response.json["error"] == "payload_too_large"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/healthz"),
        ("get", "/nowhere"),
        ("get", "/me/"),
        ("put", "/me/"),
        ("post", "/signup/"),
    ],
)
def test_every_response_has_nosniff_and_a_request_id(api: Api, method: str, path: str) -> None:
    response = api.request(method, path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert len(response.headers["x-request-id"]) == 16


def test_token_responses_are_not_stored(api: Api) -> None:
    token = api.user("alice")
    assert api.post("/logout/", headers={"token": token}).headers["cache-control"] == "no-store"


@pytest.mark.anyio
async def test_hasher_runs_at_most_threads_plus_queue_and_refuses_the_rest() -> None:
    hasher = PasswordHasher(10, threads=1, queue_limit=2)
    try:
        results = await asyncio.gather(
            *(hasher.hash(f"password {n}") for n in range(5)), return_exceptions=True
        )
    finally:
        hasher.close()
    assert sum(isinstance(r, str) for r in results) == 3
    assert sum(isinstance(r, HasherBusy) for r in results) == 2


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priority is Linux's")
async def test_hashing_threads_run_at_a_lower_priority_than_the_event_loop() -> None:
    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    loop_niceness = niceness()
    hasher = PasswordHasher(4, threads=1, queue_limit=0)
    try:
        assert await hasher._run(niceness) == max(loop_niceness, HASH_THREAD_NICENESS)
    finally:
        hasher.close()
    assert niceness() == loop_niceness  # the rest of the process is untouched


def test_busy_hasher_is_a_fast_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def busy(*args: object, **kwargs: object) -> bool:
        raise HasherBusy

    api.signup("alice")
    monkeypatch.setattr(PasswordHasher, "verify", busy)
    response = api.post("/login/", json={"name": "alice", "password": "password one"})
    assert response.status == 503
    assert response.json == {
        "error": "busy",
        "message": "too many logins at once, try again shortly",
    }
    assert response.headers["retry-after"] == "1"

    async def counts(client: Client) -> tuple[object, object]:
        return (
            await client.get(keys.login_failures("alice")),
            await client.get(keys.login_address_failures("127.0.0.1")),
        )

    assert api.redis(counts) == (None, None)  # nothing was checked: nothing counts


def test_server_limits_and_proxy_trust_come_from_the_settings(settings: Settings) -> None:
    app = create_app(
        settings.replace(
            request_max_size=1234,
            request_timeout=3.5,
            response_timeout=4.5,
            keep_alive_timeout=2.5,
            graceful_shutdown_timeout=6.5,
            proxies_count=2,
            forwarded_secret="proxy-secret-0123456789-abcdefghijklmnop",
        ),
        redis=create_memory_redis(),
    )
    assert app.config.REQUEST_MAX_SIZE == 1234
    assert app.config.REQUEST_TIMEOUT == 3.5
    assert app.config.RESPONSE_TIMEOUT == 4.5
    assert app.config.KEEP_ALIVE_TIMEOUT == 2.5
    assert app.config.GRACEFUL_SHUTDOWN_TIMEOUT == 6.5
    assert app.config.PROXIES_COUNT == 2
    assert app.config.FORWARDED_SECRET == "proxy-secret-0123456789-abcdefghijklmnop"


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("nosniff", b"nosniff"),
        ("split\r\nSet-Cookie: stolen=1", b"splitSet-Cookie: stolen=1"),
        ("line\nfeed", b"linefeed"),
        ("nul\x00byte", b"nulbyte"),
        ("tab\tkept", b"tab\tkept"),
        ("caf\u00e9", "caf\u00e9".encode()),
    ],
)
def test_header_values_lose_cr_lf_and_nul_as_with_sanic(value: str, sent: bytes) -> None:
    ours = dict(json({}, headers={"X-Test": value}).processed_headers)[b"X-Test"]
    sanics = dict(JSONResponse({}, headers={"X-Test": value}).processed_headers)[b"X-Test"]
    assert ours == sanics == sent


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Request-ID": "abc-123", "X-Content-Type-Options": "nosniff"},
        {"X-Split\r\nName": "value", "X-Nul\x00": "a"},
        {"X-Number": 7, "X-Text": "caf\u00e9"},
        {"Content-Type": "text/plain"},
    ],
)
def test_every_header_is_encoded_as_sanic_encodes_it(headers: dict[str, Any]) -> None:
    ours = list(json({}, headers=headers).processed_headers)
    assert ours == list(JSONResponse({}, headers=headers).processed_headers)
    assert not any(c in name + value for name, value in ours for c in b"\r\n\x00")
