"""`make fuzz`: run schemathesis against a freshly started service's own OpenAPI document."""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
from pathlib import Path

from support.processes import ROOT, free_port, post, service_env, spawn_service, stop, wait_http


def main() -> int:
    """Start the service on the embedded store, log in, and fuzz every operation."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-time", type=int, default=150, help="fuzzing budget in seconds")
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(
        port,
        REDIS_URL="memory://",
        JWT_SECRET=secrets.token_urlsafe(48),
        BCRYPT_ROUNDS="4",
        ACCESS_LOG="false",
        # Every fuzzed request comes from 127.0.0.1 and the fuzzer replays what it has seen, the
        # fuzzer's own account included: keep the limits out of the way, so it reaches past them
        # and the second phase can still log in (the tests cover the limits themselves).
        LOGIN_MAX_FAILURES="1000000",
        LOGIN_ADDR_MAX_FAILURES="1000000",
        SIGNUP_ADDR_MAX="1000000",
        LOG_LEVEL="WARNING",
    )
    service = spawn_service(env)
    try:
        wait_http(base + "/healthz", process=service)
        user = {"name": "fuzzer", "password": secrets.token_urlsafe(16)}
        post(base + "/signup/", user)
        # Logging out revokes the token the fuzzer authenticates with, so the logout operations
        # go last, each in a run of its own with a fresh token: log out everywhere first (its
        # first call succeeds, the rest find the token ended), then the plain logout.
        # The live streams (/events/, /ws/) stay open: not for a fuzzer that reads each answer
        # whole (tests/test_hostile.py sends them its bytes instead).
        phases = [
            ("--exclude-path-regex", "^/(logout|events|ws)", args.max_time * 4 // 5),
            ("--include-path-regex", "^/logout/all", args.max_time // 10),
            ("--include-path-regex", "^/logout/?$", args.max_time // 10),
        ]
        for option, pattern, seconds in phases:
            token = post(base + "/login/", user)["token"]
            command = [
                str(Path(sys.executable).with_name("schemathesis")),
                "--config-file",
                str(ROOT / "scripts" / "schemathesis.toml"),
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
        stop(service, seconds=30)


if __name__ == "__main__":
    sys.exit(main())
