"""`make bench`: the API against a bare Sanic endpoint under wrk, on this machine, in one run.

Starts a private redis-server and the service the way `make run` does (BCRYPT_ROUNDS=12), drives it
with wrk over loopback, and reports every throughput as a ratio to a bare Sanic endpoint served with
the same workers and connections, measured in rounds of both. Writes bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.harness import checkout, require
from bench.report import Results, render
from bench.scenarios import Bench
from support.processes import ROOT

RESULTS = ROOT / "bench" / "RESULTS.md"


def main() -> int:
    """Run every scenario and write bench/RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--runs", type=int, default=3, help="rounds of every compared load")
    parser.add_argument(
        "--baseline",
        help="scenario 9: also compare scenarios 1-3 with the service of this git revision",
    )
    args = parser.parse_args()
    require(
        "wrk", "redis-server", "redis-cli", "curl", install="apt-get install wrk redis-server curl"
    )

    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args.seconds, args.runs, Path(tmp))
        with bench.redis() as redis_url:
            throughput = bench.throughput(redis_url)
            idle, during, logins = bench.login_flood(redis_url)
            short, long = bench.history_cost(redis_url)
            mem_1x, mem_2x, length = bench.memory_per_user(redis_url)
            metrics = bench.metrics_cost(redis_url)
            cluster = bench.messaging(redis_url)
            streams = bench.live_streams(redis_url)
            against = None
            if args.baseline:
                with checkout(args.baseline, Path(tmp)) as code:
                    against = bench.against(redis_url, code)
    text = render(
        Results(
            args.seconds,
            args.runs,
            throughput,
            idle,
            during,
            logins,
            short,
            long,
            mem_1x,
            mem_2x,
            length,
            metrics,
            cluster,
            streams,
            bench.checks,
            args.baseline,
            against,
        )
    )
    RESULTS.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
