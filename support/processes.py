"""Local processes for the tests, `make bench` and `make fuzz`: ports, redis-server, a cluster,
the service (as `make run` starts it), and HTTP calls to it.

Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
# A secret and a password for local runs only (tests sign tokens with the secret).
SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"  # noqa: S105
PASSWORD = "correct horse battery"  # noqa: S105


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def bindable(port: int) -> bool:
    """Whether `port` can be bound on 127.0.0.1 right now."""
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def spawn_redis(port: int, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    """Start a redis-server on `port` that keeps nothing on disk (unless `extra` says so)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed: apt-get install redis-server")
    args = [binary, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly"]
    args += ["no", "--dir", str(workdir), *extra]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def free_cluster_port() -> int:
    """A free port P whose cluster bus port P + 10000 is free too (so P is at most 55535)."""
    for port in random.sample(range(20000, 45000), 200):
        if bindable(port) and bindable(port + 10000):
            return port
    raise RuntimeError("no free pair of ports for a cluster node")


@dataclass
class RedisServer:
    """A private redis-server process started for the tests."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path
    options: tuple[str, ...] = ()  # extra redis-server options, --requirepass included
    password: str | None = None

    @property
    def url(self) -> str:
        """The URL of database 0 on this server."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

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
        self.process = spawn_redis(self.port, self.workdir, *self.options)
        wait_for_ping(self.url)


def _spawn_node(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    return spawn_redis(
        port,
        workdir / str(port),
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "2000",
    )


@dataclass
class RedisClusterServers:
    """A private 3-master Redis Cluster started for the tests."""

    ports: list[int]
    processes: list[subprocess.Popen[bytes]]
    workdir: Path

    @property
    def url(self) -> str:
        """The URL of one node; the client discovers the others."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def flush(self) -> None:
        """Empty every master."""
        for port in self.ports:
            with redis.Redis(port=port) as node, contextlib.suppress(redis.ReadOnlyError):
                node.flushall()  # a replica refuses: its master's flush empties it

    def kill(self, index: int) -> None:
        """Kill one node at once (SIGKILL), as a crash would."""
        self.processes[index].kill()
        self.processes[index].wait()

    def restart(self, index: int) -> None:
        """Start a killed node again with its cluster state; it rejoins the cluster."""
        self.processes[index] = _spawn_node(self.ports[index], self.workdir)

    def wait_ok(self, seconds: float = 30) -> None:
        """Wait until every node says cluster_state:ok."""
        deadline = time.monotonic() + seconds
        for port in self.ports:
            with redis.Redis(port=port, decode_responses=True) as node:
                while True:
                    try:
                        if node.execute_command("CLUSTER INFO").get("cluster_state") == "ok":
                            break
                    except redis.ConnectionError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("the cluster did not reach cluster_state:ok")
                    time.sleep(0.1)

    def stop(self) -> None:
        """Stop every node."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            process.wait(timeout=10)


def start_cluster(workdir: Path, masters: int = 3, replicas: int = 0) -> RedisClusterServers:
    """Start `masters` cluster-enabled redis-servers (and `replicas` replicas of each), join them,
    and wait for cluster_state:ok."""
    ports: list[int] = []
    taken: set[int] = set()  # the ports and cluster bus ports chosen so far
    while len(ports) < masters * (1 + replicas):
        port = free_cluster_port()
        if not {port, port + 10000} & taken:
            ports.append(port)
            taken |= {port, port + 10000}
    processes = []
    for port in ports:
        (workdir / str(port)).mkdir(parents=True)
        processes.append(_spawn_node(port, workdir))
    servers = RedisClusterServers(ports, processes, workdir)
    try:
        for port in ports:
            wait_for_ping(f"redis://127.0.0.1:{port}/0")
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in ports),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        servers.wait_ok()
    except BaseException:
        servers.stop()
        raise
    return servers


def wait_for_ping(url: str, seconds: float = 10.0) -> None:
    """Wait until the Redis at `url` answers PING."""
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


def wait_http(
    url: str, *, process: subprocess.Popen[Any] | None = None, seconds: float = 30
) -> None:
    """Wait until `url` answers; raise RuntimeError if `process` exits or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process exited ({process.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {seconds:g} s") from None
            time.sleep(0.1)


def call(
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    *,
    timeout: float = 30,
) -> tuple[int, Any, dict[str, str]]:
    """Send one request (a JSON body if any); return status, decoded JSON body and headers."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _json(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, _json(error.read()), dict(error.headers)


def _json(raw: bytes) -> Any:
    return json.loads(raw) if raw else None


def post(url: str, body: Any, headers: Mapping[str, str] | None = None) -> Any:
    """POST JSON to `url`; return the JSON answer, raising RuntimeError unless it is a 2xx."""
    status, answer, _ = call("POST", url, body, headers)
    if not 200 <= status < 300:
        raise RuntimeError(f"POST {url} answered {status}: {answer}")
    return answer


def service_env(port: int, **extra: str) -> dict[str, str]:
    """This process's environment plus what `run.py` needs to listen on 127.0.0.1:`port`."""
    return {**os.environ, "HOST": LOOPBACK, "PORT": str(port), "PYTHONUNBUFFERED": "1", **extra}


def spawn_service(env: Mapping[str, str], **popen: Any) -> subprocess.Popen[Any]:
    """Run `run.py` with exactly `env`, in a process group of its own (workers included)."""
    return subprocess.Popen(
        [sys.executable, "run.py"], cwd=ROOT, env=dict(env), start_new_session=True, **popen
    )


def stop(process: subprocess.Popen[Any], seconds: float = 20) -> bool:
    """SIGTERM `process` and wait; SIGKILL its whole group if it outlives `seconds`.

    Returns whether it stopped on SIGTERM.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return False
    return True


class Service:
    """The API started as `make run` starts it (`python run.py`), in its own process group.

    Its output is collected line by line as it runs, so a test can wait for what it logs.
    """

    def __init__(self, url: str, process: subprocess.Popen[str]) -> None:
        self.url = url
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        """Everything the service has printed so far."""
        return "".join(self.lines)

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """Send one request; return status, decoded JSON body and headers."""
        return call(method, self.url + path, body, headers, timeout=10)

    def login(self, name: str = "alice", password: str = PASSWORD) -> str:
        """Log in an existing user; return the token."""
        status, body, _ = self.call("POST", "/login/", {"name": name, "password": password})
        assert status == 200, body
        token: str = body["token"]
        return token

    def user(self, name: str = "alice", password: str = PASSWORD) -> str:
        """Sign up and log in `name`; return the token."""
        status, body, _ = self.call("POST", "/signup/", {"name": name, "password": password})
        assert status == 201, body
        return self.login(name, password)

    def stop(self) -> str:
        """SIGTERM the service, wait for it, and return everything it printed."""
        if not stop(self.process):
            self.lines.append("[killed: the service did not stop on SIGTERM]\n")
        self._reader.join(timeout=10)
        return self.output


def start_service(env: Mapping[str, str], *, wait: bool = True) -> Service:
    """Run `run.py` as `make run` does, with `env` over a clean environment (a free port, the
    local test secret, bcrypt at its lowest cost); wait until it answers (every worker up)."""
    port = free_port()
    full_env = {
        "PATH": os.environ["PATH"],
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "BCRYPT_ROUNDS": "4",
        "JWT_SECRET": SECRET,
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    process = spawn_service(full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    service = Service(f"http://127.0.0.1:{port}", process)
    workers = int(full_env.get("WORKERS") or 1)
    deadline = time.monotonic() + 30
    while wait:
        if process.poll() is not None:
            raise AssertionError(f"service exited early:\n{service.stop()}")
        # With several workers, every one must be up: Sanic's manager cannot stop while one is
        # still starting.
        if workers == 1 or service.output.count("Worker ready") >= workers:
            try:
                with urllib.request.urlopen(service.url + "/healthz", timeout=1):
                    break
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise AssertionError(f"service did not start:\n{service.stop()}")
        time.sleep(0.1)
    return service
