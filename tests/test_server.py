"""The service as a process, from outside: slow clients, hang-ups, shutdown, HEAD, bad start-ups."""

from __future__ import annotations

import http.client
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from storage import keys
from support.processes import ROOT, SECRET, RedisServer, Service, free_port, start_service
from tests.conftest import Api

pytestmark = pytest.mark.redis_server


@pytest.fixture
def service(redis_server: RedisServer) -> Iterator[Service]:
    running = start_service({"REDIS_URL": redis_server.url, "REQUEST_TIMEOUT": "1"})
    yield running
    running.stop()


def _connect(service: Service) -> socket.socket:
    host, port = service.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_a_request_trickled_in_is_cut_off_after_the_request_timeout(service: Service) -> None:
    sock = _connect(service)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    answer = b""
    started = time.monotonic()
    try:
        # One header line every 0.3 s restarts Sanic's own timer each time; the whole request
        # still gets only REQUEST_TIMEOUT (1 s), so the answer comes long before 8 s are up.
        while time.monotonic() - started < 8:
            sock.sendall(f"X-Slow-{int((time.monotonic() - started) * 10)}: 1\r\n".encode())
            sock.settimeout(0.3)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                break
            answer += chunk
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()
    assert time.monotonic() - started < 8
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:200]
    assert b'"error":"request_timeout"' in answer


def test_a_client_hanging_up_is_no_server_error(redis_server: RedisServer) -> None:
    running = start_service({"REDIS_URL": redis_server.url, "BCRYPT_ROUNDS": "14"})
    try:
        sock = _connect(running)
        body = b'{"name": "gone", "password": "password one"}'
        sock.sendall(
            b"POST /signup/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        time.sleep(0.3)  # the bcrypt hash at cost 14 is under way
        sock.close()
        deadline = time.monotonic() + 10
        while "client hung up" not in running.output and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        output = running.stop()
    assert "INFO api.errors: client hung up before the answer to POST /signup/" in output
    assert "POST /signup/ 499" in output
    assert "Traceback" not in output
    assert " 500 " not in output
    assert "ERROR" not in output


def test_sigterm_finishes_requests_in_flight_with_close_and_exits_once_idle(
    redis_server: RedisServer,
) -> None:
    redis_server.client().flushall()
    # A grace period far longer than the test: the process must leave as soon as it is idle.
    running = start_service(
        {
            "REDIS_URL": redis_server.url,
            "BCRYPT_ROUNDS": "14",
            "GRACEFUL_SHUTDOWN_TIMEOUT": "60",
        }
    )
    host, port = running.url.removeprefix("http://").split(":")
    idle = _connect(running)
    busy = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"connection: keep-alive" in idle.recv(4096).lower()
        with ThreadPoolExecutor(max_workers=1) as pool:

            def signup() -> tuple[int, str | None, bytes]:
                body = b'{"name": "slow", "password": "password one"}'
                busy.request("POST", "/signup/", body, {"Content-Type": "application/json"})
                response = busy.getresponse()
                return response.status, response.headers["connection"], response.read()

            answer = pool.submit(signup)
            # The signup takes its place in its window before it hashes (about a second).
            with redis_server.client() as client:
                while not client.exists(keys.address_signups("127.0.0.1")):
                    time.sleep(0.01)
            stopped = time.monotonic()
            running.process.send_signal(signal.SIGTERM)
            assert idle.recv(4096) == b""  # the idle keep-alive connection is closed
            assert answer.result(timeout=30) == (201, "close", b'{"name":"slow"}')
        assert running.process.wait(timeout=30) == 0
        assert time.monotonic() - stopped < 20
    finally:
        idle.close()
        busy.close()
        running.stop()


def test_readyz_says_shutting_down_and_closes_once_stopping(api: Api) -> None:
    api.app.ctx.stopping = True
    response = api.get("/readyz")
    assert response.status == 503
    assert response.json == {"error": "shutting_down", "message": "the service is shutting down"}
    assert response.headers["connection"] == "close"
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/me/", "/messages/", "/docs", "/docs/openapi.json"]
)
def test_head_answers_wherever_get_does(api: Api, path: str) -> None:
    got = api.get(path)
    head = api.request("head", path)
    assert head.status == got.status
    assert head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]


def _start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "run.py"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "JWT_SECRET": SECRET, "HOST": "127.0.0.1", **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("redis_url", "error"),
    [
        (
            "127.0.0.1:6379",
            "error: REDIS_URL must be a URL of one of the forms redis://[[user]:password@]host"
            "[:port][/db], rediss://... (TLS), unix:///path/to/socket or memory://; "
            "it has no scheme (add redis://)",
        ),
        (
            "http://127.0.0.1:6379",
            "error: REDIS_URL must be a URL of one of the forms redis://[[user]:password@]host"
            "[:port][/db], rediss://... (TLS), unix:///path/to/socket or memory://; "
            "http:// is not one",
        ),
        (
            "redis://:hunter2-secret@127.0.0.1:port/0",
            "error: REDIS_URL is not a valid Redis URL: "
            "Port could not be cast to integer value as 'port'",
        ),
        (
            "redis://:hunter2-secret@127.0.0.1:6379/zero",
            "error: REDIS_URL must end with a database number (/0, /1...) "
            "or nothing after the host",
        ),
        (
            "{server}/99",
            "error: REDIS_URL: Redis refused the connection's set-up: DB index is out of range",
        ),
    ],
)
def test_bad_redis_urls_exit_with_one_line(
    redis_server: RedisServer, redis_url: str, error: str
) -> None:
    url = redis_url.replace("{server}", redis_server.url.rsplit("/", 1)[0])
    result = _start({"REDIS_URL": url, "PORT": str(free_port())})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == error
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr


def test_a_port_in_use_exits_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _start({"REDIS_URL": "memory://", "PORT": str(port)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: port {port} is in use; set PORT"
    assert "Traceback" not in result.stderr


def test_the_container_health_check_asks_readyz_on_port(service: Service) -> None:
    def check(port: str) -> int:
        env = {"PATH": os.environ["PATH"], "PORT": port}
        command = [sys.executable, "-m", "api.healthcheck"]
        return subprocess.run(command, cwd=ROOT, env=env, timeout=30, check=False).returncode

    assert check(service.url.rsplit(":", 1)[1]) == 0
    assert check(str(free_port())) == 1


def test_streams_get_the_backlog_and_open_file_limit_they_need(redis_server: RedisServer) -> None:
    running = start_service({"REDIS_URL": redis_server.url, "LIVE_MAX_CONNECTIONS": "3000"})
    try:
        port = running.url.rsplit(":", 1)[1]
        listening = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert listening[0] == "LISTEN"
        assert listening[2] == "3000"  # Send-Q: the backlog
        limits = (Path("/proc") / str(running.process.pid) / "limits").read_text()
        soft = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert int(soft.split()[3]) >= 3000
    finally:
        running.stop()


_RAISE = """
import resource, sys
from api.settings import Settings
from api.startup import raise_open_file_limit
resource.setrlimit(resource.RLIMIT_NOFILE, (256, int(sys.argv[1])))
settings = Settings(live_max_connections=3000)
print(raise_open_file_limit(settings), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


@pytest.mark.parametrize(
    ("hard", "limit", "warned"), [(20000, 4024, False), (4024, 4024, False), (512, 512, True)]
)
def test_the_open_file_soft_limit_rises_as_far_as_the_hard_one(
    hard: int, limit: int, warned: bool
) -> None:
    _, hard_now = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard > hard_now:
        pytest.skip(f"this machine's hard limit is {hard_now}")
    result = subprocess.run(
        [sys.executable, "-c", _RAISE, str(hard)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.split() == [str(limit), str(limit)]
    assert ("fewer than LIVE_MAX_CONNECTIONS=3000" in result.stderr) is warned
