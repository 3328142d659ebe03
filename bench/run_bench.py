"""`make bench`: the API against a bare Sanic endpoint under wrk, on this machine, in one run.

Starts a private redis-server and the service the way `make run` does (BCRYPT_ROUNDS=12), drives it
with wrk over loopback, and reports every throughput as a ratio to a bare Sanic endpoint served with
the same workers and connections, as the median of alternating runs. Writes bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
CONNECTIONS = 32
PASSWORD = "bench password 1"  # noqa: S105 (a throwaway account on a private Redis)

WRK_SCRIPT = """
wrk.method = os.getenv("WRK_METHOD")
wrk.body = os.getenv("WRK_BODY")
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("WRK_TOKEN")
if token ~= nil and token ~= "" then wrk.headers["token"] = token end
if wrk.body == "" then wrk.body = nil end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"p50":%d,"p99":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Cpu:
    """Where the CPU went during one wrk run: microseconds per request, and how busy the cores
    were (all of them together, 1.0 = every core all the time)."""

    server_us: float
    redis_us: float
    wrk_us: float
    busy: float


@dataclass(frozen=True)
class Load:
    """One wrk measurement."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu: Cpu | None = None


def median(loads: list[Load]) -> Load:
    """Each figure's median over several runs (errors and requests: their sums)."""
    cpus = [load.cpu for load in loads if load.cpu is not None]
    return Load(
        rps=statistics.median(load.rps for load in loads),
        p50_ms=statistics.median(load.p50_ms for load in loads),
        p99_ms=statistics.median(load.p99_ms for load in loads),
        errors=sum(load.errors for load in loads),
        requests=sum(load.requests for load in loads),
        cpu=Cpu(
            server_us=statistics.median(cpu.server_us for cpu in cpus),
            redis_us=statistics.median(cpu.redis_us for cpu in cpus),
            wrk_us=statistics.median(cpu.wrk_us for cpu in cpus),
            busy=statistics.median(cpu.busy for cpu in cpus),
        )
        if cpus
        else None,
    )


@dataclass(frozen=True)
class Server:
    """A server started for the bench: its base URL, and its pid (which leads its session)."""

    base: str
    pid: int


TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_of(stat: str) -> tuple[int, float]:
    # /proc/<pid>/stat after the command name: state ppid pgrp session ... utime (12th) stime.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[3]), (int(fields[11]) + int(fields[12])) / TICKS


def session_cpu(session: int) -> float:
    """CPU seconds used so far by the live processes of a session (a server and its workers)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            sid, seconds = _cpu_of(stat.read_text())
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
        if sid == session:
            total += seconds
    return total


def process_cpu(pid: int) -> float:
    """CPU seconds used so far by one process."""
    return _cpu_of(Path(f"/proc/{pid}/stat").read_text())[1]


def children_cpu() -> float:
    """CPU seconds used by this process's finished children (wrk, once it has returned)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, seconds: float = 30) -> None:
    """Wait until `url` answers."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 (loopback)
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def call(url: str, body: dict[str, str], token: str | None = None) -> dict[str, str]:
    """POST JSON to `url` and return the JSON answer."""
    headers = {"Content-Type": "application/json", **({"token": token} if token else {})}
    request = urllib.request.Request(  # noqa: S310 (loopback)
        url, data=json.dumps(body).encode(), headers=headers
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        reply: dict[str, str] = json.loads(response.read())
        return reply


@contextmanager
def process(args: list[str], env: dict[str, str], ready_url: str) -> Iterator[int]:
    """Run a server process (in a session of its own) until the block ends; yield its pid."""
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_http(ready_url)
        time.sleep(1.0)  # let every worker finish starting
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wrk(
    url: str,
    script: Path,
    *,
    seconds: int,
    connections: int = CONNECTIONS,
    threads: int = 1,
    method: str = "POST",
    body: str = "",
    token: str = "",
    timeout: str = "2s",
) -> Load:
    """Drive `url` with wrk and parse the RESULT line its script prints."""
    env = {**os.environ, "WRK_METHOD": method, "WRK_BODY": body, "WRK_TOKEN": token}
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--timeout",
            timeout,
            "-s",
            str(script),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    return Load(
        rps=result["requests"] / (result["duration_us"] / 1e6),
        p50_ms=result["p50"] / 1000,
        p99_ms=result["p99"] / 1000,
        errors=result["errors"] + result["non2xx"],
        requests=result["requests"],
    )


# The scenarios: method, path and body of each request.
BARE = ("POST", "/bare", '{"text":"hello"}')
MESSAGE = ("POST", "/message/", '{"text":"hello"}')
LAST_10 = ("POST", "/message/", '{"text":"last 10"}')
LAST_100 = ("POST", "/message/", '{"text":"last 100"}')
LIST_10 = ("GET", "/messages/?limit=10", "")


class Bench:
    """Everything one `make bench` run measures."""

    def __init__(self, seconds: int, runs: int, workdir: Path) -> None:
        self.seconds, self.runs, self.workdir = seconds, runs, workdir
        self.script = workdir / "bench.lua"
        self.script.write_text(WRK_SCRIPT)
        self.redis_port = free_port()
        self.redis_pid = 0
        self.rows: list[tuple[str, str]] = []
        self.checks: list[tuple[str, bool]] = []

    @contextmanager
    def redis(self) -> Iterator[str]:
        """A private redis-server, as the compose file runs it (but in memory)."""
        proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.redis_pid = proc.pid
        try:
            url = f"redis://127.0.0.1:{self.redis_port}/0"
            for _ in range(100):
                if (
                    subprocess.run(
                        ["redis-cli", "-p", str(self.redis_port), "ping"],
                        capture_output=True,
                        check=False,
                    ).stdout.strip()
                    == b"PONG"
                ):
                    break
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            proc.wait()

    def flush(self) -> None:
        """Empty the private Redis."""
        subprocess.run(
            ["redis-cli", "-p", str(self.redis_port), "flushall"], capture_output=True, check=True
        )

    @contextmanager
    def api(self, redis_url: str, workers: int, **extra: str) -> Iterator[Server]:
        """The service, started as `make run` starts it."""
        port = free_port()
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WORKERS": str(workers),
            "REDIS_URL": redis_url,
            "JWT_SECRET": secrets.token_urlsafe(48),
            "BCRYPT_ROUNDS": "12",
            "MESSAGE_HISTORY_LIMIT": "1000",
            **extra,
        }
        base = f"http://127.0.0.1:{port}"
        with process([sys.executable, "run.py"], env, base + "/healthz") as pid:
            yield Server(base, pid)

    @contextmanager
    def bare(self, workers: int) -> Iterator[Server]:
        """The bare Sanic endpoint with the same workers."""
        port = free_port()
        env = {**os.environ, "PORT": str(port), "WORKERS": str(workers)}
        base = f"http://127.0.0.1:{port}"
        with process([sys.executable, "bench/bare.py"], env, base + "/bare") as pid:
            yield Server(base, pid)

    def load(self, base: str, scenario: tuple[str, str, str], token: str) -> Load:
        """One wrk run of `scenario` against the API at `base`, authenticated by `token`."""
        method, path, body = scenario
        return wrk(
            base + path, self.script, seconds=self.seconds, method=method, body=body, token=token
        )

    def measured(self, server: Server, scenario: tuple[str, str, str], token: str) -> Load:
        """`load`, with the CPU the server, Redis and wrk used meanwhile."""
        before = session_cpu(server.pid), process_cpu(self.redis_pid), children_cpu()
        started = time.monotonic()
        load = self.load(server.base, scenario, token)
        elapsed = time.monotonic() - started
        after = session_cpu(server.pid), process_cpu(self.redis_pid), children_cpu()
        used = [b - a for a, b in zip(before, after, strict=True)]
        server_us, redis_us, wrk_us = (seconds / max(load.requests, 1) * 1e6 for seconds in used)
        busy = sum(used) / elapsed / (os.cpu_count() or 1)
        return replace(load, cpu=Cpu(server_us, redis_us, wrk_us, busy))

    def user(self, base: str, name: str) -> str:
        """Sign up and log in `name`; return a token."""
        call(base + "/signup/", {"name": name, "password": PASSWORD})
        return call(base + "/login/", {"name": name, "password": PASSWORD})["token"]

    def throughput(self, redis_url: str, workers: int) -> dict[str, Load]:
        """Scenarios 1-3 and the bare ceiling: the medians of alternating runs."""
        samples: dict[str, list[Load]] = {"bare": [], "message": [], "last": [], "list": []}
        for _ in range(self.runs):
            with self.bare(workers) as server:
                samples["bare"].append(self.measured(server, BARE, ""))
            self.flush()
            with self.api(redis_url, workers) as server:
                token = self.user(server.base, "bencher")
                for name, scenario in (("message", MESSAGE), ("last", LAST_10), ("list", LIST_10)):
                    samples[name].append(self.measured(server, scenario, token))
        for name, loads in samples.items():
            errors = sum(load.errors for load in loads)
            self.checks.append((f"{name}, {workers} worker(s): no errors", errors == 0))
        return {name: median(loads) for name, loads in samples.items()}

    def metrics_cost(self, redis_url: str) -> tuple[Load, Load]:
        """Scenario 7: `POST /message/` with metrics kept and with METRICS=false, alternating."""
        samples: dict[str, list[Load]] = {"true": [], "false": []}
        for _ in range(self.runs):
            for metrics in ("true", "false"):
                self.flush()
                with self.api(redis_url, 1, METRICS=metrics) as server:
                    token = self.user(server.base, "bencher")
                    samples[metrics].append(self.load(server.base, MESSAGE, token))
        return median(samples["true"]), median(samples["false"])

    def login_flood(self, redis_url: str) -> tuple[Load, Load, Load]:
        """Scenario 4: /message/ latency idle, then during 16 clients logging in at cost 12."""
        self.flush()
        # 16 logins of one account in flight at once: its window must have room for them all
        # (every attempt takes its place before bcrypt), or most would be fast 429s, no flood.
        with self.api(redis_url, 1, LOGIN_MAX_FAILURES="64") as server:
            base = server.base
            token = self.user(base, "bencher")
            self.user(base, "flooder")
            idle = self.load(base, MESSAGE, token)
            with ThreadPoolExecutor(max_workers=1) as pool:
                flood = pool.submit(
                    wrk,
                    base + "/login/",
                    self.script,
                    seconds=self.seconds + 2,
                    connections=16,
                    body=json.dumps({"name": "flooder", "password": PASSWORD}),
                    timeout="30s",  # 16 logins at cost 12 queue for seconds on 2 cores
                )
                time.sleep(1)
                during = self.load(base, MESSAGE, token)
                logins = flood.result()
        return idle, during, logins

    def history_cost(self, redis_url: str) -> tuple[Load, Load]:
        """Scenario 5: `last 100` with 100 and with MESSAGE_HISTORY_LIMIT (1000) stored."""
        self.flush()
        loads = []
        with self.api(redis_url, 1) as server:
            base = server.base
            for name, stored in (("short", 100), ("long", 1000)):
                token = self.user(base, name)
                for n in range(stored):
                    call(base + "/message/", {"text": f"message number {n}"}, token)
                loads.append(self.load(base, LAST_100, token))
        return loads[0], loads[1]

    def memory_per_user(self, redis_url: str) -> tuple[int, int, int]:
        """Scenario 6: Redis bytes for one user after 1x and 2x MESSAGE_HISTORY_LIMIT messages."""
        self.flush()
        with self.api(redis_url, 1) as server:
            base = server.base
            token = self.user(base, "memory")
            sizes = []
            for _ in range(2):
                before = self._count()
                while self._count() - before < 1000:
                    wrk(
                        base + "/message/",
                        self.script,
                        seconds=1,
                        connections=8,
                        body='{"text":"a message of about forty characters...."}',
                        token=token,
                    )
                sizes.append(self._memory("user:{memory}") + self._memory("messages:{memory}"))
            length = int(self._redis("llen", "messages:{memory}"))
        return sizes[0], sizes[1], length

    def _redis(self, *command: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(self.redis_port), *command],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def _memory(self, key: str) -> int:
        return int(self._redis("memory", "usage", key, "samples", "0") or 0)

    def _count(self) -> int:
        # Messages sent so far: the capped list cannot count past its cap, the INFO counter can.
        stats = self._redis("info", "commandstats")
        for line in stats.splitlines():
            if line.startswith("cmdstat_lpush:"):
                return int(line.split("calls=", 1)[1].split(",", 1)[0])
        return 0


def main() -> int:
    """Run every scenario and write bench/RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs per figure")
    args = parser.parse_args()
    for tool in ("wrk", "redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: apt-get install wrk redis-server")

    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args.seconds, args.runs, Path(tmp))
        with bench.redis() as redis_url:
            one = bench.throughput(redis_url, 1)
            two = bench.throughput(redis_url, 2)
            idle, during, logins = bench.login_flood(redis_url)
            short, long = bench.history_cost(redis_url)
            mem_1x, mem_2x, length = bench.memory_per_user(redis_url)
            with_metrics, without_metrics = bench.metrics_cost(redis_url)

    rps1 = {name: load.rps for name, load in one.items()}
    rps2 = {name: load.rps for name, load in two.items()}
    lines = [
        "| scenario | 1 worker | ratio to bare | 2 workers | ratio to bare |",
        "|---|---|---|---|---|",
        f"| bare Sanic endpoint (ceiling) | {rps1['bare']:.0f} rps | 1.00 | {rps2['bare']:.0f} rps "
        "| 1.00 |",
    ]
    labels = {
        "message": "1. `POST /message/`, header token",
        "last": "2. `POST /message/` with `last 10`",
        "list": "3. `GET /messages/?limit=10`",
    }
    for key, label in labels.items():
        lines.append(
            f"| {label} | {rps1[key]:.0f} rps | {rps1[key] / rps1['bare']:.2f} | "
            f"{rps2[key]:.0f} rps | {rps2[key] / rps2['bare']:.2f} |"
        )
    lines += [
        "",
        "Where the CPU went in those runs, in microseconds per request (medians), and how busy the "
        f"{os.cpu_count()} cores were altogether; wrk and Redis share the cores with the server:",
        "",
        "| scenario | 1 worker: server / Redis / wrk | cores busy "
        "| 2 workers: server / Redis / wrk | cores busy |",
        "|---|---|---|---|---|",
    ]
    for key, label in {"bare": "bare Sanic endpoint", **labels}.items():
        row = [label]
        for load in (one[key], two[key]):
            cpu = load.cpu
            assert cpu is not None
            row.append(f"{cpu.server_us:.0f} / {cpu.redis_us:.0f} / {cpu.wrk_us:.0f} us")
            row.append(f"{cpu.busy:.0%}")
        lines.append("| " + " | ".join(row) + " |")
    scaling = {key: rps2[key] / rps1[key] for key in labels}
    bare_scaling = rps2["bare"] / rps1["bare"]
    metrics_ratio = with_metrics.rps / without_metrics.rps
    flood_ratio = during.p99_ms / idle.p99_ms
    history_ratio = short.p50_ms and long.p50_ms / short.p50_ms
    lines += [
        "",
        "| scenario | figure |",
        "|---|---|",
        f"| 4. `/message/` idle, 1 worker | p50 {idle.p50_ms:.2f} ms, p99 {idle.p99_ms:.2f} ms |",
        f"| 4. `/message/` during 16 clients logging in at cost 12 | p50 {during.p50_ms:.2f} ms, "
        f"p99 {during.p99_ms:.2f} ms (p99 {flood_ratio:.2f}x idle), {during.errors} errors |",
        f"| 4. the logins meanwhile | {logins.rps:.1f} logins/s, p99 {logins.p99_ms:.0f} ms, "
        f"{logins.errors} errors |",
        f"| 5. `last 100` with 100 stored | p50 {short.p50_ms:.2f} ms, {short.rps:.0f} rps |",
        f"| 5. `last 100` with 1000 stored | p50 {long.p50_ms:.2f} ms, {long.rps:.0f} rps "
        f"({history_ratio:.2f}x) |",
        f"| 6. Redis bytes per user after 1000 / 2000 messages | {mem_1x} / {mem_2x} "
        f"(list length {length}) |",
        f"| 7. `POST /message/` with metrics / with METRICS=false, 1 worker | "
        f"{with_metrics.rps:.0f} / {without_metrics.rps:.0f} rps ({metrics_ratio:.3f}x) |",
        f"| 2 workers over 1: bare endpoint | {bare_scaling:.2f}x |",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    targets = [
        (
            "1. message >= 0.50x bare (1 worker)",
            f"{rps1['message'] / rps1['bare']:.2f}x",
            rps1["message"] / rps1["bare"] >= 0.5,
        ),
        (
            "2. `last 10` >= 0.50x bare (1 worker)",
            f"{rps1['last'] / rps1['bare']:.2f}x",
            rps1["last"] / rps1["bare"] >= 0.5,
        ),
        (
            "4. p99 during the login flood <= 3x idle, no errors",
            f"{flood_ratio:.2f}x, {during.errors} errors",
            flood_ratio <= 3 and during.errors == 0,
        ),
        (
            "5. `last 100` cost within 1.2x (100 vs 1000 stored)",
            f"{history_ratio:.2f}x",
            1 / 1.2 <= history_ratio <= 1.2,
        ),
        (
            "6. memory bounded by the cap",
            f"{mem_2x / mem_1x:.2f}x from 1000 to 2000 messages",
            length == 1000 and mem_2x <= mem_1x * 1.1,
        ),
        (
            "7. metrics cost under 5 % of `POST /message/` throughput",
            f"{1 - metrics_ratio:.1%}",
            metrics_ratio >= 0.95,
        ),
        *(
            (
                f"2-worker gain >= 0.90x the bare endpoint's ({labels[k].split(' ', 1)[1]})",
                f"{v:.2f}x / {bare_scaling:.2f}x = {v / bare_scaling:.2f}",
                v / bare_scaling >= 0.9,
            )
            for k, v in scaling.items()
        ),
        *((check, "", ok) for check, ok in bench.checks),
    ]
    lines += [
        f"| {name} | {figure} | {'yes' if ok else '**no**'} |" for name, figure, ok in targets
    ]
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[2]
    header = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: "
        f"{os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}, "
        f"sanic {version('sanic')}, redis-py {version('redis')}, redis-server {redis_version}, "
        f"wrk over loopback, {CONNECTIONS} connections, {args.seconds} s per run, the median of "
        f"{args.runs} runs alternating between the bare endpoint and the API, BCRYPT_ROUNDS=12. "
        "Throughput is compared only within this one run: the machine is noisy.",
        "",
    ]
    text = "\n".join(header + lines) + "\n"
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
