"""The claim path and the ops list at a small and a large history.

    python -m bench.retention [--small 10000] [--large 2000000] [--repeat 200]

Fills a scratch database with `--small` historical posts (posted, spread
over the past year), measures the queries that must not slow down as
history grows, grows the history to `--large` rows and measures them again:

- `social_queue_claim_due(worker, 1)`: what a polling system calls;
- `social_queue_claim(id, worker)`: what each publish job calls;
- the ops list's first page (`app.posts.list_posts`), unfiltered, filtered
  by status `failed`, and by platform;
- one batch of `social_queue_prune` (1,000 posts), for the record.

Each claim runs in a transaction that is rolled back, so every repetition
sees the same queue (1,000 waiting posts, due now). Historical rows are
written with INSERT ... SELECT generate_series and the table's triggers
disabled: they stand for posts that went through the state machine long
ago, and it is their presence, not their creation, that is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from app import posts
from app.config import Settings
from app.database import database_url
from bench.worker import scratch_database

WAITING = 1000
BATCH = 1_000_000


def fill_history(conn: psycopg.Connection, first: int, last: int) -> None:
    """Posted posts number first..last-1, scheduled over the past year."""
    conn.execute("ALTER TABLE social_queue DISABLE TRIGGER USER")
    try:
        for start in range(first, last, BATCH):
            end = min(start + BATCH, last)
            conn.execute(
                """
                INSERT INTO social_queue (profile_id, platform, content,
                    scheduled_at, status, attempts, remote_id, posted_at,
                    created_at, updated_at, source)
                SELECT 'profile-' || mod(i, 1000),
                       (ARRAY['x', 'linkedin', 'facebook', 'instagram', 'tiktok',
                              'youtube'])[1 + mod(i, 6)],
                       jsonb_build_object('text', 'historical post ' || i),
                       t, 'posted', 1, 'r' || i, t + interval '1 second',
                       t - interval '1 day', t + interval '1 second', 'bench'
                  FROM generate_series(%s::bigint, %s::bigint - 1) AS i,
                       LATERAL (SELECT now() - interval '400 days'
                                       + mod(i, 31536000) * interval '1 second'
                                       AS t) AS s
                """,
                (start, end),
            )
    finally:
        conn.execute("ALTER TABLE social_queue ENABLE TRIGGER USER")
    conn.execute("VACUUM ANALYZE social_queue")


def add_waiting(conn: psycopg.Connection) -> None:
    """Due posts for the claims to find, through the normal enqueue path."""
    with conn.transaction():
        for n in range(WAITING):
            conn.execute(
                "SELECT social_queue_enqueue('waiting', 'facebook', %s, "
                "now() - interval '1 minute')",
                (Jsonb({"text": f"waiting {n}"}),),
            )
    conn.execute("VACUUM ANALYZE social_queue")


def timed(conn: psycopg.Connection, repeat: int, statement: str, *params: Any) -> float:
    """Median milliseconds of `statement`, each run rolled back."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        with conn.transaction(force_rollback=True):
            conn.execute(statement, params).fetchall()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def timed_async(repeat: int, call: Callable[[], Awaitable[object]]) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def list_pages(url: str, repeat: int) -> dict[str, float]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        filters = {
            "ops list, first page": posts.PostFilter(),
            "ops list, status failed": posts.PostFilter(statuses=("failed",)),
            "ops list, platform x": posts.PostFilter(platforms=("x",)),
        }
        return {
            name: await timed_async(
                repeat, lambda where=where: posts.list_posts(conn, where, limit=50)
            )
            for name, where in filters.items()
        }


def measure_at(conn: psycopg.Connection, url: str, repeat: int) -> dict[str, float]:
    waiting = conn.execute(
        "SELECT id FROM social_queue WHERE status = 'queued' LIMIT 1"
    ).fetchone()
    assert waiting is not None
    figures = {
        "claim_due (1 post)": timed(
            conn, repeat, "SELECT id FROM social_queue_claim_due('bench', 1)"
        ),
        "claim (by id)": timed(
            conn, repeat, "SELECT id FROM social_queue_claim(%s, 'bench')", waiting[0]
        ),
    }
    figures.update(asyncio.run(list_pages(url, repeat)))
    figures["prune batch (1,000 posts)"] = timed(
        conn, min(repeat, 5), "SELECT * FROM social_queue_prune('30 days', 1000)"
    )
    return figures


def measure(small: int, large: int, repeat: int) -> dict[str, Any]:
    """Figures at both sizes, and how long filling the large history took."""
    server = database_url(Settings.from_env())
    with (
        scratch_database(server) as url,
        psycopg.connect(url, autocommit=True) as conn,
    ):
        fill_history(conn, 0, small)
        add_waiting(conn)
        at_small = measure_at(conn, url, repeat)
        started = time.perf_counter()
        fill_history(conn, small, large)
        fill_seconds = time.perf_counter() - started
        at_large = measure_at(conn, url, repeat)
        size = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('social_queue'))"
        ).fetchone()
    return {
        "small": small,
        "large": large,
        "fill_seconds": fill_seconds,
        "table_size": size[0] if size else "?",
        "small_ms": at_small,
        "large_ms": at_large,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    result = measure(args.small, args.large, args.repeat)
    print(
        f"history grown from {result['small']:,} to {result['large']:,} posted posts "
        f"in {result['fill_seconds']:.0f} s; social_queue is {result['table_size']}"
    )
    print(f"{'query (median ms)':<30}{'small':>9}{'large':>9}{'ratio':>8}")
    for name, small_ms in result["small_ms"].items():
        large_ms = result["large_ms"][name]
        print(f"{name:<30}{small_ms:>9.2f}{large_ms:>9.2f}{large_ms / small_ms:>8.2f}")


if __name__ == "__main__":
    main()
