"""`GET /api/integrations/status` at 1,000,000 posts, against 1,000.

The status reads each platform's last success and last error. On a scratch
database it loads posts as bench/ops_page.py does (mostly posted, cancelled
and failed history) and one finished attempt for each posted or failed post,
serves the app with uvicorn and times the endpoint with httpx: the median of
15 requests after 3 to warm up. Its queries read nothing cached.

    python -m bench.status [--rows 1000000] [DATABASE_URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import httpx
import psycopg

from app.config import Settings
from app.database import database_url
from app.web import create_app
from app.web.settings import ApiToken, WebSettings
from bench.ops_page import load
from bench.worker import scratch_database
from sandbox.core import serve_in_thread

TOKEN = "bench-status-token-0123"
ATTEMPTS = """
INSERT INTO social_queue_attempts
    (post_id, number, worker, started_at, finished_at, outcome, error_kind,
     error_message)
SELECT q.id, 1, 'bench', q.scheduled_at, q.scheduled_at + interval '1 second',
       CASE WHEN q.status = 'posted' THEN 'published' ELSE 'failed' END,
       q.error_kind, q.last_error
  FROM social_queue q
 WHERE q.status IN ('posted', 'failed')
   AND NOT EXISTS (SELECT FROM social_queue_attempts a WHERE a.post_id = q.id)
"""


def fill(url: str, start: int, stop: int) -> float:
    seconds = load(url, start, stop)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ATTEMPTS)
        conn.execute("ANALYZE social_queue_attempts")
    return seconds + time.perf_counter() - started


def measure(url: str) -> float:
    """Median milliseconds of one status request."""
    app = create_app(
        Settings(database_url=url),
        WebSettings(
            webhook_secrets=("bench-secret-0123456789",),
            api_tokens=(ApiToken("bench", TOKEN),),
        ),
        environ={},
    )
    times = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (
        serve_in_thread(app) as base,
        httpx.Client(base_url=base, headers=headers, timeout=60) as client,
    ):
        for n in range(18):
            started = time.perf_counter()
            response = client.get("/api/integrations/status")
            assert response.status_code == 200, response.status_code
            if n >= 3:
                times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("url", nargs="?", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()

    server = database_url(Settings(database_url=args.url))
    with scratch_database(server) as url:
        fill(url, 1, args.baseline + 1)
        baseline = measure(url)
        seconds = fill(url, args.baseline + 1, args.rows + 1)
        print(f"loaded {args.rows - args.baseline:,} more posts in {seconds:.0f} s")
        large = measure(url)
    print(f"integrations status at {args.baseline:,} posts: {baseline:.1f} ms")
    print(f"integrations status at {args.rows:,} posts: {large:.1f} ms")
    print(f"ratio: {large / baseline:.2f}")


if __name__ == "__main__":
    main()
