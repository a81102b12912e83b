"""`GET /metrics`: Prometheus text read from the database at scrape time."""

from __future__ import annotations

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from tests.web.conftest import Deliver
from tests.web.helpers import AUTH, insert_post, posted_event, publish

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_metrics_need_a_bearer_token(client: httpx.AsyncClient) -> None:
    anonymous = await client.get("/metrics")
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="social-queue"'
    assert wrong.status_code == 401


async def test_queue_depth_counts_posts_by_platform_and_status_with_zeros(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    for n in range(3):
        insert_post(db, platform="x", text=f"later {n}")
    insert_post(db, platform="linkedin", text="later")

    samples = await scrape(client)

    assert value(samples, "social_queue_posts", platform="x", status="queued") == 3
    assert value(samples, "social_queue_posts", platform="linkedin", status="queued")
    assert value(samples, "social_queue_posts", platform="x", status="failed") == 0
    assert (
        value(samples, "social_queue_posts", platform="youtube", status="posted") == 0
    )


async def test_oldest_overdue_is_how_long_the_oldest_waiting_post_has_been_due(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    insert_post(db, platform="x", text="late", at="2020-01-01T00:00:00Z")
    insert_post(db, platform="x", text="later", at="2030-01-01T00:00:00Z")
    db.execute("SELECT social_platform_pause('x', 'hold it')")

    samples = await scrape(client)

    overdue = value(samples, "social_queue_oldest_overdue_seconds", platform="x")
    assert overdue > 5 * 365 * 86400
    assert (
        value(samples, "social_queue_oldest_overdue_seconds", platform="facebook") == 0
    )


async def test_attempts_outcomes_and_latency_come_from_recent_attempts(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    published = insert_post(db, platform="facebook", text="goes out")
    publish(db, published)
    retried = insert_post(db, platform="facebook", text="fails once")
    db.execute(
        "UPDATE social_queue SET next_attempt_at = now() - interval '1 s' "
        "WHERE id = %s",
        (retried,),
    )
    db.execute("SELECT social_queue_claim(%s, 'w1')", (retried,))
    db.execute(
        "SELECT social_queue_fail(%s, 1, 'transient', 'upstream 503', 503)", (retried,)
    )
    # An attempt older than the window is history, not activity.
    old = insert_post(db, platform="facebook", text="long ago")
    publish(db, old)
    db.execute(
        "UPDATE social_queue_attempts SET started_at = now() - interval '2 hours', "
        "finished_at = now() - interval '1 hour' WHERE post_id = %s",
        (old,),
    )

    samples = await scrape(client)

    attempts = "social_queue_recent_attempts"
    on_facebook = {"platform": "facebook"}
    published_attempts = value(
        samples, attempts, outcome="published", error_kind="", **on_facebook
    )
    assert published_attempts == 1
    assert (
        value(
            samples,
            attempts,
            platform="facebook",
            outcome="failed",
            error_kind="transient",
        )
        == 1
    )
    duration = "social_queue_publish_duration_seconds"
    assert value(samples, f"{duration}_gcount", platform="facebook") == 1
    assert value(samples, f"{duration}_bucket", platform="facebook", le="+Inf") == 1
    assert value(samples, f"{duration}_bucket", platform="facebook", le="1.0") == 1
    delay = "social_queue_publish_delay_seconds"
    # The fixture schedules posts in 2030: published early, the delay is < 0.
    assert value(samples, f"{delay}_bucket", platform="facebook", le="0.1") == 1
    assert value(samples, "social_queue_metrics_window_seconds") == 300


async def test_webhook_outcomes_count_processed_events(
    client: httpx.AsyncClient, deliver: Deliver
) -> None:
    assert (await deliver(posted_event("evt_1", scheduleId="a"))).status_code == 200
    assert (await deliver(posted_event("evt_1", scheduleId="a"))).status_code == 200
    assert (await deliver(posted_event("evt_2", scheduleId="a"))).status_code == 200

    samples = await scrape(client)

    name = "social_queue_recent_webhook_events"
    common = {"event_type": "schedule.posted", "status": "200"}
    assert value(samples, name, result="enqueued", **common) == 1
    assert value(samples, name, result="already_enqueued", **common) == 1


async def test_jobs_are_counted_by_queue_and_status(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    insert_post(db, platform="x", text="has a job")

    samples = await scrape(client)

    assert value(samples, "social_queue_jobs", queue="publish", status="todo") == 1


async def test_the_window_is_configurable(
    app: Starlette, client: httpx.AsyncClient
) -> None:
    app.state.environ = {"SOCIAL_QUEUE_METRICS_WINDOW_SECONDS": "60"}

    samples = await scrape(client)

    assert value(samples, "social_queue_metrics_window_seconds") == 60
