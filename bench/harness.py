"""The bench's harness: servers in sessions of their own, wrk runs, CPU accounting, medians."""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.processes import ROOT, stop, wait_http

CONNECTIONS = 32
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
class Rounds:
    """Loads measured in rounds (`Bench.rounds`): for each round, each job's load by its label."""

    each: list[dict[str, Load]]

    def median(self, label: str) -> Load:
        """The job's figures, each the median over the rounds."""
        return median([loads[label] for loads in self.each])

    def ratios(self, numerator: str, denominator: str) -> list[float]:
        """Each round's throughput of one job divided by another's, measured seconds apart."""
        return [loads[numerator].rps / loads[denominator].rps for loads in self.each]


@dataclass(frozen=True)
class Server:
    """A server started for the bench: its base URL, and its pid (which leads its session)."""

    base: str
    pid: int


TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _cpu_of(stat: str) -> tuple[int, float]:
    # /proc/<pid>/stat after the command name: state ppid pgrp session ... utime (12th) stime.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[3]), (int(fields[11]) + int(fields[12])) / TICKS


def _sessions() -> Iterator[tuple[int, int, float]]:
    # Each live process: its pid, its session and the CPU seconds it has used.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            sid, seconds = _cpu_of(stat.read_text())
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
        yield int(stat.parent.name), sid, seconds


def session_cpu(session: int) -> float:
    """CPU seconds used so far by the live processes of a session (a server and its workers)."""
    return sum(seconds for _, sid, seconds in _sessions() if sid == session)


def session_pids(session: int) -> list[int]:
    """The live processes of a session."""
    return sorted(pid for pid, sid, _ in _sessions() if sid == session)


def session_rss(session: int) -> int:
    """Resident bytes of the live processes of a session (a server and its workers)."""
    total = 0
    for pid in session_pids(session):
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
    return total


def process_cpu(pid: int) -> float:
    """CPU seconds used so far by one process."""
    return _cpu_of(Path(f"/proc/{pid}/stat").read_text())[1]


def children_cpu() -> float:
    """CPU seconds used by this process's finished children (wrk, once it has returned)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def require(*tools: str, install: str) -> None:
    """Exit with how to install them unless every one of `tools` is on the PATH."""
    for tool in tools:
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: {install}")


@contextmanager
def process(
    args: list[str], env: dict[str, str], ready_url: str, *, cwd: Path = ROOT, seconds: float = 30
) -> Iterator[int]:
    """Run a server process (in a session of its own, in `cwd`) until the block ends; yield its
    pid once `ready_url` answers (within `seconds`)."""
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_http(ready_url, process=proc, seconds=seconds)
        time.sleep(1.0)  # let every worker finish starting
        yield proc.pid
    finally:
        stop(proc)


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


@contextmanager
def checkout(revision: str, workdir: Path) -> Iterator[Path]:
    """A detached work tree of `revision` (this checkout itself for "."), removed afterwards."""
    if revision == ".":
        yield ROOT
        return
    tree = workdir / f"tree-{len(list(workdir.glob('tree-*')))}"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), revision],
        check=True,
    )
    try:
        yield tree
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True
        )
