"""Every benchmark in one go, then one table of their headline figures.

    python -m bench [--quick] [--only NAME ...]

Each bench runs as its own process (its own throwaway PostgreSQL, server and
Envoy), one after the other, with its output shown as it comes; the table at
the end repeats the lines that carry a figure against a baseline of the same
run. `--quick` shrinks every workload (minutes instead of tens of minutes on
two cores; the ratios move less than the absolute figures). docs/performance.md
shows the latest full run and how to read it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Bench:
    name: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]
    # Lines of its output that state a figure against its baseline.
    headline: str


BENCHES = (
    Bench(
        "throughput",
        ("--jobs", "20000"),
        ("--jobs", "5000"),
        r"raw SQL|baseline|latency|ratio",
    ),
    Bench("big_dag", ("--jobs", "100000", "--rest"), ("--jobs", "20000", "--rest"), r"baseline"),
    Bench(
        "cron_lateness",
        ("--schedules", "100", "--seconds", "5"),
        ("--schedules", "50", "--seconds", "3"),
        r"p50|p99",
    ),
    Bench(
        "metrics_overhead",
        ("--jobs", "20000", "--rounds", "3"),
        ("--jobs", "4000", "--rounds", "3"),
        r"ratio|median",
    ),
    Bench(
        "prune",
        ("--backlog", "1000000", "--window", "20"),
        ("--backlog", "100000", "--window", "8"),
        r"jobs/s|ratio|pruned",
    ),
    Bench("unary", ("--calls", "300", "--rounds", "3"), ("--calls", "100", "--rounds", "2"), r"x$|\dx "),
    Bench("scale", (), ("--quick",), r"— (met|NOT met)$|/ 1 worker:|not measured"),
    # Needs the `bench` extra for its peers (it says so and leaves them out).
    Bench("peers", ("--jobs", "20000"), ("--quick",), r"— (met|NOT met)$"),
)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    parser.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], help="run only these")
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    failed: list[str] = []
    for bench in BENCHES:
        if args.only and bench.name not in args.only:
            continue
        argv = [
            sys.executable,
            "-m",
            f"bench.{bench.name}",
            *(bench.quick_args if args.quick else bench.args),
        ]
        print(f"\n=== {' '.join(['python', *argv[1:]])}", flush=True)
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            if re.search(bench.headline, line):
                rows.append((bench.name, line.strip()))
        if proc.wait() != 0:
            failed.append(bench.name)
            rows.append((bench.name, f"FAILED (exit {proc.returncode})"))
        print(f"=== {bench.name}: {time.monotonic() - started:.0f} s", flush=True)
    print("\n| bench | figure |\n|---|---|")
    for name, line in rows:
        print(f"| {name} | {line.replace('|', '/')} |")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
