"""The bench's report: bench/RESULTS.md from one run's figures."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from typing import NamedTuple

from bench.harness import CONNECTIONS, Load, Rounds
from bench.scenarios import API_SCENARIOS, DELIVERY_RATE, LiveFigures

# Scenario 9's "no worse": a ratio of two builds' throughput measured in one run moves by a few
# percent between runs of the same code here, so "no worse" is read as at least this.
NO_WORSE = 0.97
CLUSTER_LABELS = {"message": "`POST /message/`", "last": "`last 10`"}  # scenario 8's scenarios


@dataclass
class Results:
    """Everything one `make bench` run measured."""

    seconds: int
    runs: int
    throughput: Rounds  # scenarios 1-3 and the bare ceiling, 1 worker and 2: "message 1"...
    idle: Load  # scenario 4
    during: Load
    logins: Load
    short: Load  # scenario 5
    long: Load
    mem_1x: int  # scenario 6
    mem_2x: int
    length: int
    metrics: Rounds  # scenario 7: "metrics", "no metrics"
    cluster: Rounds  # scenarios 8, 10, 14, 15: "message single", "other cluster", "live single"...
    live: LiveFigures  # scenarios 11-13
    checks: list[tuple[str, bool]] = field(default_factory=list)
    baseline: str | None = None  # scenario 9, when asked for: the earlier revision
    against: Rounds | None = None  # its rounds: "message before", "message now"...


BACKENDS = {"single": "one Redis", "cluster": "3-master cluster"}
Target = tuple[str, str, bool]  # what was aimed at, what was measured, met


class Spread(NamedTuple):
    """Per-round ratios: their median, and how it reads with their range."""

    median: float
    text: str


def _spread(ratios: list[float], digits: int) -> Spread:
    """The Spread of `ratios`, written with `digits` decimals."""
    middle = statistics.median(ratios)
    return Spread(
        middle,
        f"{middle:.{digits}f}x (rounds: {min(ratios):.{digits}f}-{max(ratios):.{digits}f})",
    )


def _server_us(load: Load) -> str:
    return f"{load.cpu.server_us:.0f}" if load.cpu is not None else "?"


def _live(rounds: Rounds, figures: LiveFigures) -> tuple[list[str], list[Target]]:
    """The rows and targets of scenarios 10-15 (messages between users and live delivery)."""
    rows: list[str] = []
    targets: list[Target] = []
    for kind in ("single", "cluster"):
        other = _spread(rounds.ratios(f"other {kind}", f"message {kind}"), 2)
        live = _spread(rounds.ratios(f"live {kind}", f"other {kind}"), 2)
        rps = {name: rounds.median(f"{name} {kind}").rps for name in ("message", "other", "live")}
        backend = BACKENDS[kind]
        rows += [
            f"| 10. to another user / to yourself, {backend}, 1 worker | {rps['other']:.0f} / "
            f"{rps['message']:.0f} rps ({other.text}) |",
            f"| 14. to a user with a live stream / with none, {backend}, 1 worker | "
            f"{rps['live']:.0f} / {rps['other']:.0f} rps ({live.text}) |",
        ]
        targets += [
            (
                f"10. to another user >= 0.85x to yourself ({backend})",
                other.text,
                other.median >= 0.85,
            ),
            (
                f"14. a live receiver costs <= 1.15x ({backend}): throughput >= 0.87x",
                live.text,
                live.median >= 1 / 1.15,
            ),
        ]
    for name in ("other", "live"):
        ratio = _spread(rounds.ratios(f"{name} cluster", f"{name} single"), 2)
        targets.append(
            (f"15. cluster >= 0.80x one Redis (10./14. `{name}`)", ratio.text, ratio.median >= 0.8)
        )
    idle = _spread(figures.idle.ratios("with streams", "without"), 2)
    kib = figures.rss_per_stream / 1024
    rows += [
        f"| 11. {figures.idle_streams} idle SSE streams on 1 worker | {kib:.1f} KiB of RSS each; "
        f"`POST /message/` with them / without {figures.idle.median('with streams').rps:.0f} / "
        f"{figures.idle.median('without').rps:.0f} rps ({idle.text}) |",
    ]
    targets += [
        ("11. RSS per idle stream <= 40 KiB", f"{kib:.1f} KiB", kib <= 40),
        (
            f"11. throughput with {figures.idle_streams} streams >= 0.90x",
            idle.text,
            idle.median >= 0.9,
        ),
    ]
    for kind, delivery in figures.delivery.items():
        p50, p99 = delivery.percentile(0.5), delivery.percentile(0.99)
        backend = BACKENDS[kind]
        rows.append(
            f"| 12. {delivery.receivers} receivers, {delivery.rate:.0f} messages/s to them, "
            f"{backend} | publish-to-receive p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
            f"{delivery.sent} sent, {delivery.refused} refused, {delivery.received} received, "
            f"{delivery.lost} lost, "
            f"{delivery.repeated} twice, {delivery.out_of_order} streams out of order |"
        )
        targets.append(
            (
                f"12. p50 <= 10 ms, p99 <= 50 ms, none lost ({backend})",
                f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, {delivery.lost} lost",
                p50 <= 10
                and p99 <= 50
                and delivery.lost == delivery.refused == delivery.repeated == 0
                and delivery.out_of_order == 0
                and delivery.rate >= DELIVERY_RATE * 0.95,
            )
        )
    for kind, back in figures.reconnects.items():
        backend = BACKENDS[kind]
        rows.append(
            f"| 13. {back.clients} clients reconnecting at once with `Last-Event-ID`, "
            f"{back.missed} messages missed each, {backend} | {back.resumed} resumed with no gap "
            f"in {back.seconds:.2f} s; {back.refused} refused, {back.resets} reset, "
            f"{back.wrong} wrong |"
        )
        targets.append(
            (
                f"13. every client resumed with no gap within 10 s ({backend})",
                f"{back.resumed} of {back.clients} in {back.seconds:.2f} s",
                back.resumed == back.clients and back.seconds <= 10,
            )
        )
    for name, single, cluster in (
        (
            "12. p99",
            figures.delivery["single"].percentile(0.99),
            figures.delivery["cluster"].percentile(0.99),
        ),
        (
            "13. time to resume",
            figures.reconnects["single"].seconds,
            figures.reconnects["cluster"].seconds,
        ),
    ):
        targets.append(
            (
                f"15. cluster within 0.80x one Redis ({name})",
                f"{single:.2f} / {cluster:.2f} = {single / cluster:.2f}x",
                single / cluster >= 0.8,
            )
        )
    return rows, targets


def render(results: Results) -> str:
    """The Markdown of bench/RESULTS.md."""
    rounds = results.throughput
    one, two = (
        {name: rounds.median(f"{name} {workers}") for name in ("bare", *API_SCENARIOS)}
        for workers in (1, 2)
    )
    idle, during, logins = results.idle, results.during, results.logins
    short, long = results.short, results.long
    mem_1x, mem_2x, length = results.mem_1x, results.mem_2x, results.length
    with_metrics = results.metrics.median("metrics")
    without_metrics = results.metrics.median("no metrics")
    metrics = _spread(results.metrics.ratios("metrics", "no metrics"), 3)
    cluster = {
        name: _spread(results.cluster.ratios(f"{name} cluster", f"{name} single"), 2)
        for name in CLUSTER_LABELS
    }
    bare_gains = rounds.ratios("bare 2", "bare 1")
    gains = {
        name: _spread(
            [
                gain / bare
                for gain, bare in zip(
                    rounds.ratios(f"{name} 2", f"{name} 1"), bare_gains, strict=True
                )
            ],
            2,
        )
        for name in API_SCENARIOS
    }
    against = (
        {
            name: (
                results.against.median(f"{name} before"),
                results.against.median(f"{name} now"),
                _spread(results.against.ratios(f"{name} now", f"{name} before"), 3),
                _spread(results.against.ratios(f"{name} again", f"{name} now"), 3),
            )
            for name in API_SCENARIOS
        }
        if results.against is not None
        else {}
    )
    live_rows, live_targets = _live(results.cluster, results.live)
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
    unnumbered = {key: label.split(" ", 1)[1] for key, label in labels.items()}
    to_bare = {
        (key, workers): _spread(rounds.ratios(f"{key} {workers}", f"bare {workers}"), 2)
        for key in labels
        for workers in (1, 2)
    }
    for key, label in labels.items():
        lines.append(
            f"| {label} | {rps1[key]:.0f} rps | {to_bare[key, 1].median:.2f} | "
            f"{rps2[key]:.0f} rps | {to_bare[key, 2].median:.2f} |"
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
        f"{with_metrics.rps:.0f} / {without_metrics.rps:.0f} rps ({metrics.text}) |",
        *(
            f"| 8. {label}, one Redis / 3-master cluster, 1 worker | "
            f"{results.cluster.median(f'{key} single').rps:.0f} / "
            f"{results.cluster.median(f'{key} cluster').rps:.0f} rps ({cluster[key].text}) |"
            for key, label in CLUSTER_LABELS.items()
        ),
        f"| 2 workers over 1: bare endpoint | {_spread(bare_gains, 2).text} |",
        *live_rows,
        *(
            f"| 9. {unnumbered[key]}, `{results.baseline}` / now, one Redis, 1 worker "
            f"| {before.rps:.0f} / {now.rps:.0f} rps ({ratio.text}); server {_server_us(before)} / "
            f"{_server_us(now)} us per request; now twice (the noise floor): {floor.text} |"
            for key, (before, now, ratio, floor) in against.items()
        ),
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    targets = [
        (
            "1. message >= 0.50x bare (1 worker)",
            to_bare["message", 1].text,
            to_bare["message", 1].median >= 0.5,
        ),
        (
            "2. `last 10` >= 0.50x bare (1 worker)",
            to_bare["last", 1].text,
            to_bare["last", 1].median >= 0.5,
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
            f"{1 - metrics.median:.1%}",
            metrics.median >= 0.95,
        ),
        *(
            (
                f"8. cluster >= 0.80x one Redis ({label})",
                cluster[key].text,
                cluster[key].median >= 0.8,
            )
            for key, label in CLUSTER_LABELS.items()
        ),
        *(
            (
                f"2-worker gain >= 0.90x the bare endpoint's ({unnumbered[k]})",
                f"{v:.2f}x / {bare_scaling:.2f}x (medians); round by round {gains[k].text}",
                gains[k].median >= 0.9,
            )
            for k, v in scaling.items()
        ),
        *(
            (
                f"9. no worse than `{results.baseline}` ({unnumbered[key]}): >= {NO_WORSE:.2f}x",
                ratio.text,
                ratio.median >= NO_WORSE,
            )
            for key, (_, _, ratio, _) in against.items()
        ),
        *live_targets,
        *((check, "", ok) for check, ok in results.checks),
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
        f"wrk over loopback, {CONNECTIONS} connections, {results.seconds} s per wrk run, "
        "BCRYPT_ROUNDS=12. What is compared (scenarios 1-3 and the bare endpoint with 1 worker "
        "and 2, scenarios 7-11, 14 and 15) is served by servers up at once and measured in "
        f"{results.runs} rounds; a round runs every server's loads in one order, then in the "
        "reverse order, so that a steady drift of the machine weighs the same on each. Figures "
        "are medians over the rounds; a ratio is each round's, their median and their range. "
        "Throughput is compared only within this one run: the machine is noisy. Scenarios "
        "11-13 drive live streams from bench/live.py (one asyncio process on this machine, "
        "its accounts made at BCRYPT_ROUNDS=4, which none of their figures includes); a "
        "message's latency runs from the sender's clock as it wrote the request to the "
        "receiver's as it parsed the event.",
        "",
    ]
    return "\n".join(header + lines) + "\n"
