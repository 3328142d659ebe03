"""The bench's scenarios: what `make bench` runs against the service and the bare endpoint."""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from bench.harness import (
    WRK_SCRIPT,
    Cpu,
    Load,
    Server,
    children_cpu,
    median,
    process,
    process_cpu,
    session_cpu,
    wrk,
)
from scripts.local import (
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


@dataclass(frozen=True)
class Against:
    """Scenario 9's figures for one scenario: before (an earlier revision), now, and the median of
    the runs' ratios of now to before."""

    before: Load
    now: Load
    ratio: float


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

    def api_scenarios(
        self, redis_url: str, workers: int, loads: dict[str, list[Load]], *, code: Path = ROOT
    ) -> None:
        """One run of scenarios 1-3 on a service of `code` started afresh on an empty Redis, each
        load appended to its scenario's list in `loads`."""
        self.flush()
        with self.api(redis_url, workers, code=code) as server:
            token = self.user(server.base, "bencher")
            for name, scenario in API_SCENARIOS.items():
                loads[name].append(self.measured(server, scenario, token))

    def no_errors(self, label: str, loads: list[Load]) -> None:
        """Check that none of `loads` met an error."""
        self.checks.append((f"{label}: no errors", sum(load.errors for load in loads) == 0))

    def throughput(self, redis_url: str) -> tuple[dict[str, Load], dict[str, Load]]:
        """Scenarios 1-3 and the bare ceiling, with 1 worker and with 2: the medians of
        alternating runs. Every run measures both, so a 2-worker gain divides figures taken a
        minute apart, not a whole phase of the bench apart (the machine drifts meanwhile)."""
        samples: dict[int, dict[str, list[Load]]] = {
            workers: {"bare": [], **{name: [] for name in API_SCENARIOS}} for workers in (1, 2)
        }
        for _ in range(self.runs):
            for workers, loads in samples.items():
                with self.bare(workers) as server:
                    loads["bare"].append(self.measured(server, BARE, ""))
                self.api_scenarios(redis_url, workers, loads)
        for workers, loads in samples.items():
            for name, runs in loads.items():
                self.no_errors(f"{name}, {workers} worker(s)", runs)
        one, two = ({name: median(runs) for name, runs in samples[w].items()} for w in (1, 2))
        return one, two

    def cluster_cost(self, redis_url: str) -> dict[str, Load]:
        """Scenario 8: `POST /message/` and `last 10` on one Redis and on a 3-master cluster,
        1 worker, alternating (one user: its requests go to the master of its slot)."""
        samples: dict[str, list[Load]] = {
            "single message": [],
            "single last": [],
            "cluster message": [],
            "cluster last": [],
        }
        cluster = start_cluster(self.workdir / "cluster")
        try:
            for _ in range(self.runs):
                for kind, url, is_cluster in (
                    ("single", redis_url, "false"),
                    ("cluster", cluster.url, "true"),
                ):
                    self.flush()
                    cluster.flush()
                    with self.api(url, 1, REDIS_CLUSTER=is_cluster) as server:
                        token = self.user(server.base, "bencher")
                        for name, scenario in (("message", MESSAGE), ("last", LAST_10)):
                            samples[f"{kind} {name}"].append(
                                self.load(server.base, scenario, token)
                            )
        finally:
            cluster.stop()
        for name, loads in samples.items():
            self.no_errors(f"{name} (scenario 8)", loads)
        return {name: median(loads) for name, loads in samples.items()}

    def against(self, redis_url: str, code: Path) -> dict[str, Against]:
        """Scenario 9: scenarios 1-3 on one Redis, 1 worker, served by the work tree `code` (an
        earlier revision) and by this one, in alternating order from one run to the next."""
        samples: dict[str, dict[str, list[Load]]] = {
            who: {name: [] for name in API_SCENARIOS} for who in ("before", "now")
        }
        for run in range(self.runs):
            order = [("before", code), ("now", ROOT)]
            for who, tree in order if run % 2 == 0 else reversed(order):
                self.api_scenarios(redis_url, 1, samples[who], code=tree)
        figures = {}
        for name in API_SCENARIOS:
            before, now = samples["before"][name], samples["now"][name]
            self.no_errors(f"{name} (scenario 9)", before + now)
            # Each run's two figures were measured minutes apart at most: their ratio drifts
            # less than either figure does.
            ratios = [b.rps / a.rps for a, b in zip(before, now, strict=True)]
            figures[name] = Against(median(before), median(now), statistics.median(ratios))
        return figures

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
