"""The bench's scenarios: what `make bench` runs against the service and the bare endpoint."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

from bench.harness import (
    WRK_SCRIPT,
    Cpu,
    Load,
    Rounds,
    Server,
    children_cpu,
    median,
    process,
    process_cpu,
    session_cpu,
    wrk,
)
from support.processes import (
    ROOT,
    free_port,
    post,
    service_env,
    spawn_redis,
    start_cluster,
    wait_for_ping,
)

PASSWORD = "bench password 1"  # noqa: S105 (a throwaway account on a private Redis)

# The scenarios: method, path and body of each request.
BARE = ("POST", "/bare", '{"text":"hello"}')
MESSAGE = ("POST", "/message/", '{"text":"hello"}')
LAST_10 = ("POST", "/message/", '{"text":"last 10"}')
LAST_100 = ("POST", "/message/", '{"text":"last 100"}')
LIST_10 = ("GET", "/messages/?limit=10", "")
API_SCENARIOS = {"message": MESSAGE, "last": LAST_10, "list": LIST_10}  # scenarios 1-3


Job = tuple[Server, tuple[str, str, str], str]  # a server, a scenario and a token for wrk


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
        proc = spawn_redis(self.redis_port, self.workdir, "--maxmemory-policy", "noeviction")
        self.redis_pid = proc.pid
        try:
            url = f"redis://127.0.0.1:{self.redis_port}/0"
            wait_for_ping(url)
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
    def api(
        self, redis_url: str, workers: int, *, code: Path = ROOT, **extra: str
    ) -> Iterator[Server]:
        """The service, started as `make run` starts it, from the work tree `code`."""
        port = free_port()
        env = service_env(
            port,
            WORKERS=str(workers),
            REDIS_URL=redis_url,
            JWT_SECRET=secrets.token_urlsafe(48),
            BCRYPT_ROUNDS="12",
            MESSAGE_HISTORY_LIMIT="1000",
            PYTHONPATH=str(code),
            **extra,
        )
        base = f"http://127.0.0.1:{port}"
        with process([sys.executable, "run.py"], env, base + "/healthz", cwd=code) as pid:
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
        post(base + "/signup/", {"name": name, "password": PASSWORD})
        token: str = post(base + "/login/", {"name": name, "password": PASSWORD})["token"]
        return token

    def rounds(self, jobs: dict[str, Job]) -> Rounds:
        """Every job measured in `self.runs` rounds, on servers that stay up throughout: a round
        runs the jobs in their order, then in the reverse order, so that a steady drift of the
        machine weighs the same on every job; a round's figure of a job is the mean of its two."""
        for server, scenario, token in jobs.values():  # warm-up, not measured
            method, path, body = scenario
            wrk(server.base + path, self.script, seconds=1, method=method, body=body, token=token)
        order = list(jobs)
        each: list[dict[str, Load]] = []
        for _ in range(self.runs):
            pairs: dict[str, list[Load]] = {label: [] for label in order}
            for label in order + order[::-1]:
                pairs[label].append(self.measured(*jobs[label]))
            each.append({label: median(pair) for label, pair in pairs.items()})
        for label in order:
            self.no_errors(label, [loads[label] for loads in each])
        return Rounds(each)

    def api_jobs(self, server: Server, suffix: str) -> dict[str, Job]:
        """Scenarios 1-3 on `server` for a new user, labelled "<scenario> <suffix>"."""
        token = self.user(server.base, f"bencher-{suffix}")
        return {
            f"{name} {suffix}": (server, scenario, token)
            for name, scenario in API_SCENARIOS.items()
        }

    def no_errors(self, label: str, loads: list[Load]) -> None:
        """Check that none of `loads` met an error."""
        self.checks.append((f"{label}: no errors", sum(load.errors for load in loads) == 0))

    def throughput(self, redis_url: str) -> Rounds:
        """Scenarios 1-3 and the bare ceiling, with 1 worker and with 2 ("message 1", "bare 2"...),
        all four servers up at once: a 2-worker gain divides figures taken seconds apart."""
        self.flush()
        with ExitStack() as stack:
            jobs: dict[str, Job] = {}
            for workers in (1, 2):
                jobs[f"bare {workers}"] = (stack.enter_context(self.bare(workers)), BARE, "")
                server = stack.enter_context(self.api(redis_url, workers))
                jobs.update(self.api_jobs(server, str(workers)))
            return self.rounds(_side_by_side(jobs))

    def cluster_cost(self, redis_url: str) -> Rounds:
        """Scenario 8: `POST /message/` and `last 10` on one Redis and on a 3-master cluster
        ("message single", "last cluster"...), 1 worker (one user each: its requests go to the
        master of its slot)."""
        self.flush()
        cluster = start_cluster(self.workdir / "cluster")
        try:
            with (
                self.api(redis_url, 1) as single,
                self.api(cluster.url, 1, REDIS_CLUSTER="true") as clustered,
            ):
                jobs: dict[str, Job] = {}
                for kind, server in (("single", single), ("cluster", clustered)):
                    token = self.user(server.base, f"bencher-{kind}")
                    jobs[f"message {kind}"] = (server, MESSAGE, token)
                    jobs[f"last {kind}"] = (server, LAST_10, token)
                return self.rounds(_side_by_side(jobs))
        finally:
            cluster.stop()

    def against(self, redis_url: str, code: Path) -> Rounds:
        """Scenario 9: scenarios 1-3 on one Redis, 1 worker, served by the work tree `code` (an
        earlier revision) and by this one ("message before", "message now"...), and by a second
        service of this one ("message again"): how far apart the same code lands is the floor
        under which no difference can be told."""
        self.flush()
        with (
            self.api(redis_url, 1, code=code) as before,
            self.api(redis_url, 1) as now,
            self.api(redis_url, 1) as again,
        ):
            jobs = {
                **self.api_jobs(before, "before"),
                **self.api_jobs(now, "now"),
                **self.api_jobs(again, "again"),
            }
            return self.rounds(_side_by_side(jobs))

    def metrics_cost(self, redis_url: str) -> Rounds:
        """Scenario 7: `POST /message/` with metrics kept ("metrics") and with METRICS=false
        ("no metrics")."""
        self.flush()
        with (
            self.api(redis_url, 1, METRICS="true") as kept,
            self.api(redis_url, 1, METRICS="false") as off,
        ):
            jobs: dict[str, Job] = {}
            for label, server in (("metrics", kept), ("no metrics", off)):
                jobs[label] = (server, MESSAGE, self.user(server.base, label.replace(" ", "-")))
            return self.rounds(jobs)

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
                    post(base + "/message/", {"text": f"message number {n}"}, {"token": token})
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


def _side_by_side(jobs: dict[str, Job]) -> dict[str, Job]:
    """`jobs` ("message 1", "bare 1", "message 2"...) with those of one scenario next to each
    other, in their order: the ratios that count are between them."""
    return {label: jobs[label] for label in sorted(jobs, key=lambda label: label.split()[0])}
