"""Fixtures: settings, storage backends (fakeredis and a private real redis-server), API clients."""

from __future__ import annotations

import ast
import asyncio
import builtins
import contextlib
import gc
import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import fakeredis
import httpx
import jwt
import pytest
from sanic import Sanic
from sanic.server import AsyncioServer

from api.app import create_app
from api.security import issue_token
from api.server import BoundedHttpProtocol
from api.services import Services
from api.settings import Settings
from storage import keys
from storage.connection import Client, create_memory_redis, create_redis
from support.processes import (
    LOOPBACK,
    PASSWORD,
    SECRET,
    RedisClusterServers,
    RedisServer,
    Service,
    free_port,
    spawn_redis,
    start_cluster,
    start_service,
    wait_for_ping,
)

T = TypeVar("T")
# Many apps of one name in this process: Sanic's own test mode allows it.
Sanic.test_mode = True

# CPython 3.11 keeps the depth of the syntax tree being built (by ast.parse, or compile() with
# PyCF_ONLY_AST) in state that every thread shares: a thread that parses while another's parse is
# paused (a garbage collection running a finalizer mid-parse lets the GIL go) resets it, and the
# paused one fails with "SystemError: AST constructor recursion depth mismatch"
# (python/cpython#106905). A service parses in one thread only; the tests serve many apps, each in
# a thread of its own, and Sanic parses source when a server starts (TouchUp, the router) and when
# sanic-ext registers its route, 3.11's traceback module parses each line it underlines, and
# anyio's lazy imports parse their module on first use in whichever thread. So in this process
# every compile() to a syntax tree waits for the one under way, with garbage collection off
# meanwhile: a finalizer run by a collection mid-parse could parse in the same thread (a pending
# Task destroyed logs its traceback, which parses), which no reentrant lock prevents. The two
# tests of tests/test_harness.py interleave parses both ways to prove it must.
PARSE_LOCK = threading.RLock()
UNLOCKED_PARSE = ast.parse
_unlocked_compile = builtins.compile


def _compile_alone(
    source: Any, filename: Any, mode: str, flags: int = 0, *args: Any, **kw: Any
) -> Any:
    if not flags & ast.PyCF_ONLY_AST:
        return _unlocked_compile(source, filename, mode, flags, *args, **kw)
    with PARSE_LOCK:
        collecting = gc.isenabled()
        gc.disable()  # no finalizer runs mid-parse: one that parses would nest in this thread
        try:
            return _unlocked_compile(source, filename, mode, flags, *args, **kw)
        finally:
            if collecting:
                gc.enable()


builtins.compile = _compile_alone


def _require_redis_binaries() -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        message = "redis-server and redis-cli are not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must install them)")
        pytest.skip(message)


def start_redis_server(workdir: Path, *options: str, password: str | None = None) -> RedisServer:
    """Start a redis-server on a free port; skip (or, in CI, fail) when there is no binary."""
    _require_redis_binaries()
    port = free_port()
    if password is not None:
        options += ("--requirepass", password)
    server = RedisServer(port, spawn_redis(port, workdir, *options), workdir, options, password)
    wait_for_ping(server.url)
    return server


def start_redis_cluster(workdir: Path, masters: int = 3) -> RedisClusterServers:
    """A private Redis Cluster; skip (or, in CI, fail) when there is no binary."""
    _require_redis_binaries()
    return start_cluster(workdir, masters)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """One private 3-master Redis Cluster for the whole session; tests flush it before use."""
    servers = start_redis_cluster(tmp_path_factory.mktemp("cluster"))
    yield servers
    servers.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may stop or freeze (SIGSTOP) at will."""
    server = start_redis_server(tmp_path)
    yield server
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGCONT)  # a frozen server cannot stop
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server for the whole session; tests flush it before use."""
    server = start_redis_server(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def anyio_backend() -> str:
    """`async def` tests (marked `anyio`) run on asyncio, as the service does."""
    return "asyncio"


@pytest.fixture
def settings() -> Settings:
    """Fast test settings (bcrypt at its minimum cost) with a fixed secret."""
    return Settings(bcrypt_rounds=4, jwt_secret=SECRET, message_history_limit=50)


BACKENDS = [
    "fakeredis",
    pytest.param("redis", marks=pytest.mark.redis_server),
    pytest.param("cluster", marks=pytest.mark.redis_server),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Callable[[], Client]:
    """A factory of async clients on an empty store: fakeredis, the private redis-server, or
    the private 3-master cluster."""
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()
        return lambda: create_memory_redis(server)
    if request.param == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        cluster.flush()
        return lambda: create_redis(cluster.url, cluster=True)
    real: RedisServer = request.getfixturevalue("redis_server")
    real.client().flushall()
    return lambda: create_redis(real.url)


class Reply:
    """An answer as the tests read it: status, JSON body, headers, text and raw content."""

    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.headers = response.headers
        self.content = response.content
        self.text = response.text

    @property
    def json(self) -> Any:
        """The body, decoded as JSON."""
        return json.loads(self.content)


class AppServer:
    """An app served on a free loopback port by an event loop in a thread of its own.

    It goes through the lifecycle Sanic's low-level server API documents (startup, the
    before/after start events, and the same on the way down), so listeners run as in production.
    """

    def __init__(self, app: Sanic[Any, Any]) -> None:
        self.app = app
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._server: AsyncioServer = self.run(self._start())

    async def _start(self) -> AsyncioServer:
        server = await self.app.create_server(
            host=LOOPBACK,
            port=self.port,
            return_asyncio_server=True,
            protocol=BoundedHttpProtocol,  # what run.py serves with
        )
        assert server is not None
        await server.startup()
        await server.before_start()
        await server.after_start()
        return server

    def run(self, action: Awaitable[T]) -> T:
        """Run `action` on the server's loop and wait for its result."""

        async def wrapped() -> T:
            return await action

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout=120)

    def close(self) -> None:
        """Run the stop events, close the server and its loop."""

        async def stop() -> None:
            await self._server.before_stop()
            self._server.close()
            await self._server.wait_closed()
            # As Sanic's own shutdown does: connections still open (keep-alive, streams,
            # WebSockets) are closed while the loop runs, not found open once it is closed.
            for connection in list(self._server.connections):
                if not connection.close_if_idle():
                    connection.close()
            await asyncio.sleep(0.05)
            await self._server.after_stop()

        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class Api:
    """A running app under test, with `get`/`post` returning the response only."""

    def __init__(
        self, server: AppServer, settings: Settings, backend: Callable[[], Client]
    ) -> None:
        self._server = server
        self._backend = backend
        self.settings = settings
        self.base = f"http://{LOOPBACK}:{server.port}"
        # No cookie jar: a test sends exactly the cookies it names.
        self._http = httpx.Client(base_url=self.base, timeout=60, cookies=None)

    @property
    def app(self) -> Sanic[Any, Any]:
        """The app under test."""
        return self._server.app

    @property
    def services(self) -> Services:
        """The running app's services (to watch or slow down one of them)."""
        found: Services = self.app.ctx.services
        return found

    def run(self, action: Awaitable[T]) -> T:
        """Run `action` on the app's own event loop (e.g. requests sent concurrently)."""
        return self._server.run(action)

    async def post_async(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        """POST `path` from a client of its own; return (status, JSON body, headers)."""
        async with httpx.AsyncClient() as client:
            response = await client.post(self.base + path, json=body, headers=headers)
        return response.status_code, response.json(), response.headers

    def redis(self, action: Callable[[Client], Awaitable[T]]) -> T:
        """Run `action` with a client on the app's store (to inspect or age its keys)."""
        return self._server.run(action(self._backend()))

    def request(self, method: str, path: str, *, cookie: str | None = None, **kwargs: Any) -> Reply:
        """Send a request (with `cookie` as the raw Cookie header); return the answer."""
        if cookie is not None:
            kwargs["headers"] = {**kwargs.get("headers", {}), "Cookie": cookie}
        response = self._http.request(method.upper(), path, **kwargs)
        self._http.cookies.clear()
        return Reply(response)

    def get(self, path: str, **kwargs: Any) -> Reply:
        """GET `path`."""
        return self.request("get", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Reply:
        """POST `path`."""
        return self.request("post", path, **kwargs)

    def close(self) -> None:
        """Stop the app and close the client."""
        self._http.close()
        self._server.close()

    def generation(self, name: str = "alice") -> int:
        """The user's session generation (random from signup on), for hand-made tokens."""

        async def read(client: Client) -> object:
            return await client.hget(keys.user(name), "generation")

        return int(str(self.redis(read)))

    def signup(self, name: str = "alice", password: str = PASSWORD) -> Reply:
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

    def send(self, token: str, text: str) -> Reply:
        """POST a message with a header token."""
        return self.post("/message/", json={"text": text}, headers={"token": token})


@pytest.fixture
def make_api(
    backend: Callable[[], Client],
) -> Iterator[Callable[[Settings], Api]]:
    """Start apps (with given settings) on the backend under test; stop them afterwards."""
    started: list[Api] = []

    def make(settings: Settings) -> Api:
        started.append(Api(AppServer(create_app(settings, redis=backend())), settings, backend))
        return started[-1]

    yield make
    for api in started:
        api.close()


@pytest.fixture
def api(make_api: Callable[[Settings], Api], settings: Settings) -> Api:
    """The app with the default test settings."""
    return make_api(settings)


def claims_of(**overrides: object) -> dict[str, object]:
    """A full, valid set of token claims for alice, valid for an hour; None drops a claim."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "alice",
        "name": "alice",
        "iat": now,
        "exp": now + 3600,
        "jti": "a-jti",
        "gen": 0,
        "csrf": "a-csrf",
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def csrf_of(token: str) -> str:
    """The CSRF value a token carries (the same as its `csrf_token` cookie)."""
    value: str = jwt.decode(token, options={"verify_signature": False})["csrf"]
    return value


def set_cookies(response: Reply) -> dict[str, str]:
    """The response's Set-Cookie headers by cookie name."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


def cookie_value(response: Reply, name: str) -> str:
    """The value a response sets the cookie `name` to."""
    return set_cookies(response)[name].split(";", 1)[0].split("=", 1)[1]


def token_for(name: str, *, ttl: int = 3600, now: int | None = None, generation: int = 0) -> str:
    """A correctly signed token made without logging in (e.g. already expired)."""
    token, _ = issue_token(SECRET, name, generation, ttl, now=now)
    return token


class TcpProxy:
    """A loopback TCP proxy to `target_port` that can drop every connection through it and refuse
    new ones, as a network going down does, then come back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.up = True
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((LOOPBACK, self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        """The proxy's address, as a base URL."""
        return f"http://{LOOPBACK}:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                server = socket.create_connection((LOOPBACK, self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def down(self) -> None:
        """Drop every connection and refuse new ones."""
        self.up = False
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for end in pair:
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    def close(self) -> None:
        """Stop listening and drop everything."""
        self.down()
        self._listener.close()


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Debian's chromium (or CHROMIUM); skip (or, in CI, fail) when there is none."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if path is None:
        message = "no chromium installed (apt-get install chromium; CHROMIUM=path to use another)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must install it)")
        pytest.skip(message)
    return path


@dataclass
class BrowserPage:
    """A Chromium page that may reach `origin` only; what else it asked for, and every console
    error and policy violation, are recorded for the test to check."""

    page: Any
    origin: str
    blocked: list[str]
    errors: list[str]


@contextlib.contextmanager
def open_browser(origin: str) -> Iterator[Callable[[], BrowserPage]]:
    """Headless Chromium: a function that opens a fresh page (in a context of its own: its own
    cookies) with every request outside `origin` refused."""
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)

        def new_page() -> BrowserPage:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            blocked: list[str] = []
            errors: list[str] = []

            def only_the_service(route: Any) -> None:
                url: str = route.request.url
                if url.startswith(origin + "/") or url == origin:
                    route.continue_()
                else:
                    blocked.append(url)
                    route.abort()

            context.route("**/*", only_the_service)
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            return BrowserPage(page, origin, blocked, errors)

        try:
            yield new_page
        finally:
            browser.close()


@pytest.fixture
def browser_page(service_for_browser: Service) -> Iterator[BrowserPage]:
    """A fresh headless Chromium page on the service, with every other request refused."""
    with open_browser(service_for_browser.url) as new_page:
        yield new_page()


@pytest.fixture
def service_for_browser(redis_server: RedisServer) -> Iterator[Service]:
    """The service on the private redis-server (emptied first), for a browser to use."""
    redis_server.client().flushall()
    running = start_service({"REDIS_URL": redis_server.url})
    yield running
    running.stop()
