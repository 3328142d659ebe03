"""`make instructions`: CPU instructions per request of the service, for git revisions side by side.

Throughput on this machine drifts by a third from one hour to the next, and a same-run A/B of two
builds still spreads ±10 % from one pair of runs to the next. Instructions do not drift: each
revision's service runs under valgrind's callgrind, counting only while a fixed number of requests
is served over keep-alive connections, so a difference of 1 % between two builds shows. It counts
the service's processes only (not Redis, not the client), net of what they count per second while
idle, and says nothing of waiting.

With `--workers 2` every process of the service is counted (the main one and its workers): set
against the same count with 1 worker, it shows what a request costs more when workers share the
load, which is what scaling with the cores needs and what throughput on a 2-core machine that
also runs Redis and the load generator cannot show.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import checkout, process, require, session_pids
from bench.scenarios import LAST_10, LIST_10, MESSAGE, PASSWORD
from support.processes import (
    free_port,
    post,
    service_env,
    spawn_redis,
    wait_for_ping,
)

SCENARIOS = {"message": MESSAGE, "last": LAST_10, "list": LIST_10}
WARM_UP = 400  # requests before counting starts (first calls load scripts, caches fill)
IDLE = 10.0  # seconds counted with no request, to learn what the service does by the clock
# run.py, with Sanic's worker manager waiting as long as it takes for the workers to start: it gives
# them 30 s (a class constant), and under callgrind they take longer.
SLOW_WORKERS = (
    "import runpy, sanic.worker.manager as manager; manager.WorkerManager.THRESHOLD = 10**6; "
    "runpy.run_path('run.py', run_name='__main__')"
)


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
    """A service under callgrind (every process of its session), whose count of instructions can
    be zeroed and read."""

    def __init__(self, session: int, outdir: Path, env: dict[str, str]) -> None:
        self.session, self.outdir, self.env = session, outdir, env

    def _control(self, option: str, pid: int) -> None:
        # callgrind_control finds the process by a name built from $HOST, which run.py's
        # environment sets: it must see the same.
        done = subprocess.run(
            ["callgrind_control", option, str(pid)],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if "OK" not in done.stdout or "error" in done.stdout:
            raise RuntimeError(f"callgrind_control {option} {pid}: {done.stdout}{done.stderr}")

    def zero(self) -> None:
        """Start counting from zero."""
        for pid in session_pids(self.session):
            self._control("-z", pid)

    def each(self) -> list[int]:
        """Instructions since the last zero, process by process."""
        counts = []
        for pid in session_pids(self.session):
            self._control("-d", pid)
            # callgrind numbers each process's dumps: callgrind.<pid>.1, callgrind.<pid>.2, ...
            dumps = sorted(
                self.outdir.glob(f"callgrind.{pid}.*"), key=lambda path: int(path.suffix[1:])
            )
            text = dumps[-1].read_text()
            match = re.search(r"^(?:totals|summary): (\d+)", text, re.MULTILINE)
            if match is None:
                raise RuntimeError(f"no total in {dumps[-1]}")
            counts.append(int(match.group(1)))
        return counts

    def wait_for_workers(self, workers: int, port: int, token: str) -> None:
        """Return once requests on new connections reach `workers` processes (under callgrind,
        a worker can take a minute to start after the first one answers)."""
        if workers == 1:
            return
        deadline = time.monotonic() + 600
        while True:
            self.zero()
            asyncio.run(drive(port, token, MESSAGE, 100, 8))
            counts = self.each()
            # The worker manager's own work is a small fraction of a serving worker's.
            if sum(count > max(counts) / 10 for count in counts) >= workers:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"requests did not reach {workers} workers: {counts}")
            time.sleep(5)


@contextmanager
def counted_service(
    tree: Path, redis_url: str, workdir: Path, workers: int
) -> Iterator[tuple[Counted, int]]:
    """The service of `tree` (its code, this checkout's virtualenv) under callgrind."""
    port = free_port()
    env = service_env(
        port,
        WORKERS=str(workers),
        REDIS_URL=redis_url,
        JWT_SECRET=secrets.token_urlsafe(48),
        BCRYPT_ROUNDS="4",
        PYTHONPATH=str(tree),
    )
    outdir = workdir / f"callgrind-{port}"
    outdir.mkdir()
    args = [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",  # the workers, when there are several
        f"--callgrind-out-file={outdir}/callgrind.%p",
        sys.executable,
        *(["run.py"] if workers == 1 else ["-c", SLOW_WORKERS]),
    ]
    # Under callgrind the service takes tens of seconds to start (workers, longer).
    with process(args, env, f"http://127.0.0.1:{port}/healthz", cwd=tree, seconds=600) as pid:
        yield Counted(pid, outdir, env), port


def measure(
    tree: Path, redis_url: str, workdir: Path, requests: int, concurrency: int, workers: int
) -> dict[str, float]:
    """Instructions per request of each scenario, for the service of `tree`."""
    figures: dict[str, float] = {}
    with counted_service(tree, redis_url, workdir, workers) as (service, port):
        base = f"http://127.0.0.1:{port}"
        name = "counter" + secrets.token_hex(4)
        post(base + "/signup/", {"name": name, "password": PASSWORD})
        token: str = post(base + "/login/", {"name": name, "password": PASSWORD})["token"]
        service.wait_for_workers(workers, port, token)
        # What the service does by the clock (timers, the worker manager's loop) is not work per
        # request, and under callgrind a counted phase lasts far longer than it would natively:
        # the count while idle, per second, is taken off each count.
        service.zero()
        time.sleep(IDLE)
        per_second = sum(service.each()) / IDLE
        print(f"idle: {per_second:,.0f} instructions per second", flush=True)
        for scenario, request in SCENARIOS.items():
            asyncio.run(drive(port, token, request, WARM_UP, concurrency))
            service.zero()
            started = time.monotonic()
            asyncio.run(drive(port, token, request, requests, concurrency))
            elapsed = time.monotonic() - started
            counts = service.each()
            figures[scenario] = (sum(counts) - per_second * elapsed) / requests
            if workers > 1:
                shares = "/".join(f"{count / sum(counts):.0%}" for count in counts)
                print(f"{scenario}: instructions by process {shares}", flush=True)
    return figures


def main() -> int:
    """Count, and print a table with each revision's ratio to the first."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "revisions", nargs="*", default=["."], help='git revisions; "." is this work tree'
    )
    parser.add_argument("--requests", type=int, default=3000, help="requests counted per scenario")
    parser.add_argument("--concurrency", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--workers", type=int, default=1, help="the service's WORKERS")
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
                        tree, redis_url, workdir, args.requests, args.concurrency, args.workers
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
    counted = (
        f"{args.requests} counted, {args.concurrency} connections, {args.workers} worker(s), "
        "net of the idle count"
    )
    print(f"\ninstructions per request ({counted})")
    print("| revision | " + " | ".join(SCENARIOS) + " |")
    print("|---|" + "---|" * len(SCENARIOS))
    for revision, figures in results.items():
        cells = (f"{figures[s]:,.0f} ({figures[s] / first[s]:.3f}x)" for s in SCENARIOS)
        print(f"| {revision} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
