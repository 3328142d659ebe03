"""Fixtures: settings, storage backends (fakeredis and a private real redis-server), API clients."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import fakeredis
import jwt
import pytest
import redis
from redis.asyncio import Redis
from sanic_testing.reusable import ReusableClient
from sanic_testing.testing import TestingResponse

from api.app import create_app
from api.security import issue_token
from api.settings import Settings
from storage.connection import create_memory_redis, create_redis

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
PASSWORD = "correct horse battery"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """A private redis-server process started for the tests."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    @property
    def url(self) -> str:
        """The URL of database 0 on this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A synchronous client, for setting up and inspecting state."""
        return redis.Redis.from_url(self.url, decode_responses=True)

    def stop(self) -> None:
        """Stop the server and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def start(self) -> None:
        """(Re)start the server on the same port and wait until it answers."""
        self.process = _spawn_redis(self.port, self.workdir)
        _wait_for_ping(self.url)


def _spawn_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary is not None
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    args += ["no", "--dir", str(workdir)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_for_ping(url: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
    try:
        while True:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


def start_redis_server(workdir: Path) -> RedisServer:
    """Start a redis-server on a free port; skip (or, in CI, fail) when there is no binary."""
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must install it)")
        pytest.skip(message)
    port = free_port()
    server = RedisServer(port, _spawn_redis(port, workdir), workdir)
    _wait_for_ping(server.url)
    return server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the whole session; tests flush it before use."""
    server = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def settings() -> Settings:
    """Fast test settings (bcrypt at its minimum cost) with a fixed secret."""
    return Settings(bcrypt_rounds=4, jwt_secret=SECRET, message_history_limit=50)


BACKENDS = ["fakeredis", pytest.param("redis", marks=pytest.mark.redis_server)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Callable[[], Redis]:
    """A factory of async clients on an empty store: fakeredis, or the private redis-server."""
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()
        return lambda: create_memory_redis(server)
    real: RedisServer = request.getfixturevalue("redis_server")
    real.client().flushall()
    return lambda: create_redis(real.url)


class Api:
    """A running app under test, with `get`/`post` returning the response only."""

    def __init__(
        self, client: ReusableClient, settings: Settings, backend: Callable[[], Redis]
    ) -> None:
        self._client = client
        self._backend = backend
        self.settings = settings

    def redis(self, action: Callable[[Redis], Awaitable[T]]) -> T:
        """Run `action` with a client on the app's store (to inspect or age its keys)."""
        result: T = self._client._loop.run_until_complete(action(self._backend()))
        return result

    def request(
        self, method: str, path: str, *, cookie: str | None = None, **kwargs: Any
    ) -> TestingResponse:
        """Send a request (with `cookie` as the raw Cookie header); return the response.

        The client's cookie jar is emptied after every request, so a test sends exactly the
        cookies it names.
        """
        if cookie is not None:
            kwargs["headers"] = {**kwargs.get("headers", {}), "Cookie": cookie}
        _, response = self._client._sanic_endpoint_test(
            method, uri=path, gather_request=False, **kwargs
        )
        self._client._session.cookies.clear()
        assert response is not None
        return response

    def get(self, path: str, **kwargs: Any) -> TestingResponse:
        """GET `path`."""
        return self.request("get", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> TestingResponse:
        """POST `path`."""
        return self.request("post", path, **kwargs)

    def signup(self, name: str = "alice", password: str = PASSWORD) -> TestingResponse:
        """Create a user."""
        return self.post("/signup/", json={"name": name, "password": password})

    def login(self, name: str = "alice", password: str = PASSWORD) -> str:
        """Log in an existing user; return the token."""
        response = self.post("/login/", json={"name": name, "password": password})
        assert response.status == 200, response.text
        token: str = response.json["token"]
        return token

    def user(self, name: str = "alice") -> str:
        """Sign up and log in `name`; return the token."""
        assert self.signup(name).status == 201
        return self.login(name)

    def send(self, token: str, text: str) -> TestingResponse:
        """POST a message with a header token."""
        return self.post("/message/", json={"text": text}, headers={"token": token})


@pytest.fixture
def make_api(
    backend: Callable[[], Redis],
) -> Iterator[Callable[[Settings], Api]]:
    """Start apps (with given settings) on the backend under test; stop them afterwards."""
    started: list[ReusableClient] = []

    def make(settings: Settings) -> Api:
        app = create_app(settings, redis=backend())
        client = ReusableClient(app, port=free_port())
        client.__enter__()
        started.append(client)
        return Api(client, settings, backend)

    yield make
    for client in started:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Callable[[Settings], Api], settings: Settings) -> Api:
    """The app with the default test settings."""
    return make_api(settings)


def csrf_of(token: str) -> str:
    """The CSRF value a token carries (the same as its `csrf_token` cookie)."""
    value: str = jwt.decode(token, options={"verify_signature": False})["csrf"]
    return value


def set_cookies(response: TestingResponse) -> dict[str, str]:
    """The response's Set-Cookie headers by cookie name."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


def token_for(name: str, *, ttl: int = 3600, now: int | None = None, generation: int = 0) -> str:
    """A correctly signed token made without logging in (e.g. already expired)."""
    token, _ = issue_token(SECRET, name, generation, ttl, now=now)
    return token


@dataclass
class Service:
    """The API started as `make run` starts it (`python run.py`), in its own process."""

    url: str
    process: subprocess.Popen[str]

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """Send one request; return status, decoded JSON body and headers."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), dict(error.headers)

    def stop(self) -> str:
        """SIGTERM the service, wait for it, and return everything it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            output, _ = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return output


def start_service(env: dict[str, str], *, wait: bool = True) -> Service:
    """Run `run.py` with `env` over a clean environment on a free port; wait until it answers."""
    port = free_port()
    full_env = {
        "PATH": os.environ["PATH"],
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "BCRYPT_ROUNDS": "4",
        "JWT_SECRET": SECRET,
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "run.py"],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    service = Service(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 30
    while wait:
        if process.poll() is not None:
            raise AssertionError(f"service exited early:\n{service.stop()}")
        try:
            with urllib.request.urlopen(service.url + "/healthz", timeout=1):  # noqa: S310
                break
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"service did not start:\n{service.stop()}") from None
            time.sleep(0.1)
    return service
