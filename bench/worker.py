"""How punctual and how fast the worker is, against baselines of the same run.

    python -m bench.worker [--posts 5000] [--concurrency 50] [--latency 0.1]

(a) Idle lateness: posts scheduled a few seconds ahead on an idle system;
    lateness is the attempt's start minus the post's due time. The baseline
    is the original proposal's poller (every 5 s, take 10 due posts) run on
    the same schedule, lateness being when it picks each post up.
(b) Burst: N posts due at the same instant, a fake platform answering in
    `latency` seconds. Drain time and lateness percentiles for
    - Social Queue: one `social-queue worker` process;
    - procrastinate's ceiling: the same number of no-op jobs due at one
      instant, run by a bare procrastinate worker of the same concurrency;
    - the original proposal's algorithm (every 5 s, take 10 due posts and
      publish them one at a time), reproduced in Python. Draining N posts
      that way takes N / 10 x 5 s, so it runs for `--baseline-seconds` and its
      drain time and lateness are extrapolated from what it measured.

Everything runs on this machine: the embedded PostgreSQL unless DATABASE_URL
is set, a fresh database per scenario, the sandbox fakes on loopback.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from app import migrations
from app.config import Settings
from app.database import database_url
from sandbox.core import SandboxState, create_app, serve_in_thread
from sandbox.facebook import FacebookFake

PAGE_ID = "104000000000001"


class UnlimitedFacebook(FacebookFake):
    """The Facebook fake without its hourly page limit, so only latency counts."""

    calls_per_hour = 10**9


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    name = f"sq_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(server_url)
    params["dbname"] = name
    url = make_conninfo(**params)
    try:
        migrations.migrate(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def as_url(conninfo: str) -> str:
    """A libpq URL for DATABASE_URL (child processes read only that form)."""
    p = conninfo_to_dict(conninfo)
    host = str(p.get("host", "127.0.0.1"))
    auth = f"{p.get('user', 'postgres')}@"
    if host.startswith("/"):
        return (
            f"postgresql://{auth}/{p['dbname']}?host={host}&port={p.get('port', 5432)}"
        )
    return f"postgresql://{auth}{host}:{p.get('port', 5432)}/{p['dbname']}"


def percentiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        v = values[0] if values else float("nan")
        return v, v, v
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[94], q[98]


def start_worker(url: str, sandbox: str, concurrency: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": as_url(url),
        "FACEBOOK_API_BASE_URL": f"{sandbox}/facebook",
        "FACEBOOK_PAGE_TOKEN": "bench-page-token",
        "FACEBOOK_PAGE_ID": PAGE_ID,
        "SOCIAL_WORKER_CONCURRENCY": str(concurrency),
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--name", "bench"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_posted(conn: psycopg.Connection, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = conn.execute(
            "SELECT count(*) FROM social_queue WHERE status = 'posted'"
        ).fetchone()[0]
        if done >= total:
            return
        time.sleep(0.2)
    raise TimeoutError(f"only part of {total} posts were posted in {timeout} s")


def lateness(conn: psycopg.Connection) -> list[float]:
    return [
        float(r[0])
        for r in conn.execute(
            "SELECT extract(epoch FROM a.started_at - q.scheduled_at) "
            "FROM social_queue_attempts a JOIN social_queue q ON q.id = a.post_id"
        )
    ]


def enqueue_at(conn: psycopg.Connection, count: int, offsets: list[float]) -> None:
    # Unique texts: the fake refuses duplicates, as Facebook does.
    run = uuid.uuid4().hex[:8]
    with conn.transaction():
        for n in range(count):
            conn.execute(
                "SELECT social_queue_enqueue('bench', 'facebook', %s, "
                "now() + make_interval(secs => %s))",
                (Jsonb({"text": f"bench post {run}-{n}"}), offsets[n]),
            )


def idle_lateness(server: str, sandbox: str, posts: int) -> list[float]:
    with scratch_database(server) as url, psycopg.connect(url, autocommit=True) as conn:
        worker = start_worker(url, sandbox, 10)
        try:
            time.sleep(2)
            enqueue_at(conn, posts, [3 + n * 0.25 for n in range(posts)])
            wait_posted(conn, posts, 60)
            return lateness(conn)
        finally:
            worker.terminate()
            worker.wait(30)


def burst(
    server: str, sandbox: str, posts: int, concurrency: int
) -> tuple[float, list[float]]:
    with scratch_database(server) as url, psycopg.connect(url, autocommit=True) as conn:
        worker = start_worker(url, sandbox, concurrency)
        try:
            time.sleep(2)
            enqueue_at(conn, posts, [5.0] * posts)
            wait_posted(conn, posts, 900)
            drain = conn.execute(
                "SELECT extract(epoch FROM max(posted_at) - min(scheduled_at)) "
                "FROM social_queue"
            ).fetchone()[0]
            return float(drain), lateness(conn)
        finally:
            worker.terminate()
            worker.wait(30)


def procrastinate_ceiling(
    server: str, jobs: int, concurrency: int
) -> tuple[float, list[float]]:
    """No-op jobs deferred at once to a running bare procrastinate worker."""
    with scratch_database(server) as url, psycopg.connect(url, autocommit=True) as conn:
        worker = subprocess.Popen(
            [sys.executable, "-m", "bench.noop_worker", as_url(url), str(concurrency)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(2)
            conn.execute(
                "SELECT procrastinate_defer_jobs_v1(array_agg(ROW('bench', 'noop', 0, "
                "NULL, NULL, '{}'::jsonb, NULL)::procrastinate_job_to_defer_v1)) "
                "FROM generate_series(1, %s)",
                (jobs,),
            )
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                left = conn.execute(
                    "SELECT count(*) FROM procrastinate_jobs "
                    "WHERE status <> 'succeeded'"
                ).fetchone()[0]
                if left == 0:
                    break
                time.sleep(0.2)
            rows = conn.execute(
                """
                SELECT extract(epoch FROM s.at - d.at),
                       extract(epoch FROM max(s.at) OVER () - min(d.at) OVER ())
                  FROM procrastinate_events s
                  JOIN procrastinate_events d
                    ON d.job_id = s.job_id AND d.type = 'deferred'
                 WHERE s.type = 'started'
                """
            ).fetchall()
            return float(rows[0][1]), [float(r[0]) for r in rows]
        finally:
            worker.terminate()
            worker.wait(30)


def original_poll(
    conn: psycopg.Connection,
    sandbox: str,
    *,
    seconds: float = float("inf"),
    posts: int | None = None,
) -> tuple[int, list[float]]:
    """The original proposal's loop: every 5 s, take 10 due posts and publish
    each in turn. Runs for `seconds` or until `posts` are published; returns
    the ticks it ran and each post's lateness (pick-up time minus due time)."""
    started = time.monotonic()
    published: list[float] = []
    ticks = 0
    with httpx.Client(timeout=10) as client:
        while time.monotonic() - started < seconds and (
            posts is None or len(published) < posts
        ):
            tick = time.monotonic()
            batch = conn.execute(
                "SELECT id, content->>'text', "
                "extract(epoch FROM clock_timestamp() - scheduled_at) "
                "FROM social_queue WHERE status = 'queued' "
                "AND scheduled_at <= now() ORDER BY scheduled_at LIMIT 10"
            ).fetchall()
            for post_id, text, late in batch:
                client.post(
                    f"{sandbox}/facebook/v23.0/{PAGE_ID}/feed",
                    data={"message": text},
                    headers={"Authorization": "Bearer bench-page-token"},
                )
                conn.execute(
                    "UPDATE social_queue SET status = 'posted', attempts = 1, "
                    "posted_at = now(), remote_id = 'baseline' WHERE id = %s",
                    (post_id,),
                )
                published.append(float(late))
            ticks += 1
            time.sleep(max(0.0, 5.0 - (time.monotonic() - tick)))
    return ticks, published


def original_idle_lateness(server: str, sandbox: str, posts: int) -> list[float]:
    """The original poller over the same schedule as `idle_lateness`."""
    with scratch_database(server) as url, psycopg.connect(url, autocommit=True) as conn:
        enqueue_at(conn, posts, [3 + n * 0.25 for n in range(posts)])
        _, late = original_poll(conn, sandbox, posts=posts, seconds=120)
        return late


def original_algorithm(server: str, sandbox: str, seconds: float) -> dict:
    """The original loop over a backlog of due posts, for `seconds`."""
    with scratch_database(server) as url, psycopg.connect(url, autocommit=True) as conn:
        enqueue_at(conn, 1000, [0.0] * 1000)
        ticks, published = original_poll(conn, sandbox, seconds=seconds)
        return {"per_tick": len(published) / ticks}


def measure(
    posts: int = 5000,
    idle_posts: int = 40,
    concurrency: int = 50,
    latency: float = 0.1,
    baseline_seconds: float = 30.0,
) -> dict[str, Any]:
    """Idle lateness, and the burst for the three engines: drain time (s) and
    lateness percentiles (s), each engine under its own key."""
    settings = Settings.from_env()
    server = database_url(settings)
    state = SandboxState(latency=latency)
    with serve_in_thread(create_app([UnlimitedFacebook], state)) as sandbox:
        idle = idle_lateness(server, sandbox, idle_posts)
        original_idle = original_idle_lateness(server, sandbox, idle_posts)
        drain, late = burst(server, sandbox, posts, concurrency)
        ceiling_drain, ceiling_late = procrastinate_ceiling(server, posts, concurrency)
        original = original_algorithm(server, sandbox, baseline_seconds)

    # The original takes `per_tick` posts every 5 s: post k waits k // per_tick ticks.
    per_tick = original["per_tick"]
    original_late = [(k // per_tick) * 5.0 for k in range(posts)]
    original_drain = original_late[-1] + per_tick * latency
    return {
        "posts": posts,
        "concurrency": concurrency,
        "latency": latency,
        "idle": percentiles(idle),
        "idle_count": len(idle),
        "original_idle": percentiles(original_idle),
        "engines": {
            "Social Queue worker": (drain, percentiles(late)),
            "procrastinate no-op (ceiling)": (
                ceiling_drain,
                percentiles(ceiling_late),
            ),
            "original algorithm (extrapolated)": (
                original_drain,
                percentiles(original_late),
            ),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="worker punctuality and burst drain")
    parser.add_argument("--posts", type=int, default=5000)
    parser.add_argument("--idle-posts", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--baseline-seconds", type=float, default=30.0)
    args = parser.parse_args()

    result = measure(
        args.posts,
        args.idle_posts,
        args.concurrency,
        args.latency,
        args.baseline_seconds,
    )
    for name, key in (("Social Queue", "idle"), ("original", "original_idle")):
        p50, p95, p99 = result[key]
        print(
            f"idle lateness over {result['idle_count']} posts, {name} (s): "
            f"p50 {p50:.3f} p95 {p95:.3f} p99 {p99:.3f}"
        )
    print(
        f"burst of {args.posts} posts, platform latency {args.latency * 1000:.0f} ms, "
        f"concurrency {args.concurrency}"
    )
    print(
        f"{'engine':<34}{'drain s':>9}{'p50 s':>8}{'p95 s':>8}{'p99 s':>8}"
        f"{'drain x':>9}"
    )
    drain = result["engines"]["Social Queue worker"][0]
    for name, (d, (p50, p95, p99)) in result["engines"].items():
        print(f"{name:<34}{d:>9.1f}{p50:>8.2f}{p95:>8.2f}{p99:>8.2f}{d / drain:>9.2f}")


if __name__ == "__main__":
    main()
