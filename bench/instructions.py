"""`make instructions`: CPU instructions per request of the service, for git revisions side by side.

Throughput on this machine drifts by a third from one hour to the next, and a same-run A/B of two
builds still spreads ±10 % from one pair of runs to the next. Instructions do not drift: each
revision's service (1 worker) runs under valgrind's callgrind, counting only while a fixed number of
requests is served over keep-alive connections, so a difference of 1 % between two builds shows.
It counts the service's process only (not Redis, not the client), and says nothing of waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import checkout, process, require
from bench.scenarios import LAST_10, LIST_10, MESSAGE, PASSWORD
from scripts.local import (
    free_port,
    post,
    service_env,
    spawn_redis,
    wait_for_ping,
)

SCENARIOS = {"message": MESSAGE, "last": LAST_10, "list": LIST_10}
WARM_UP = 400  # requests before counting starts (first calls load scripts, caches fill)


async def drive(port: int, token: str, scenario: tuple[str, str, str], n: int, c: int) -> None:
    """Send `n` requests over `c` keep-alive connections, each request after the last reply."""
    method, path, body = scenario
    data = body.encode()
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"token: {token}\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data

    async def connection(count: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(count):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 2"):
                    raise RuntimeError(f"{method} {path}: {head.splitlines()[0]!r}")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
        finally:
            writer.close()

    await asyncio.gather(*(connection(n // c + (i < n % c)) for i in range(c)))


class Counted:
    """A service under callgrind, whose count of instructions can be zeroed and read."""

    def __init__(self, pid: int, out: Path, env: dict[str, str]) -> None:
        self.pid, self.out, self.env = pid, out, env

    def _control(self, option: str) -> None:
        # callgrind_control finds the process by a name built from $HOST, which run.py's
        # environment sets: it must see the same.
        done = subprocess.run(
            ["callgrind_control", option, str(self.pid)],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if "OK" not in done.stdout or "error" in done.stdout:
            raise RuntimeError(f"callgrind_control {option}: {done.stdout}{done.stderr}")

    def zero(self) -> None:
        """Start counting from zero."""
        self._control("-z")

    def read(self) -> int:
        """Instructions since the last zero."""
        self._control("-d")
        # callgrind numbers its dumps: <out>.1, <out>.2, ...
        dumps = sorted(self.out.parent.glob(self.out.name + ".*"), key=lambda p: int(p.suffix[1:]))
        match = re.search(r"^(?:totals|summary): (\d+)", dumps[-1].read_text(), re.MULTILINE)
        if match is None:
            raise RuntimeError(f"no total in {dumps[-1]}")
        return int(match.group(1))


@contextmanager
def counted_service(tree: Path, redis_url: str, workdir: Path) -> Iterator[tuple[Counted, int]]:
    """The service of `tree` (its code, this checkout's virtualenv), 1 worker, under callgrind."""
    port = free_port()
    env = service_env(
        port,
        WORKERS="1",
        REDIS_URL=redis_url,
        JWT_SECRET=secrets.token_urlsafe(48),
        BCRYPT_ROUNDS="4",
        PYTHONPATH=str(tree),
    )
    out = workdir / f"callgrind.{port}"
    args = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "run.py"]
    # Under callgrind the service takes tens of seconds to start.
    with process(args, env, f"http://127.0.0.1:{port}/healthz", cwd=tree, seconds=600) as pid:
        yield Counted(pid, out, env), port


def measure(
    tree: Path, redis_url: str, workdir: Path, requests: int, concurrency: int
) -> dict[str, float]:
    """Instructions per request of each scenario, for the service of `tree`."""
    figures: dict[str, float] = {}
    with counted_service(tree, redis_url, workdir) as (service, port):
        base = f"http://127.0.0.1:{port}"
        name = "counter" + secrets.token_hex(4)
        post(base + "/signup/", {"name": name, "password": PASSWORD})
        token: str = post(base + "/login/", {"name": name, "password": PASSWORD})["token"]
        for scenario, request in SCENARIOS.items():
            asyncio.run(drive(port, token, request, WARM_UP, concurrency))
            service.zero()
            asyncio.run(drive(port, token, request, requests, concurrency))
            figures[scenario] = service.read() / requests
    return figures


def main() -> int:
    """Count, and print a table with each revision's ratio to the first."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "revisions", nargs="*", default=["."], help='git revisions; "." is this work tree'
    )
    parser.add_argument("--requests", type=int, default=3000, help="requests counted per scenario")
    parser.add_argument("--concurrency", type=int, default=8, help="keep-alive connections")
    args = parser.parse_args()
    require(
        "valgrind",
        "callgrind_control",
        "redis-server",
        install="apt-get install valgrind redis-server",
    )
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        redis_port = free_port()
        redis = spawn_redis(redis_port, workdir, "--maxmemory-policy", "noeviction")
        try:
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            wait_for_ping(redis_url)
            for revision in args.revisions:
                with checkout(revision, workdir) as tree:
                    results[revision] = measure(
                        tree, redis_url, workdir, args.requests, args.concurrency
                    )
                print(
                    f"{revision}: "
                    + ", ".join(f"{k} {v:,.0f}" for k, v in results[revision].items()),
                    flush=True,
                )
        finally:
            redis.terminate()
            redis.wait()
    first = results[args.revisions[0]]
    counted = f"{args.requests} counted, {args.concurrency} connections, 1 worker"
    print(f"\ninstructions per request ({counted})")
    print("| revision | " + " | ".join(SCENARIOS) + " |")
    print("|---|" + "---|" * len(SCENARIOS))
    for revision, figures in results.items():
        cells = (f"{figures[s]:,.0f} ({figures[s] / first[s]:.3f}x)" for s in SCENARIOS)
        print(f"| {revision} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
