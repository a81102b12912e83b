"""social_queue_enqueue calls per second on one connection, against plain
INSERTs into the same table measured in the same run.

Both paths do the same work a caller would: one statement per post, each
in its own transaction (autocommit). The plain INSERT still runs the table's
triggers (content check, event, notification, job deferral), so the ratio
is the cost of the function's own checks and idempotency handling.

    python -m bench.enqueue [--posts 2000] [DATABASE_URL]
"""

from __future__ import annotations

import argparse
import time

import psycopg
from psycopg.types.json import Jsonb

from app import migrations
from app.config import Settings
from app.database import database_url


def run(conn: psycopg.Connection, posts: int, statement: str, keyed: bool) -> float:
    content = Jsonb({"text": "benchmark post https://example.com/launch"})
    started = time.perf_counter()
    for n in range(posts):
        params = ["bench", "linkedin", content]
        if keyed:
            params.append(f"bench-{time.time_ns()}-{n}")
        conn.execute(statement, params)
    return posts / (time.perf_counter() - started)


def measure(url: str, posts: int) -> dict[str, float]:
    """Best of three rounds of each path, in posts per second."""
    migrations.migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        # Warm both paths (plans, caches) before measuring.
        insert = (
            "INSERT INTO social_queue (profile_id, platform, content, scheduled_at) "
            "VALUES (%s, %s, %s, now() + interval '1 day')"
        )
        enqueue = (
            "SELECT social_queue_enqueue(%s, %s, %s, now() + interval '1 day', %s)"
        )
        run(conn, 200, insert, keyed=False)
        run(conn, 200, enqueue, keyed=True)

        rounds = []
        for _ in range(3):
            rounds.append(
                (
                    run(conn, posts, insert, keyed=False),
                    run(conn, posts, enqueue, keyed=True),
                )
            )
        conn.execute("DELETE FROM social_queue WHERE profile_id = 'bench'")
        conn.execute("DELETE FROM procrastinate_jobs WHERE task_name = 'publish_post'")
    return {
        "plain_per_s": max(r[0] for r in rounds),
        "enqueue_per_s": max(r[1] for r in rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("database_url", nargs="?")
    args = parser.parse_args()

    url = args.database_url or database_url(Settings.from_env())
    figures = measure(url, args.posts)
    plain, api = figures["plain_per_s"], figures["enqueue_per_s"]
    print(f"{'path':<28}{'posts/s':>10}{'ratio':>8}")
    print(f"{'plain INSERT (baseline)':<28}{plain:>10.0f}{1:>8.2f}")
    print(f"{'social_queue_enqueue':<28}{api:>10.0f}{api / plain:>8.2f}")


if __name__ == "__main__":
    main()
