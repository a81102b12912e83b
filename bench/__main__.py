"""Every benchmark in one go, printed as one table.

    python -m bench [--quick] [--retention-rows 2000000] [--skip NAME ...]

Runs, on the embedded PostgreSQL unless DATABASE_URL is set: the enqueue
rate against plain INSERTs (bench/enqueue.py); idle lateness and the burst
against the original proposal's algorithm and procrastinate's no-op ceiling
(bench/worker.py); webhook requests per second against a trivial endpoint
(bench/webhook.py); the ops page's first page at 1,000,000 rows
(bench/ops_page.py, when present); and the claim path and ops list at a
large history against a small one (bench/retention.py). Each figure is
printed next to the baseline measured in the same run, with the ratio
figure / baseline. `--quick` uses smaller sizes, for a check in minutes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.database import database_url

BENCHMARKS = ("enqueue", "worker", "webhook", "ops_page", "retention")


@dataclass
class Line:
    figure: str
    value: float
    unit: str
    baseline: str
    baseline_value: float | None

    @property
    def ratio(self) -> str:
        if not self.baseline_value:
            return "-"
        return f"{self.value / self.baseline_value:.3g}"


def enqueue_lines(quick: bool) -> list[Line]:
    from bench import enqueue

    url = database_url(Settings.from_env())
    f = enqueue.measure(url, 500 if quick else 2000)
    return [
        Line(
            "enqueue (social_queue_enqueue)",
            f["enqueue_per_s"],
            "posts/s",
            "plain INSERT",
            f["plain_per_s"],
        )
    ]


def worker_lines(quick: bool) -> list[Line]:
    from bench import worker

    posts = 1000 if quick else 5000
    r = worker.measure(
        posts=posts,
        idle_posts=20 if quick else 40,
        baseline_seconds=15.0 if quick else 30.0,
    )
    ours_drain, ours = r["engines"]["Social Queue worker"]
    ceiling_drain, ceiling = r["engines"]["procrastinate no-op (ceiling)"]
    original_drain, original = r["engines"]["original algorithm (extrapolated)"]
    idle, original_idle = r["idle"], r["original_idle"]
    lines = [
        Line(
            "idle lateness p50",
            idle[0] * 1000,
            "ms",
            "original (5 s poll)",
            original_idle[0] * 1000,
        ),
        Line(
            "idle lateness p99",
            idle[2] * 1000,
            "ms",
            "original (5 s poll)",
            original_idle[2] * 1000,
        ),
        Line(
            f"burst {posts:,}: drain",
            ours_drain,
            "s",
            "procrastinate no-op",
            ceiling_drain,
        ),
        Line(f"burst {posts:,}: drain", ours_drain, "s", "original", original_drain),
    ]
    for i, name in enumerate(("p50", "p95", "p99")):
        lines.append(
            Line(f"burst lateness {name}", ours[i], "s", "procrastinate", ceiling[i])
        )
        lines.append(
            Line(f"burst lateness {name}", ours[i], "s", "original", original[i])
        )
    return lines


def webhook_lines(quick: bool) -> list[Line]:
    from bench import webhook

    r = webhook.measure(1000 if quick else 3000)
    ours, base = r["webhook"], r["baseline"]
    return [
        Line("webhook", ours["rps"], "req/s", "trivial endpoint", base["rps"]),
        Line("webhook p99", ours["p99_ms"], "ms", "trivial endpoint", base["p99_ms"]),
    ]


def ops_page_lines(quick: bool) -> list[Line]:
    """bench/ops_page.py belongs to the ops page: it loads its own rows and
    drives a browser, so it runs as its own command and its table (large vs
    baseline, with ratios) is printed as it comes."""
    if importlib.util.find_spec("bench.ops_page") is None:
        print("note: bench/ops_page.py is absent; ops page at 1M rows skipped")
        return []
    rows = ["--rows", "100000"] if quick else []
    subprocess.run([sys.executable, "-m", "bench.ops_page", *rows], check=False)
    return []


def retention_lines(quick: bool, rows: int) -> list[Line]:
    from bench import retention

    large = 200_000 if quick else rows
    r = retention.measure(10_000, large, 50 if quick else 200)
    print(
        f"retention: history grown to {large:,} rows in {r['fill_seconds']:.0f} s "
        f"({r['table_size']})"
    )
    return [
        Line(
            f"{name} @ {large:,}",
            r["large_ms"][name],
            "ms",
            "same @ 10,000",
            r["small_ms"][name],
        )
        for name in r["small_ms"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--retention-rows", type=int, default=2_000_000)
    parser.add_argument("--skip", nargs="*", default=[], choices=BENCHMARKS)
    args = parser.parse_args()

    started = time.monotonic()
    runs: dict[str, Any] = {
        "enqueue": lambda: enqueue_lines(args.quick),
        "worker": lambda: worker_lines(args.quick),
        "webhook": lambda: webhook_lines(args.quick),
        "ops_page": lambda: ops_page_lines(args.quick),
        "retention": lambda: retention_lines(args.quick, args.retention_rows),
    }
    lines: list[Line] = []
    for name, run in runs.items():
        if name in args.skip:
            continue
        print(f"running {name} ...", flush=True)
        lines += run()

    print()
    print(
        f"Social Queue benchmarks{' (--quick)' if args.quick else ''}: "
        f"{platform.machine()}, {os.cpu_count()} cpus, Python "
        f"{platform.python_version()}, "
        f"{'DATABASE_URL' if os.environ.get('DATABASE_URL') else 'embedded PostgreSQL'}"
        f", {time.monotonic() - started:.0f} s"
    )
    print(
        f"| {'figure':<34} | {'value':>14} | {'baseline (same run)':<22} | "
        f"{'baseline':>10} | {'ratio':>6} |"
    )
    print(f"|{'-' * 36}|{'-' * 16}:|{'-' * 24}|{'-' * 11}:|{'-' * 7}:|")
    for line in lines:
        base = "" if line.baseline_value is None else f"{line.baseline_value:.2f}"
        print(
            f"| {line.figure:<34} | {f'{line.value:.2f} {line.unit}':>14} | "
            f"{line.baseline:<22} | {base:>10} | {line.ratio:>6} |"
        )


if __name__ == "__main__":
    main()
