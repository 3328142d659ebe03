"""Several server processes over one store: sessions, messages and limits are shared."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.processes import RedisClusterServers, RedisServer, Service, start_service

pytestmark = pytest.mark.redis_server

ALICE = {"name": "alice", "password": "password one"}


@pytest.fixture(params=["redis", "cluster"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment naming the store: the private Redis, or the private cluster."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        server.client().flushall()
        return {"REDIS_URL": server.url}
    cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
    cluster.flush()
    return {"REDIS_URL": cluster.url, "REDIS_CLUSTER": "true"}


@pytest.fixture
def pair(store_env: dict[str, str]) -> Iterator[tuple[Service, Service]]:
    env = {**store_env, "LOGIN_MAX_FAILURES": "4"}
    first = start_service(env)
    try:
        second = start_service(env)
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


def test_logout_through_one_instance_is_refused_by_the_other(pair: tuple[Service, Service]) -> None:
    a, b = pair
    assert a.call("POST", "/signup/", ALICE)[0] == 201
    token = a.login(**ALICE)
    assert b.call("GET", "/me/", headers={"token": token})[:2] == (200, {"name": "alice"})
    assert b.call("POST", "/logout/", headers={"token": token})[0] == 200
    assert a.call("GET", "/me/", headers={"token": token})[1]["error"] == "token_revoked"


def test_logout_everywhere_through_one_applies_to_the_other(pair: tuple[Service, Service]) -> None:
    a, b = pair
    a.call("POST", "/signup/", ALICE)
    on_a, on_b = a.login(**ALICE), b.login(**ALICE)
    assert a.call("POST", "/logout/all/", headers={"token": on_a})[0] == 200
    assert b.call("GET", "/me/", headers={"token": on_b})[1]["error"] == "token_revoked"
    assert b.call("GET", "/me/", headers={"token": b.login(**ALICE)})[0] == 200


def test_messages_sent_through_one_are_read_through_the_other(
    pair: tuple[Service, Service],
) -> None:
    a, b = pair
    a.call("POST", "/signup/", ALICE)
    token = b.login(**ALICE)
    assert a.call("POST", "/message/", {"text": "via a"}, {"token": token})[0] == 201
    assert b.call("POST", "/message/", {"text": "via b"}, {"token": token})[0] == 201
    reply = b.call("POST", "/message/", {"text": "last 5"}, {"token": token})[1]
    assert reply == {"2": "via a", "1": "via b"}


def test_throttling_counts_attempts_through_both(pair: tuple[Service, Service]) -> None:
    a, b = pair
    a.call("POST", "/signup/", ALICE)
    wrong = {**ALICE, "password": "wrong password"}
    for service in (a, b, a, b):
        assert service.call("POST", "/login/", wrong)[0] == 401
    assert a.call("POST", "/login/", ALICE)[0] == 429
    assert b.call("POST", "/login/", ALICE)[0] == 429


def test_workers_share_one_generated_secret(store_env: dict[str, str]) -> None:
    service = start_service({**store_env, "WORKERS": "2", "JWT_SECRET": ""})
    try:
        service.call("POST", "/signup/", ALICE)

        def login_then_me(_: int) -> int:
            return service.call("GET", "/me/", headers={"token": service.login(**ALICE)})[0]

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(login_then_me, range(40)))
    finally:
        output = service.stop()
    assert statuses == [200] * 40
    assert output.count("Worker ready") == 2
    assert "JWT_SECRET is unset: generated" in output
