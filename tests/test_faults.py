"""Redis going away or hanging under a running service: fast 503s, then recovery by itself."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from support.processes import RedisServer, Service, start_service

pytestmark = pytest.mark.redis_server

UNAVAILABLE = {
    "error": "storage_unavailable",
    "message": "the data store is unavailable, try again shortly",
}
CREDENTIALS = {"name": "alice", "password": "password one"}


@pytest.fixture
def redis(private_redis: RedisServer) -> RedisServer:
    return private_redis


@pytest.fixture
def service(redis: RedisServer) -> Iterator[Service]:
    running = start_service({"REDIS_URL": redis.url})
    yield running
    running.stop()


def _assert_unavailable_fast(service: Service, token: str) -> None:
    for method, path, body in [
        ("POST", "/message/", {"text": "hi"}),
        ("POST", "/message/", {"text": "last 5"}),
        ("GET", "/messages/", None),
        ("GET", "/me/", None),
        ("POST", "/logout/", None),  # never claims success without writing the revocation
        ("POST", "/signup/", {"name": "bob", "password": "password two"}),
        ("POST", "/login/", CREDENTIALS),
    ]:
        started = time.monotonic()
        status, reply, headers = service.call(method, path, body, {"token": token})
        elapsed = time.monotonic() - started
        assert (status, reply) == (503, UNAVAILABLE), (method, path)
        assert headers["Retry-After"] == "1"
        assert elapsed < 2.0, (method, path, elapsed)
    assert service.call("GET", "/readyz")[:2] == (503, UNAVAILABLE)
    assert service.call("GET", "/healthz")[:2] == (200, {"status": "ok"})


def _wait_ready(service: Service, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while service.call("GET", "/readyz")[0] != 200:
        assert time.monotonic() < deadline, "the service did not recover"
        time.sleep(0.1)


def test_redis_stopped_then_restarted(service: Service, redis: RedisServer) -> None:
    token = service.user(**CREDENTIALS)
    redis.stop()
    _assert_unavailable_fast(service, token)
    redis.start()  # an empty Redis: the old user is gone, so start over
    _wait_ready(service)
    token = service.user(**CREDENTIALS)
    assert service.call("POST", "/message/", {"text": "back"}, {"token": token})[0] == 201
    assert service.call("POST", "/logout/", headers={"token": token})[0] == 200
    assert service.call("GET", "/me/", headers={"token": token})[0] == 401


def test_redis_hanging_then_resumed(service: Service, redis: RedisServer) -> None:
    token = service.user(**CREDENTIALS)
    redis.process.send_signal(signal.SIGSTOP)
    try:
        _assert_unavailable_fast(service, token)
    finally:
        redis.process.send_signal(signal.SIGCONT)
    _wait_ready(service)
    # A write that timed out has an unknown outcome: Redis may still run the commands it had
    # received when it resumes (the logout's revocation, the message). So: a new token, and only
    # the newest message is certain.
    token = service.login(**CREDENTIALS)
    assert service.call("POST", "/message/", {"text": "back"}, {"token": token})[0] == 201
    assert service.call("POST", "/message/", {"text": "last 1"}, {"token": token})[1] == {
        "1": "back"
    }


REFUSALS: dict[str, list[tuple[str, ...]]] = {
    "OOM": [("CONFIG", "SET", "maxmemory", "1")],
    "NOREPLICAS": [("CONFIG", "SET", "min-replicas-to-write", "1")],
    "READONLY": [("REPLICAOF", "127.0.0.1", "1")],  # a replica of a master that never answers
}
RESTORE = [
    ("CONFIG", "SET", "maxmemory", "0"),
    ("CONFIG", "SET", "min-replicas-to-write", "0"),
    ("REPLICAOF", "NO", "ONE"),
]


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_redis_refusing_writes_is_a_503_logged_once(
    service: Service, redis: RedisServer, refusal: str
) -> None:
    token = service.user(**CREDENTIALS)
    spare = service.login(**CREDENTIALS)
    with redis.client() as client:
        for command in REFUSALS[refusal]:
            client.execute_command(*command)
    try:
        for method, path, body in [
            ("POST", "/message/", {"text": "hi"}),
            ("POST", "/logout/all/", None),
            ("POST", "/signup/", {"name": "bob", "password": "password two"}),
            ("POST", "/login/", {"name": "alice", "password": "a wrong password"}),
        ]:
            status, reply, headers = service.call(method, path, body, {"token": token})
            assert (status, reply) == (503, UNAVAILABLE), (method, path)
            assert headers["Retry-After"] == "1"
        assert service.call("GET", "/readyz")[:2] == (503, UNAVAILABLE)
        assert service.call("GET", "/healthz")[:2] == (200, {"status": "ok"})
        # Reads need no write: they still work, and do not end the outage.
        assert service.call("GET", "/me/", None, {"token": token})[:2] == (200, {"name": "alice"})
        # A logout never claims success without ending the session. Ending it deletes keys,
        # which a Redis whose memory is full still allows; a replica or too few replicas do not.
        status, reply, _ = service.call("POST", "/logout/", None, {"token": spare})
        if refusal == "OOM":
            assert status == 200
            assert service.call("GET", "/me/", None, {"token": spare})[0] == 401
        else:
            assert (status, reply) == (503, UNAVAILABLE)
            assert service.call("GET", "/me/", None, {"token": spare})[0] == 200
        assert service.call("POST", "/message/", {"text": "hi"}, {"token": token})[0] == 503
        assert "available again" not in service.output
    finally:
        with redis.client() as client:
            for command in RESTORE:
                client.execute_command(*command)
    assert service.call("GET", "/readyz")[:2] == (200, {"status": "ready"})
    assert service.call("POST", "/message/", {"text": "back"}, {"token": token})[0] == 201
    # The end of the outage is told by the first success a second after the last failure.
    deadline = time.monotonic() + 10
    while "available again" not in service.output and time.monotonic() < deadline:
        service.call("GET", "/readyz")
        time.sleep(0.2)
    output = service.stop()
    assert "Traceback" not in output
    assert "internal_error" not in output
    assert output.count(f"WARNING storage: Redis is unavailable ({refusal})") == 1
    assert output.count("INFO storage: Redis is available again") == 1
