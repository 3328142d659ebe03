"""Live delivery as processes and under faults: two workers and two instances, the subscriber's
connection killed, Redis restarted, a resharded slot, SIGTERM."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.processes import RedisClusterServers, RedisServer, Service, start_service
from tests.conftest import start_redis_server
from tests.test_live import SseClient, texts

pytestmark = pytest.mark.redis_server


def _sse(service: Service, token: str) -> SseClient:
    return SseClient(f"{service.url}/events/", {"token": token}).start()


def _send(service: Service, token: str, text: str, to: str) -> None:
    status, body, _ = service.call("POST", "/message/", {"text": text, "to": to}, {"token": token})
    assert status == 201, body


@pytest.fixture(params=["redis", "cluster"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.client().flushall()
        return {"REDIS_URL": server.url}
    cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
    cluster.flush()
    return {"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true"}


def test_every_stream_hears_on_two_workers_and_two_instances(store_env: dict[str, str]) -> None:
    first = start_service({**store_env, "WORKERS": "2"})
    second = start_service(store_env)
    try:
        alice, bob = first.user("alice"), first.user("bob")
        # New connections: the kernel spreads them over the first service's two workers.
        streams = [_sse(first, bob) for _ in range(4)] + [_sse(second, bob)]
        _send(second, alice, "one", "bob")
        _send(first, alice, "two", "bob")
        for stream in streams:
            assert texts(stream.take(2)) == ["one", "two"]
    finally:
        first.stop()
        second.stop()


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own that keeps what it acknowledged across a restart."""
    server = start_redis_server(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    yield server
    server.stop()


def test_a_lost_subscriber_connection_resubscribes_and_misses_nothing(
    durable_redis: RedisServer,
) -> None:
    service = start_service({"REDIS_URL": durable_redis.url})
    try:
        alice, bob = service.user("alice"), service.user("bob")
        stream = _sse(service, bob)
        _send(service, alice, "before", "bob")
        assert texts(stream.take(1)) == ["before"]
        client = durable_redis.client()
        client.client_kill_filter(_type="pubsub")
        for n in range(5):  # published while the subscriber has no connection
            _send(service, alice, f"m{n}", "bob")
        assert texts(stream.take(5, timeout=10)) == [f"m{n}" for n in range(5)]
        # Redis itself goes away and comes back (with what it acknowledged).
        durable_redis.stop()
        deadline = time.monotonic() + 10
        while service.call("GET", "/readyz")[0] != 503 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.call("GET", "/readyz")[0] == 503
        durable_redis.start()
        deadline = time.monotonic() + 15
        while service.call("GET", "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.call("GET", "/readyz")[0] == 200
        _send(service, alice, "after", "bob")
        assert texts(stream.take(1, timeout=10)) == ["after"]
        assert stream.events.empty()
    finally:
        output = service.stop()
    assert "the subscriber lost Redis" in output
    assert "Traceback" not in output


def test_sigterm_closes_streams_at_once(redis_server: RedisServer) -> None:
    redis_server.client().flushall()
    service = start_service({"REDIS_URL": redis_server.url, "GRACEFUL_SHUTDOWN_TIMEOUT": "10"})
    token = service.user("alice")
    stream = _sse(service, token)
    started = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    events = stream.closed_after(10)
    assert time.monotonic() - started < 3  # not the 10 s of the grace period
    assert all(kind != "end" for kind, _, _ in events)  # no `end`: the client reconnects
    service.process.wait(timeout=15)
