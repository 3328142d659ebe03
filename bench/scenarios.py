"""The bench's scenarios: what `make bench` runs against the service and the bare endpoint."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from bench import live
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
    session_rss,
    wrk,
)
from bench.live import Loop
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
# Messages to other users are capped per sender per minute; the bench measures their cost, not that.
UNTHROTTLED = {"MESSAGE_RATE_PER_MINUTE": str(10**9)}
IDLE_STREAMS = 5000  # scenario 11, on one worker
RECEIVERS, DELIVERY_RATE = 1000, 1000  # scenario 12: streams, and messages a second to them
RECONNECTS = 2000  # scenario 13


Job = tuple[Server, tuple[str, str, str], str]  # a server, a scenario and a token for wrk


@dataclass(frozen=True)
class LiveFigures:
    """Scenarios 11-13: what the live streams of bench/live.py measured."""

    idle_streams: int  # 11
    rss_per_stream: float
    idle: Rounds  # "with streams", "without"
    delivery: dict[str, live.Delivery]  # 12, "single" and "cluster"
    reconnects: dict[str, live.Reconnects]  # 13


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
        self,
        redis_url: str,
        workers: int,
        settings: Mapping[str, str] | None = None,
        *,
        code: Path = ROOT,
        **extra: str,
    ) -> Iterator[Server]:
        """The service, started as `make run` starts it, from the work tree `code`; `settings`
        and `extra` override the bench's."""
        port = free_port()
        defaults = {
            "WORKERS": str(workers),
            "REDIS_URL": redis_url,
            "JWT_SECRET": secrets.token_urlsafe(48),
            "BCRYPT_ROUNDS": "12",
            "MESSAGE_HISTORY_LIMIT": "1000",
            "PYTHONPATH": str(code),
        }
        env = service_env(port, **{**defaults, **(settings or {}), **extra})
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

    def messaging(self, redis_url: str) -> Rounds:
        """Scenarios 8, 10, 14 and 15: one sender's `POST /message/` to itself ("message single"),
        `last 10` ("last single"), a message to another user ("other single") and to another user
        with a live stream open, read by curl ("live single"), on one Redis and on a 3-master
        cluster ("... cluster"), 1 worker each, all in the same rounds."""
        self.flush()
        cluster = start_cluster(self.workdir / "cluster")
        try:
            with (
                self.api(redis_url, 1, UNTHROTTLED) as single,
                self.api(cluster.url, 1, UNTHROTTLED, REDIS_CLUSTER="true") as clustered,
                ExitStack() as receivers,
            ):
                jobs: dict[str, Job] = {}
                received: dict[str, Path] = {}
                for kind, server in (("single", single), ("cluster", clustered)):
                    token = self.user(server.base, f"bencher-{kind}")
                    self.user(server.base, f"offline-{kind}")
                    listener = self.user(server.base, f"receiver-{kind}")
                    received[kind] = receivers.enter_context(self.listening(server, listener))
                    jobs[f"message {kind}"] = (server, MESSAGE, token)
                    jobs[f"last {kind}"] = (server, LAST_10, token)
                    jobs[f"other {kind}"] = (server, _to(f"offline-{kind}"), token)
                    jobs[f"live {kind}"] = (server, _to(f"receiver-{kind}"), token)
                rounds = self.rounds(_side_by_side(jobs))
                time.sleep(1)  # the last events on their way to curl
            for kind, path in received.items():
                sent = sum(loads[f"live {kind}"].requests for loads in rounds.each)
                got = path.read_bytes().count(b"event: message")
                self.checks.append(
                    (f"14. live receiver ({kind}): got all the messages wrk counted", got >= sent)
                )
            return rounds
        finally:
            cluster.stop()

    @contextmanager
    def listening(self, server: Server, token: str) -> Iterator[Path]:
        """A live receiver: curl reading `GET /events/` into a file, until the block ends."""
        path = self.workdir / f"events-{secrets.token_hex(4)}"
        with path.open("wb") as out:
            curl = subprocess.Popen(
                ["curl", "-sN", "-H", f"token: {token}", server.base + "/events/"], stdout=out
            )
        try:
            deadline = time.monotonic() + 10
            while b": connected" not in path.read_bytes():
                if time.monotonic() > deadline or curl.poll() is not None:
                    raise RuntimeError("the live receiver's stream did not open")
                time.sleep(0.05)
            yield path
        finally:
            curl.terminate()
            curl.wait()

    def live_streams(self, redis_url: str) -> LiveFigures:
        """Scenarios 11-13 on one Redis, and 12 and 13 on a 3-master cluster: live streams from
        the load generator of bench/live.py (accounts made at BCRYPT_ROUNDS=4, which no figure
        here includes, and one JWT secret for all the servers of one Redis)."""
        self.flush()
        loop = Loop()
        try:
            settings = {**UNTHROTTLED, "BCRYPT_ROUNDS": "4", "SIGNUP_ADDR_MAX": "1000000"}
            settings["JWT_SECRET"] = secrets.token_urlsafe(48)
            with self.api(redis_url, 1, settings) as server:
                users = self.live_users(loop, server, IDLE_STREAMS + 1)
                delivery = self.delivery(loop, server, users)
                reconnects = loop.run(live.reconnects(_port(server), users[:RECONNECTS]))
            rss, idle = self.idle_streams(loop, redis_url, settings, users[:IDLE_STREAMS])
            cluster = start_cluster(self.workdir / "live-cluster")
            try:
                with self.api(cluster.url, 1, settings, REDIS_CLUSTER="true") as server:
                    users = self.live_users(loop, server, RECONNECTS + 1)
                    cluster_delivery = self.delivery(loop, server, users)
                    cluster_reconnects = loop.run(
                        live.reconnects(_port(server), users[:RECONNECTS])
                    )
            finally:
                cluster.stop()
        finally:
            loop.close()
        return LiveFigures(
            IDLE_STREAMS,
            rss,
            idle,
            {"single": delivery, "cluster": cluster_delivery},
            {"single": reconnects, "cluster": cluster_reconnects},
        )

    def live_users(self, loop: Loop, server: Server, count: int) -> list[tuple[str, str]]:
        """`count` new accounts on `server`, logged in: (name, token) each."""
        names = [f"live-{n}" for n in range(count)]
        return list(zip(names, loop.run(live.sign_up(_port(server), names, PASSWORD)), strict=True))

    def delivery(self, loop: Loop, server: Server, users: list[tuple[str, str]]) -> live.Delivery:
        """Scenario 12: RECEIVERS streams, DELIVERY_RATE messages a second to them from the last
        of `users`, for twice the length of a wrk run."""
        return loop.run(
            live.delivery(
                _port(server), users[:RECEIVERS], users[-1][1], DELIVERY_RATE, self.seconds * 2
            )
        )

    def idle_streams(
        self, loop: Loop, redis_url: str, settings: dict[str, str], users: list[tuple[str, str]]
    ) -> tuple[float, Rounds]:
        """Scenario 11: resident bytes per idle stream (a stream for each of `users` on one
        worker), and `POST /message/` on that worker ("with streams") and on a twin with none
        ("without"), in rounds."""
        with (
            self.api(redis_url, 1, settings) as holding,
            self.api(redis_url, 1, settings) as plain,
        ):
            token = self.user(holding.base, "idle-sender")
            for server in (holding, plain):  # both warm before anything is counted
                wrk(server.base + MESSAGE[1], self.script, seconds=1, body=MESSAGE[2], token=token)
            before = session_rss(holding.pid)
            streams = loop.run(live.open_streams(_port(holding), [token for _, token in users]))
            time.sleep(2)
            rss = (session_rss(holding.pid) - before) / len(streams)
            rounds = self.rounds(
                {"with streams": (holding, MESSAGE, token), "without": (plain, MESSAGE, token)}
            )
            loop.run(live.drop(streams))
        return rss, rounds

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


def _to(name: str) -> tuple[str, str, str]:
    """`POST /message/` to another user."""
    return ("POST", "/message/", json.dumps({"to": name, "text": "hello"}))


def _port(server: Server) -> int:
    return int(server.base.rsplit(":", 1)[1])


def _side_by_side(jobs: dict[str, Job]) -> dict[str, Job]:
    """`jobs` ("message 1", "bare 1", "message 2"...) with those of one scenario next to each
    other, in their order: the ratios that count are between them."""
    return {label: jobs[label] for label in sorted(jobs, key=lambda label: label.split()[0])}
