"""`GET /metrics`: the queue in Prometheus text format, read at scrape time.

Everything comes from the database when Prometheus asks, through a collector
built for that one scrape; nothing polls in the background. Counting in
process memory would be simpler, but the web dyno cannot see the worker
dynos' memory and each restart would reset the counts, so the figures that
describe activity (attempts, their outcomes, latency, webhook answers) are
read from the tables over a recent window instead
(`SOCIAL_QUEUE_METRICS_WINDOW_SECONDS`, 5 minutes by default) and exposed as
gauges: "attempts that finished in the last five minutes" is what a
dashboard plots, it is the same whichever dyno is scraped, and it stays true
after retention deletes old rows, which a counter derived from a table would
not (it would go down).

| metric | type | labels |
| --- | --- | --- |
| `social_queue_posts` | gauge | platform, status |
| `social_queue_oldest_overdue_seconds` | gauge | platform |
| `social_queue_recent_attempts` | gauge | platform, outcome, error_kind |
| `social_queue_publish_duration_seconds` | gauge histogram | platform |
| `social_queue_publish_delay_seconds` | gauge histogram | platform |
| `social_queue_recent_webhook_events` | gauge | event_type, status, result |
| `social_queue_jobs` | gauge | queue, status |
| `social_queue_metrics_window_seconds` | gauge | |
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector, CollectorRegistry
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from starlette.requests import Request
from starlette.responses import Response

from app.posts import STATUSES
from app.web.auth import protected

logger = logging.getLogger(__name__)

DEFAULT_WINDOW_SECONDS = 300
WINDOW_VARIABLE = "SOCIAL_QUEUE_METRICS_WINDOW_SECONDS"
# A scrape that cannot finish in this time is worse than a missing one.
STATEMENT_TIMEOUT = "5s"
# Seconds: a platform call takes 0.1 to a few seconds (video uploads more);
# a post's delay past its scheduled time is under a second when all is well
# and minutes after an outage.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
DELAY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 1800.0, 7200.0)


@dataclass
class Histogram:
    """Cumulative bucket counts (one per bound), their sum and total."""

    buckets: list[int]
    total: int = 0
    sum: float = 0.0


@dataclass
class Snapshot:
    """What one scrape read from the database."""

    window_seconds: int
    platforms: list[str] = field(default_factory=list)
    posts: dict[tuple[str, str], int] = field(default_factory=dict)
    oldest_overdue: dict[str, float] = field(default_factory=dict)
    attempts: list[tuple[str, str, str, int]] = field(default_factory=list)
    durations: dict[str, Histogram] = field(default_factory=dict)
    delays: dict[str, Histogram] = field(default_factory=dict)
    webhooks: list[tuple[str, str, str, int]] = field(default_factory=list)
    jobs: list[tuple[str, str, int]] = field(default_factory=list)


class QueueCollector(Collector):
    """Turns one snapshot into metric families; registered per scrape."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        s = self.snapshot

        posts = GaugeMetricFamily(
            "social_queue_posts",
            "Posts in the queue table by platform and status.",
            labels=["platform", "status"],
        )
        # Every combination, zeros included: a series that vanishes when its
        # count drops to nothing breaks alerts such as `failed > 0`.
        for platform in s.platforms:
            for status in STATUSES:
                posts.add_metric([platform, status], s.posts.get((platform, status), 0))
        yield posts

        overdue = GaugeMetricFamily(
            "social_queue_oldest_overdue_seconds",
            "How long the oldest waiting post of the platform has been due "
            "(0 when none is overdue).",
            labels=["platform"],
        )
        for platform in s.platforms:
            overdue.add_metric([platform], s.oldest_overdue.get(platform, 0.0))
        yield overdue

        attempts = GaugeMetricFamily(
            "social_queue_recent_attempts",
            "Publish attempts that finished within the window, by platform, "
            "outcome (published, failed, lease_expired) and error kind.",
            labels=["platform", "outcome", "error_kind"],
        )
        for platform, outcome, kind, count in s.attempts:
            attempts.add_metric([platform, outcome, kind], count)
        yield attempts

        yield from (
            _histogram(
                "social_queue_publish_duration_seconds",
                "Duration of the publishing attempts that finished within the "
                "window (attempt start to platform confirmation).",
                DURATION_BUCKETS,
                s.durations,
            ),
            _histogram(
                "social_queue_publish_delay_seconds",
                "How late posts published within the window went out: posted_at "
                "minus scheduled_at.",
                DELAY_BUCKETS,
                s.delays,
            ),
        )

        webhooks = GaugeMetricFamily(
            "social_queue_recent_webhook_events",
            "Webhook events processed within the window, by type, the HTTP "
            "status answered and the result. Deliveries refused before "
            "processing (bad signature, invalid body) are in the request log.",
            labels=["event_type", "status", "result"],
        )
        for event_type, status, result, count in s.webhooks:
            webhooks.add_metric([event_type, status, result], count)
        yield webhooks

        jobs = GaugeMetricFamily(
            "social_queue_jobs",
            "procrastinate jobs by queue and status (one todo publish job per "
            "waiting post; failed jobs stay until retention).",
            labels=["queue", "status"],
        )
        for queue_name, status, count in s.jobs:
            jobs.add_metric([queue_name, status], count)
        yield jobs

        yield GaugeMetricFamily(
            "social_queue_metrics_window_seconds",
            "The window the recent_* gauges and the histograms cover.",
            value=s.window_seconds,
        )


def _histogram(
    name: str,
    documentation: str,
    bounds: tuple[float, ...],
    by_platform: dict[str, Histogram],
) -> GaugeHistogramMetricFamily:
    family = GaugeHistogramMetricFamily(name, documentation, labels=["platform"])
    for platform, histogram in sorted(by_platform.items()):
        buckets = [
            (_bound(le), count)
            for le, count in zip(bounds, histogram.buckets, strict=True)
        ]
        buckets.append(("+Inf", histogram.total))
        family.add_metric([platform], buckets, histogram.sum)
    return family


def _bound(value: float) -> str:
    """Bucket bounds as Prometheus client libraries print them: `0.5`, `5.0`."""
    return repr(float(value))


def window_seconds(environ: Mapping[str, str]) -> int:
    raw = environ.get(WINDOW_VARIABLE, "").strip()
    if raw.isascii() and raw.isdigit() and int(raw) > 0:
        return int(raw)
    if raw:
        logger.warning(
            "event=metrics.bad_window value=%r default=%d",
            raw[:20],
            DEFAULT_WINDOW_SECONDS,
        )
    return DEFAULT_WINDOW_SECONDS


async def read_snapshot(conn: AsyncConnection, window: int) -> Snapshot:
    """Read everything a scrape shows, in one read-only transaction."""
    snapshot = Snapshot(window_seconds=window)
    since = timedelta(seconds=window)
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT set_config('statement_timeout', %s, true)", (STATEMENT_TIMEOUT,)
        )

        await cur.execute("SELECT platform FROM social_platforms ORDER BY platform")
        snapshot.platforms = [r["platform"] for r in await cur.fetchall()]

        await cur.execute("SELECT s.*, now() AS now FROM social_queue_stats() s")
        for r in await cur.fetchall():
            snapshot.posts[(r["platform"], r["status"])] = r["posts"]
            if r["oldest_overdue_at"] is not None:
                age = _seconds(r["now"] - r["oldest_overdue_at"])
                previous = snapshot.oldest_overdue.get(r["platform"], 0.0)
                snapshot.oldest_overdue[r["platform"]] = max(previous, age)

        await cur.execute(
            "SELECT q.platform, a.outcome, coalesce(a.error_kind::text, '') AS kind,"
            " count(*) AS n"
            " FROM social_queue_attempts a JOIN social_queue q ON q.id = a.post_id"
            " WHERE a.finished_at > now() - %s"
            " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            (since,),
        )
        snapshot.attempts = [
            (r["platform"], r["outcome"], r["kind"], r["n"])
            for r in await cur.fetchall()
        ]

        snapshot.durations, snapshot.delays = await _latencies(cur, since)

        await cur.execute(
            "SELECT event_type, coalesce(response_status::text, 'pending') AS status,"
            " coalesce(response->>'result', '') AS result, count(*) AS n"
            " FROM social_queue_webhook_events WHERE received_at > now() - %s"
            " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            (since,),
        )
        snapshot.webhooks = [
            (r["event_type"], r["status"], r["result"], r["n"])
            for r in await cur.fetchall()
        ]

        await cur.execute(
            "SELECT queue_name, status::text AS status, count(*) AS n"
            " FROM procrastinate_jobs GROUP BY 1, 2 ORDER BY 1, 2"
        )
        snapshot.jobs = [
            (r["queue_name"], r["status"], r["n"]) for r in await cur.fetchall()
        ]
    return snapshot


async def _latencies(
    cur: Any, since: timedelta
) -> tuple[dict[str, Histogram], dict[str, Histogram]]:
    """Bucket counts computed in SQL, so a busy window sends few rows."""
    await cur.execute(
        """
        WITH published AS (
            SELECT q.platform,
                   extract(epoch FROM a.finished_at - a.started_at)::float8 AS duration,
                   extract(epoch FROM q.posted_at - q.scheduled_at)::float8 AS delay
              FROM social_queue_attempts a JOIN social_queue q ON q.id = a.post_id
             WHERE a.outcome = 'published' AND a.finished_at > now() - %(since)s
        )
        SELECT p.platform, count(*) AS n, sum(p.duration) AS duration_sum,
               sum(p.delay) AS delay_sum,
               array(SELECT count(*) FILTER (WHERE x.duration <= b)
                       FROM published x CROSS JOIN unnest(%(durations)s::float8[])
                            WITH ORDINALITY AS u(b, i)
                      WHERE x.platform = p.platform GROUP BY u.i ORDER BY u.i)
                   AS duration_buckets,
               array(SELECT count(*) FILTER (WHERE x.delay <= b)
                       FROM published x CROSS JOIN unnest(%(delays)s::float8[])
                            WITH ORDINALITY AS u(b, i)
                      WHERE x.platform = p.platform GROUP BY u.i ORDER BY u.i)
                   AS delay_buckets
          FROM published p
         GROUP BY p.platform
        """,
        {
            "since": since,
            "durations": list(DURATION_BUCKETS),
            "delays": list(DELAY_BUCKETS),
        },
    )
    durations: dict[str, Histogram] = {}
    delays: dict[str, Histogram] = {}
    for r in await cur.fetchall():
        durations[r["platform"]] = Histogram(
            list(r["duration_buckets"]), r["n"], float(r["duration_sum"] or 0)
        )
        delays[r["platform"]] = Histogram(
            list(r["delay_buckets"]), r["n"], float(r["delay_sum"] or 0)
        )
    return durations, delays


def _seconds(delta: timedelta) -> float:
    return max(0.0, delta.total_seconds())


@protected
async def metrics(request: Request) -> Response:
    window = window_seconds(request.app.state.environ)
    async with request.app.state.pool.connection() as conn:
        snapshot = await read_snapshot(conn, window)

    # A registry per scrape holding only this snapshot: the process-wide
    # default registry would mix in whatever else registered there.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(snapshot))
    # Text format 0.0.4: every Prometheus version reads it, and the metric
    # names here need nothing newer.
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)
