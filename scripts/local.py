"""Local processes for the tests, `make bench` and `make fuzz`: ports, redis-server, the service.

Everything here talks to 127.0.0.1 only.
"""

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


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
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 (a loopback URL)
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
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (loopback)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
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


def start_service(env: Mapping[str, str], **popen: Any) -> subprocess.Popen[Any]:
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
