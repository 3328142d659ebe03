"""The service as `make run` starts it, in its own process, over HTTP and a real Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest

from support.processes import ROOT, SECRET, RedisServer, Service, start_service
from tests.conftest import csrf_of

pytestmark = pytest.mark.redis_server

CREDENTIALS = {"name": "alice", "password": "password one"}


@pytest.fixture
def service(redis_server: RedisServer) -> Iterator[Service]:
    redis_server.client().flushall()
    running = start_service({"REDIS_URL": redis_server.url, "MESSAGE_HISTORY_LIMIT": "100"})
    yield running
    running.stop()


def test_redis_holds_hashes_capped_lists_and_expiring_families(
    service: Service, redis_server: RedisServer
) -> None:
    token = service.user(**CREDENTIALS)
    for n in range(120):
        assert service.call("POST", "/message/", {"text": f"m{n}"}, {"token": token})[0] == 201

    redis = redis_server.client()
    assert redis.type("user:{alice}") == "hash"
    assert set(redis.hgetall("user:{alice}")) == {
        "password_hash",
        "created_at",
        "generation",
        "seq",  # the number of the newest message that entered the history
    }
    assert redis.hget("user:{alice}", "seq") == "120"
    assert redis.type("messages:{alice}") == "list"
    assert redis.llen("messages:{alice}") == 100
    # The login's family lives as long as its token could (plus the leeway), and so does the
    # index of the user's families.
    (family,) = redis.keys("family:{alice}:*")
    assert 10800 <= redis.ttl(family) <= 10810
    assert redis.zrange("families:{alice}", 0, -1) == [str(family).rsplit(":", 1)[1]]
    # (Its expiry is the family's, rounded up to the second: a login's score has its milliseconds.)
    assert 10800 <= redis.ttl("families:{alice}") <= 10811
    assert not any(token in str(key) for key in redis.keys("*"))

    assert service.call("POST", "/logout/", headers={"token": token})[0] == 200
    assert redis.keys("family:{alice}:*") == []
    # The token ended with its family, and is on the denylist for as long as it could live.
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    assert redis.keys("revoked:*") == [f"revoked:{{alice}}:{jti}"]
    assert 10800 <= redis.ttl(f"revoked:{{alice}}:{jti}") <= 10810
    assert redis.zrange("denylist:{alice}", 0, -1) == [jti]


def test_parallel_messages_are_all_stored(service: Service, redis_server: RedisServer) -> None:
    token = service.user(**CREDENTIALS)

    def send(n: int) -> int:
        return service.call("POST", "/message/", {"text": f"p{n}"}, {"token": token})[0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(send, range(80)))
    assert statuses == [201] * 80
    stored = redis_server.client().lrange("messages:{alice}", 0, -1)
    assert sorted(json.loads(element)["text"] for element in stored) == sorted(
        f"p{n}" for n in range(80)
    )


def test_readyz_reports_redis(service: Service) -> None:
    status, body, _ = service.call("GET", "/readyz")
    assert (status, body) == (200, {"status": "ready"})


def test_memory_store_when_asked() -> None:
    running = start_service({"REDIS_URL": "memory://"})
    try:
        token = running.user(**CREDENTIALS)
        assert running.call("POST", "/message/", {"text": "hi"}, {"token": token})[0] == 201
        assert running.call("POST", "/message/", {"text": "last 1"}, {"token": token})[1] == {
            "1": "hi"
        }
    finally:
        output = running.stop()
    assert "embedded in-process store" in output
    assert SECRET not in output


def test_short_secret_refuses_to_start() -> None:
    result = subprocess.run(
        [sys.executable, "run.py"],
        cwd=ROOT,
        env={"JWT_SECRET": "too-short", "REDIS_URL": "memory://", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "JWT_SECRET" in result.stderr
    assert "too-short" not in result.stderr


def test_logs_never_contain_tokens_passwords_or_cookies(redis_server: RedisServer) -> None:
    running = start_service({"REDIS_URL": redis_server.url, "LOG_LEVEL": "DEBUG"})
    password = "a very private password"
    credentials = {"name": "logcheck", "password": password}
    try:
        assert running.call("POST", "/signup/", credentials)[0] == 201
        token = running.call("POST", "/login/", credentials)[1]["token"]
        csrf = csrf_of(token)
        cookie = {"Cookie": f"token={token}; csrf_token={csrf}", "X-CSRF-Token": csrf}
        assert running.call("POST", "/message/", {"text": "hi"}, cookie)[0] == 201
        assert running.call("GET", "/messages/?limit=5", headers={"token": token})[0] == 200
        assert running.call("POST", "/message/", {"text": "x"}, {"token": token + "x"})[0] == 401
        assert (
            running.call("POST", "/login/", {**credentials, "password": password + "!"})[0] == 401
        )
        assert (
            running.call("POST", "/logout/", headers={"Authorization": f"Bearer {token}"})[0] == 200
        )
    finally:
        output = running.stop()
    assert "POST /login/ 200" in output
    assert "POST /message/ 201" in output
    assert "GET /messages/ 200" in output
    for secret in (token, token.split(".")[2], password, csrf, SECRET):
        assert secret not in output
