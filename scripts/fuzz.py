"""`make fuzz`: run schemathesis against a freshly started service's own OpenAPI document."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _post(url: str, body: dict[str, str]) -> dict[str, str]:
    request = urllib.request.Request(  # noqa: S310 (a loopback URL we built)
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        reply: dict[str, str] = json.loads(response.read())
        return reply


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            sys.exit("the service exited before it answered")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310
                return
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("the service did not start")
            time.sleep(0.1)


def main() -> int:
    """Start the service on the embedded store, log in, and fuzz every operation."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-time", type=int, default=150, help="fuzzing budget in seconds")
    args = parser.parse_args()

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "REDIS_URL": "memory://",
        "JWT_SECRET": secrets.token_urlsafe(48),
        "BCRYPT_ROUNDS": "4",
        "ACCESS_LOG": "false",
        # Every fuzzed request comes from 127.0.0.1 and the fuzzer replays what it has seen, the
        # fuzzer's own account included: keep the limits out of the way, so it reaches past them
        # and the second phase can still log in (the tests cover the limits themselves).
        "LOGIN_MAX_FAILURES": "1000000",
        "LOGIN_ADDR_MAX_FAILURES": "1000000",
        "SIGNUP_ADDR_MAX": "1000000",
        "LOG_LEVEL": "WARNING",
    }
    service = subprocess.Popen([sys.executable, "run.py"], cwd=ROOT, env=env)
    try:
        _wait(base + "/healthz", service)
        user = {"name": "fuzzer", "password": secrets.token_urlsafe(16)}
        _post(base + "/signup/", user)
        # Logging out revokes the token the fuzzer authenticates with, so the logout operations
        # go last, each in a run of its own with a fresh token: log out everywhere first (its
        # first call succeeds, the rest find the token ended), then the plain logout.
        phases = [
            ("--exclude-path-regex", "^/logout", args.max_time * 4 // 5),
            ("--include-path-regex", "^/logout/all", args.max_time // 10),
            ("--include-path-regex", "^/logout/?$", args.max_time // 10),
        ]
        for option, pattern, seconds in phases:
            token = _post(base + "/login/", user)["token"]
            command = [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{base}/docs/openapi.json",
                "--url",
                base,
                option,
                pattern,
                "--header",
                f"token: {token}",
                "--max-time",
                str(max(seconds, 5)),
                # One worker: with two, Hypothesis' shared caches raced (KeyError) in the fuzzer.
                "--workers",
                "1",
                "--suppress-health-check",
                "too_slow",
            ]
            if code := subprocess.call(command, cwd=ROOT):
                return code
        return 0
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
