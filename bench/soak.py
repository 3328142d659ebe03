"""`make soak`: steady moderate load for SOAK_MINUTES (20 by default), half on one Redis and half
on a 3-master cluster with a replica per master; midway through each, a fault: the Redis killed
and started again, a cluster master killed (its replica takes over) and started again.

Records every request's start, latency, status and error code, samples the service's RSS and
Redis's connections and memory every 5 s, and writes bench/SOAK.md with an SVG plot per half.
Pass: no 5xx outside the injected outages, RSS growth after warm-up under 10 %, Redis
connections flat, p99 back to its pre-fault level within 5 s of each fault's repair.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from bench import live
from support.processes import (
    ROOT,
    RedisClusterServers,
    free_port,
    service_env,
    spawn_redis,
    spawn_service,
    start_cluster,
    stop,
    wait_for_ping,
    wait_http,
)

SOAK = ROOT / "bench" / "SOAK.md"
RATE = 60  # messages, `last N` and lists per second, open loop
USERS = 20
PASSWORD = "soak password 1"  # noqa: S105 (throwaway accounts on a private Redis)
LISTENERS = 5  # users with a live client throughout
QUIET = 40.0  # a stream silent this long (past two heartbeats) is dropped and made anew
HISTORY = 5000  # MESSAGE_HISTORY_LIMIT of the soak: no message of a half is trimmed
WARM_UP = 120.0  # seconds before RSS and connections count
SAMPLE_EVERY = 5.0
RECOVERY_GRACE = 5.0  # p99 must be back this long after a repair


@dataclass
class Sample:
    """One request: when it started (seconds into the half), how long it took, its answer."""

    start: float
    latency: float
    status: int
    error: str
    kind: str


@dataclass
class Fault:
    """An injected fault: when it began and when it was repaired (seconds into the half)."""

    name: str
    began: float
    repaired: float = 0.0
    recovered: float = 0.0  # the first success after the repair


@dataclass
class Half:
    """What one half of the soak saw."""

    title: str
    seconds: float
    samples: list[Sample] = field(default_factory=list)
    gauges: list[tuple[float, int, int, int]] = field(default_factory=list)  # t, RSS, conns, mem
    faults: list[Fault] = field(default_factory=list)
    live: LiveCounts | None = None


@dataclass
class LiveCounts:
    """What the live clients of one half got, checked against their users' histories."""

    users: int
    accepted: int  # messages to them the service took (201)
    received: int  # message events
    connects: int  # streams opened (the first of each, then every reconnect)
    resets: int  # resumes the history could not serve: refetched with GET /messages/
    ends: int  # streams ended by their session's end (then logged in again)
    missed: int  # in the history at the end, but neither received nor refetched
    repeated: int  # received twice
    gone: int  # taken (201), not in the history at the end: lost with Redis's data


class Listeners:
    """A live SSE client for each of the first LISTENERS users, reconnecting with Last-Event-ID
    whenever its stream drops (or stays silent past two heartbeats), logging in again when its
    session is gone, and refetching the history after a `reset`."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.port = int(base.rsplit(":", 1)[1])
        self.names = [f"soak{n}" for n in range(LISTENERS)]
        self.accepted: dict[str, set[str]] = {name: set() for name in self.names}
        self.received: dict[str, list[str]] = {name: [] for name in self.names}
        self.refetched: dict[str, set[str]] = {name: set() for name in self.names}
        self.counts: Counter[str] = Counter()
        self.client = httpx.AsyncClient(base_url=base, timeout=10.0)
        self.tasks = [asyncio.ensure_future(self._listen(name)) for name in self.names]

    def sent(self, name: str, message_id: str) -> None:
        """The service took a message of `name`'s (201)."""
        if name in self.accepted:
            self.accepted[name].add(message_id)

    async def _login(self, name: str) -> str:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                body = {"name": name, "password": PASSWORD}
                response = await self.client.post("/login/", json=body)
                if response.status_code == 200:
                    token: str = response.json()["token"]
                    return token
            await asyncio.sleep(1)

    async def _history(self, name: str, token: str) -> set[str] | None:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            response = await self.client.get(
                f"/messages/?limit={HISTORY}", headers={"token": token}
            )
            if response.status_code == 200:
                return {message["id"] for message in response.json()["messages"]}
        return None

    async def _refetch(self, name: str, token: str) -> set[str]:
        """The history, read again until it can be (what a client does after a `reset`)."""
        for _ in range(120):
            ids = await self._history(name, token)
            if ids is not None:
                return ids
            await asyncio.sleep(0.5)
        return set()  # then the check at the end finds what is missing

    async def _listen(self, name: str) -> None:
        token = await self._login(name)
        last = ""
        while True:
            try:
                stream = await live.Stream.open(self.port, token, last)
            except live.Refused as refused:
                if refused.status == 401:
                    token = await self._login(name)
                await asyncio.sleep(0.5)
                continue
            except OSError:
                await asyncio.sleep(0.5)
                continue
            self.counts["connects"] += 1
            try:
                while (event := await asyncio.wait_for(stream.event(), QUIET)) is not None:
                    if event.kind == "message":
                        self.received[name].append(json.loads(event.data)["id"])
                    elif event.kind == "reset":
                        self.counts["resets"] += 1
                        self.refetched[name] |= await self._refetch(name, token)
                    elif event.kind == "end":
                        self.counts["ends"] += 1
                        token = await self._login(name)
                    last = event.event_id or last
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                pass  # dropped, or silent too long: reconnect where it stood
            finally:
                stream.close()
            await asyncio.sleep(0.2)

    async def finish(self) -> LiveCounts:
        """Let the last events arrive, stop the clients, and check what they got."""
        await asyncio.sleep(5)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        missed = gone = 0
        for name in self.names:
            history = await self._history(name, await self._login(name))
            assert history is not None, "the history could not be read at the end"
            got = set(self.received[name]) | self.refetched[name]
            missed += len((history & self.accepted[name]) - got)
            gone += len(self.accepted[name] - history)
        await self.client.aclose()
        return LiveCounts(
            users=len(self.names),
            accepted=sum(map(len, self.accepted.values())),
            received=sum(map(len, self.received.values())),
            connects=self.counts["connects"],
            resets=self.counts["resets"],
            ends=self.counts["ends"],
            missed=missed,
            repeated=sum(len(got) - len(set(got)) for got in self.received.values()),
            gone=gone,
        )


def _rss(session: int) -> int:
    """Resident bytes of the live processes of a session (the service and its workers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session:
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total


def _redis_gauges(ports: list[int]) -> tuple[int, int]:
    """Connected clients and used memory, summed over the Redis servers that answer."""
    clients = memory = 0
    for port in ports:
        try:
            with redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5) as node:
                clients += int(node.info("clients")["connected_clients"]) - 1  # not this one
                memory += int(node.info("memory")["used_memory"])
        except redis.RedisError:
            continue
    return clients, memory


class Load:
    """The load generator: an open loop of reads and writes, logins at cost 12 and refreshes."""

    def __init__(self, base: str, half: Half) -> None:
        self.base = base
        self.half = half
        self.began = time.monotonic()
        self.tokens: dict[str, str] = {}
        self.refresh: dict[str, str] = {}
        self.client = httpx.AsyncClient(base_url=base, timeout=5.0)
        self.tasks: set[asyncio.Task[None]] = set()
        self.relogging: set[str] = set()
        self.listeners: Listeners | None = None
        self.owners: dict[str, str] = {}  # whose each token is

    def now(self) -> float:
        """Seconds into the half."""
        return time.monotonic() - self.began

    async def request(self, kind: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """Send one request and record it; return its status and the JSON answer of a 2xx (else
        None)."""
        started = self.now()
        message_id = ""
        try:
            response = await self.client.request(method, path, **kwargs)
            status = response.status_code
            body = response.json() if response.content else {}
            message_id = response.headers.get("x-message-id", "")
        except httpx.HTTPError as exc:
            status, body = 0, {"error": type(exc).__name__}
        error = body.get("error", "") if isinstance(body, dict) else ""
        self.half.samples.append(Sample(started, self.now() - started, status, error, kind))
        owner = self.owners.get(kwargs.get("headers", {}).get("token", ""), "")
        if message_id and self.listeners is not None:
            self.listeners.sent(owner, message_id)
        return status, body if 200 <= status < 300 else None

    async def login(self, name: str) -> None:
        """Log `name` in with a refresh token: the session its requests use from now on."""
        body = {"name": name, "password": PASSWORD, "refresh": True}
        _, answer = await self.request("login", "POST", "/login/", json=body)
        if answer is not None:
            self.tokens[name], self.refresh[name] = answer["token"], answer["refresh_token"]
            self.owners[answer["token"]] = name

    async def visit(self, name: str) -> None:
        """A login of its own at cost 12, then its logout (a short session beside the main one)."""
        body = {"name": name, "password": PASSWORD}
        _, answer = await self.request("login", "POST", "/login/", json=body)
        if answer is not None:
            headers = {"token": answer["token"]}
            await self.request("logout", "POST", "/logout/", headers=headers)

    async def rotate(self, name: str) -> None:
        """Refresh `name`'s pair."""
        body = {"refresh_token": self.refresh.get(name, "")}
        _, answer = await self.request("refresh", "POST", "/token/refresh/", json=body)
        if answer is not None:
            self.tokens[name], self.refresh[name] = answer["token"], answer["refresh_token"]
            self.owners[answer["token"]] = name

    async def one(self) -> None:
        """One message, `last N` or list, as a random user."""
        name = random.choice(list(self.tokens))
        token = self.tokens[name]
        headers = {"token": token}
        pick = random.random()
        if pick < 0.6:
            body = {"text": f"soak message {secrets.token_hex(4)}"}
            status, _ = await self.request(
                "message", "POST", "/message/", json=body, headers=headers
            )
        elif pick < 0.8:
            body = {"text": "last 10"}
            status, _ = await self.request("last", "POST", "/message/", json=body, headers=headers)
        else:
            status, _ = await self.request("list", "GET", "/messages/?limit=10", headers=headers)
        if status == 401 and self.tokens.get(name) == token and name not in self.relogging:
            self.relogging.add(name)  # the session was lost with the data: log in again, once
            await self.login(name)
            self.relogging.discard(name)

    def spawn(self, coroutine: Any) -> None:
        """Run `coroutine` in the background, keeping a reference."""
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run(self, seconds: float) -> None:
        """The open loop for `seconds`: RATE requests a second, a login every 2 s, a refresh a
        second."""
        for n in range(USERS):
            await self.login(f"soak{n}")
        self.began = time.monotonic()
        self.half.samples.clear()
        tick = 1 / RATE
        next_at = time.monotonic()
        count = 0
        while self.now() < seconds:
            count += 1
            self.spawn(self.one())
            if count % (2 * RATE) == 0:
                self.spawn(self.visit(f"soak{random.randrange(USERS)}"))
            if count % RATE == 0:
                self.spawn(self.rotate(f"soak{random.randrange(USERS)}"))
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=10)
        await self.client.aclose()


@contextmanager
def _service(redis_url: str, log: Path, **extra: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = service_env(
        port,
        REDIS_URL=redis_url,
        JWT_SECRET=secrets.token_urlsafe(48),
        BCRYPT_ROUNDS="12",
        ACCESS_LOG="false",
        LOG_LEVEL="WARNING",
        MESSAGE_HISTORY_LIMIT=str(HISTORY),
        **extra,
    )
    output = log.open("w")
    process = spawn_service(env, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", process=process)
        yield base, process.pid
    finally:
        stop(process)
        output.close()


def _signups(base: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        for n in range(USERS):
            client.post("/signup/", json={"name": f"soak{n}", "password": PASSWORD})


async def _watch(load: Load, half: Half, pid: int, ports: list[int], seconds: float) -> None:
    while load.now() < seconds:
        clients, memory = _redis_gauges(ports)
        half.gauges.append((load.now(), _rss(pid), clients, memory))
        await asyncio.sleep(SAMPLE_EVERY)


def _recovered(half: Half, fault: Fault) -> float:
    """When the first message sent after the repair was stored."""
    stored = [
        s.start + s.latency
        for s in half.samples
        if s.start >= fault.repaired and s.kind == "message" and s.status == 201
    ]
    return min(stored, default=half.seconds)


async def _single_half(workdir: Path, seconds: float) -> Half:
    half = Half("One Redis (killed with SIGKILL midway, started again 5 s later; AOF on)", seconds)
    port = free_port()
    options = ("--appendonly", "yes", "--appendfsync", "everysec")
    process = spawn_redis(port, workdir, *options)
    url = f"redis://127.0.0.1:{port}/0"
    wait_for_ping(url)
    try:
        with _service(url, workdir / "service.log") as (base, pid):
            _signups(base)
            load = Load(base, half)
            load.listeners = listeners = Listeners(base)

            async def fault() -> None:
                nonlocal process
                await asyncio.sleep(seconds / 2)
                failure = Fault("Redis killed", load.now())
                process.kill()
                process.wait()
                await asyncio.sleep(5)
                process = spawn_redis(port, workdir, *options)
                await asyncio.to_thread(wait_for_ping, url)
                failure.repaired = load.now()
                half.faults.append(failure)

            await asyncio.gather(
                load.run(seconds), fault(), _watch(load, half, pid, [port], seconds)
            )
            half.live = await listeners.finish()
    finally:
        process.terminate()
        process.wait()
    _show_errors(workdir / "service.log")
    return half


def _show_errors(log: Path) -> None:
    """Print what the service logged at ERROR (a traceback is a bug to report)."""
    text = log.read_text()
    if "ERROR" in text or "Traceback" in text:
        print(f"the service logged errors ({log}):\n{text[-4000:]}", file=sys.stderr)


async def _cluster_half(workdir: Path, seconds: float) -> Half:
    half = Half(
        "3-master cluster, a replica per master (a master killed midway: its replica takes "
        "over; the old master starts again as a replica)",
        seconds,
    )
    cluster: RedisClusterServers = start_cluster(workdir, masters=3, replicas=1)
    try:
        with _service(cluster.url, workdir / "service.log", REDIS_CLUSTER="true") as (
            base,
            pid,
        ):
            _signups(base)
            load = Load(base, half)
            load.listeners = listeners = Listeners(base)

            async def fault() -> None:
                await asyncio.sleep(seconds / 2)
                index = _a_master(cluster)
                with redis.Redis(port=cluster.ports[index], decode_responses=True) as node:
                    dead_id = str(node.execute_command("CLUSTER MYID"))
                alive = next(p for i, p in enumerate(cluster.ports) if i != index)
                failure = Fault("cluster master killed", load.now())
                cluster.kill(index)
                await asyncio.to_thread(_wait_promoted, dead_id, alive)
                failure.repaired = load.now()
                half.faults.append(failure)
                cluster.restart(index)

            await asyncio.gather(
                load.run(seconds), fault(), _watch(load, half, pid, cluster.ports, seconds)
            )
            half.live = await listeners.finish()
    finally:
        cluster.stop()
    _show_errors(workdir / "service.log")
    return half


def _a_master(cluster: RedisClusterServers) -> int:
    for index, port in enumerate(cluster.ports):
        with redis.Redis(port=port, decode_responses=True) as node:
            if node.info("replication")["role"] == "master":
                return index
    raise RuntimeError("no master")


def _wait_promoted(dead_id: str, alive: int) -> None:
    """Wait until the cluster marks the dead master failed and is whole again without it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            nodes = subprocess.run(
                ["redis-cli", "-p", str(alive), "cluster", "nodes"],
                capture_output=True,
                text=True,
                check=True,
                timeout=5,
            ).stdout
            failed = any(
                line.startswith(dead_id) and "fail" in line.split()[2].split(",")
                for line in nodes.splitlines()
            )
            with redis.Redis(port=alive, decode_responses=True) as node:
                state = node.execute_command("CLUSTER INFO").get("cluster_state")
            if failed and state == "ok":
                return
        except (redis.RedisError, subprocess.SubprocessError):
            pass
        time.sleep(0.1)
    raise RuntimeError("no replica took over")


def _p99(latencies: list[float]) -> float:
    """The 99th percentile (0 for none)."""
    if not latencies:
        return 0.0
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _steady(sample: Sample) -> bool:
    return sample.kind in ("message", "last", "list")


def _outage(half: Half, sample: Sample) -> bool:
    # From the requests in flight when the fault began (up to the 2 s time bound before it) to
    # the first message stored after the repair.
    return any(f.began - 2.5 <= sample.start <= f.recovered for f in half.faults)


def _svg(half: Half, path: Path) -> None:
    """Throughput (blue) and p99 (orange) per 10 s, fault windows shaded."""
    width, height, step = 720, 240, 10
    buckets = int(half.seconds // step) + 1
    counts = [0] * buckets
    latencies: list[list[float]] = [[] for _ in range(buckets)]
    for sample in half.samples:
        if _steady(sample) and 200 <= sample.status < 300:
            bucket = min(int(sample.start // step), buckets - 1)
            counts[bucket] += 1
            latencies[bucket].append(sample.latency * 1000)
    rps = [count / step for count in counts]
    p99 = [_p99(values) for values in latencies]
    top_rps, top_p99 = max([*rps, 1.0]) * 1.1, max([*p99, 1.0]) * 1.1

    def x(seconds: float) -> float:
        return 40 + (width - 80) * seconds / half.seconds

    def y(value: float, top: float) -> float:
        return height - 30 - (height - 50) * value / top

    def line(values: list[float], top: float, color: str) -> str:
        points = " ".join(f"{x(i * step):.1f},{y(v, top):.1f}" for i, v in enumerate(values))
        return f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>'

    shades = "".join(
        f'<rect x="{x(f.began):.1f}" y="20" width="{max(x(f.recovered) - x(f.began), 2):.1f}" '
        f'height="{height - 50}" fill="#f3c6c6"/>'
        for f in half.faults
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="#fff"/>',
        shades,
        line(rps, top_rps, "#1a5fb4"),
        line(p99, top_p99, "#e66100"),
        f'<text x="40" y="14" fill="#1a5fb4">requests/s per 10 s (top {top_rps:.0f})</text>',
        f'<text x="380" y="14" fill="#e66100">p99 ms per 10 s (top {top_p99:.0f})</text>',
        f'<text x="40" y="{height - 10}">0 min</text>',
        f'<text x="{width - 80}" y="{height - 10}">{half.seconds / 60:.0f} min</text>',
        "</svg>\n",
    ]
    path.write_text("".join(parts))


def _minute_rows(half: Half) -> list[str]:
    rows = []
    for minute in range(int(half.seconds // 60)):
        inside = [s for s in half.samples if minute * 60 <= s.start < (minute + 1) * 60]
        steady = [s.latency * 1000 for s in inside if _steady(s) and 200 <= s.status < 300]
        gauges = [g for g in half.gauges if minute * 60 <= g[0] < (minute + 1) * 60]
        _, rss, conns, memory = gauges[-1] if gauges else (0, 0, 0, 0)
        failed = Counter(f"{s.status} {s.error}".strip() for s in inside if _failed(s))
        told = ", ".join(f"{k}: {v}" for k, v in sorted(failed.items())) or "none"
        rows.append(
            f"| {minute + 1} | {len(inside) / 60:.0f} | {_p99(steady):.1f} | {rss / 2**20:.1f} "
            f"| {conns} | {memory / 2**20:.1f} | {told} |"
        )
    return rows


def _failed(sample: Sample) -> bool:
    return sample.status >= 500 or sample.status == 0


def _latencies(half: Half, start: float, end: float) -> list[float]:
    return [
        s.latency * 1000
        for s in half.samples
        if _steady(s) and start <= s.start < end and 200 <= s.status < 300
    ]


def _report(half: Half, plot: str) -> tuple[list[str], list[tuple[str, bool]]]:
    for fault in half.faults:
        fault.recovered = _recovered(half, fault)
    lines = [f"## {half.title}", "", f"![throughput and p99]({plot})", ""]
    lines += [
        "| minute | requests/s | p99 ms | RSS MB | Redis connections | Redis MB | errors |",
        "|---|---|---|---|---|---|---|",
        *_minute_rows(half),
    ]
    by_kind = Counter((s.kind, s.status) for s in half.samples)
    answers = ", ".join(f"{kind} {status}: {n}" for (kind, status), n in sorted(by_kind.items()))
    lines += ["", f"Answers by kind and status: {answers}.", ""]
    name = half.title.split(" (")[0]
    stray = [s for s in half.samples if _failed(s) and not _outage(half, s)]
    checks = [(f"{name}: no 5xx outside the injected outage ({len(stray)})", not stray)]
    after = [g for g in half.gauges if g[0] >= WARM_UP]
    if after:
        growth = after[-1][1] / after[0][1] - 1
        checks.append(
            (f"{name}: RSS growth after warm-up under 10 % ({growth:+.1%})", growth < 0.1)
        )
        quiet = [
            g[2]
            for g in after
            if not any(f.began - SAMPLE_EVERY <= g[0] <= f.recovered + 30 for f in half.faults)
        ]
        low, high = min(quiet, default=0), max(quiet, default=0)
        checks.append((f"{name}: Redis connections flat ({low}-{high})", high - low <= 2))
    for fault in half.faults:
        pre = _p99(_latencies(half, fault.began - 60, fault.began))
        start = fault.recovered + RECOVERY_GRACE
        post = _p99(_latencies(half, start, start + 30))
        lines.append(
            f"- {fault.name} at {fault.began:.0f} s, repaired at {fault.repaired:.0f} s, first "
            f"message stored again at {fault.recovered:.0f} s; p99 {pre:.1f} ms in the minute "
            f"before, {post:.1f} ms in the 30 s from {RECOVERY_GRACE:.0f} s after that."
        )
        ok = post <= max(1.5 * pre, pre + 5)
        checks.append((f"{fault.name}: p99 back within 5 s ({pre:.1f} -> {post:.1f} ms)", ok))
    if half.live is not None:
        got = half.live
        lines.append(
            f"- Live clients ({got.users} users, a stream each, reconnecting with "
            f"`Last-Event-ID`): {got.accepted} messages to them taken, {got.received} received "
            f"over {got.connects} streams, {got.resets} resets (then refetched), {got.ends} "
            f"streams ended with their session; {got.missed} missing from what they got, "
            f"{got.repeated} received twice, {got.gone} taken but not in the history at the end "
            "(lost with Redis's data)."
        )
        checks.append(
            (
                f"{name}: no live client missed a message its history holds ({got.missed} "
                f"missing, {got.repeated} twice)",
                got.missed == 0 and got.repeated == 0 and got.received > 0,
            )
        )
    lines.append("")
    return lines, checks


def main() -> int:
    """Run both halves and write bench/SOAK.md."""
    minutes = float(os.environ.get("SOAK_MINUTES", "20"))
    seconds = minutes * 60 / 2
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "single").mkdir()
        single = asyncio.run(_single_half(Path(tmp) / "single", seconds))
        cluster = asyncio.run(_cluster_half(Path(tmp) / "cluster", seconds))
    sections: list[str] = []
    checks: list[tuple[str, bool]] = []
    for half, plot in ((single, "soak-single.svg"), (cluster, "soak-cluster.svg")):
        lines, passed = _report(half, plot)
        _svg(half, ROOT / "bench" / plot)
        sections += lines
        checks += passed
    header = [
        "# Soak results",
        "",
        f"Written by `make soak` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {minutes:g} minutes "
        f"({minutes / 2:g} on one Redis, {minutes / 2:g} on a cluster), 1 worker, "
        f"{RATE} messages, `last 10` and lists a second (60/20/20 %) over {USERS} users, a "
        "login at cost 12 and its logout every 2 s, and a refresh every second (each user's "
        "main session rotated in turn); the first "
        f"{LISTENERS} users each have a live SSE client throughout. Errors count 5xx and failed "
        "connections.",
        "",
        "| check | passed |",
        "|---|---|",
        *(f"| {name} | {'yes' if ok else '**no**'} |" for name, ok in checks),
        "",
    ]
    SOAK.write_text("\n".join(header + sections))
    print("\n".join(header + sections))
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
