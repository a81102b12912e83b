"""social_queue_prune: finished posts, jobs and receipts past retention go."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from app.database import sql_errors
from app.exceptions import InvalidInput
from tasks import maintenance
from tasks.accounts import Accounts
from tasks.app import app
from tasks.publish import Publisher
from tasks.store import Store
from tests.sql.helpers import call, claim, enqueue, make_due, post


@contextmanager
def raw_writes(db: psycopg.Connection) -> Iterator[None]:
    """Let the test age rows: the before-write trigger refreshes updated_at."""
    with db.transaction():
        db.execute("ALTER TABLE social_queue DISABLE TRIGGER social_queue_before_write")
        yield
        db.execute("ALTER TABLE social_queue ENABLE TRIGGER social_queue_before_write")


def age(db: psycopg.Connection, post_id: UUID, days: int) -> None:
    with raw_writes(db):
        db.execute(
            "UPDATE social_queue SET updated_at = now() - make_interval(days => %s) "
            "WHERE id = %s",
            (days, post_id),
        )


def published(db: psycopg.Connection, text: str) -> UUID:
    post_id = enqueue(db, content={"text": text})
    make_due(db, post_id)
    claim(db, post_id)
    db.execute("SELECT social_queue_complete(%s, 1, 'r-1')", (post_id,))
    return post_id


def cancelled(db: psycopg.Connection, text: str) -> UUID:
    post_id = enqueue(db, content={"text": text}, at="2030-01-01T00:00:00Z")
    db.execute("SELECT social_queue_cancel(%s::uuid)", (post_id,))
    return post_id


def exists(db: psycopg.Connection, post_id: UUID) -> bool:
    row = db.execute("SELECT count(*) FROM social_queue WHERE id = %s", (post_id,))
    return row.fetchone() == (1,)


def prune(db: psycopg.Connection, *args: object) -> dict[str, int]:
    placeholders = ", ".join(["%s"] * len(args))
    row = call(db, f"SELECT * FROM social_queue_prune({placeholders})", *args)
    assert row is not None
    return row


def test_old_posted_and_cancelled_posts_go_with_their_attempts_and_events(
    db: psycopg.Connection,
) -> None:
    old_posted = published(db, "old posted")
    old_cancelled = cancelled(db, "old cancelled")
    for post_id in (old_posted, old_cancelled):
        age(db, post_id, 100)

    counts = prune(db)

    assert counts["posts"] == 2
    assert not exists(db, old_posted) and not exists(db, old_cancelled)
    for table in ("social_queue_attempts", "social_queue_events"):
        left = db.execute(
            f"SELECT count(*) FROM {table} WHERE post_id = ANY(%s)",
            ([old_posted, old_cancelled],),
        ).fetchone()
        assert left == (0,), table


def test_recent_finished_and_old_unfinished_posts_stay(db: psycopg.Connection) -> None:
    recent = published(db, "recent")
    waiting = enqueue(db, content={"text": "waiting"}, at="2030-01-01T00:00:00Z")
    failed = enqueue(db, content={"text": "failed"})
    make_due(db, failed)
    claim(db, failed)
    db.execute("SELECT social_queue_fail(%s, 1, 'invalid', 'no', 400)", (failed,))
    for post_id in (waiting, failed):
        age(db, post_id, 400)

    assert prune(db)["posts"] == 0
    assert all(exists(db, p) for p in (recent, waiting, failed))
    # Failed posts wait for an operator, however old.
    assert post(db, failed)["status"] == "failed"


def test_the_age_comes_from_settings_unless_given(db: psycopg.Connection) -> None:
    post_id = published(db, "ten days old")
    age(db, post_id, 10)

    assert prune(db)["posts"] == 0
    db.execute("UPDATE social_queue_settings SET retention = '7 days'")
    assert prune(db)["posts"] == 1

    other = published(db, "three days old")
    age(db, other, 3)
    assert prune(db, "2 days", 100)["posts"] == 1


def test_a_batch_deletes_at_most_the_limit(db: psycopg.Connection) -> None:
    ids = [cancelled(db, f"bulk {n}") for n in range(5)]
    with raw_writes(db):
        db.execute(
            "UPDATE social_queue SET updated_at = now() - interval '100 days' "
            "WHERE id = ANY(%s)",
            (ids,),
        )

    assert [prune(db, None, 2)["posts"] for _ in range(4)] == [2, 2, 1, 0]


def test_a_post_locked_by_another_transaction_is_skipped(
    db: psycopg.Connection, database_url: str
) -> None:
    post_id = published(db, "locked")
    age(db, post_id, 100)

    with psycopg.connect(database_url) as other:
        other.execute("SELECT 1 FROM social_queue WHERE id = %s FOR UPDATE", (post_id,))
        assert prune(db)["posts"] == 0
    assert prune(db)["posts"] == 1


def test_finished_jobs_go_but_waiting_jobs_stay(db: psycopg.Connection) -> None:
    waiting = enqueue(db, content={"text": "has a todo job"}, at="2030-01-01T00:00:00Z")
    db.execute(
        "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('maintenance', 'x', 0, NULL, "
        "NULL, '{}'::jsonb, NULL)]::procrastinate_job_to_defer_v1[])"
    )
    db.execute("UPDATE procrastinate_jobs SET status = 'failed' WHERE task_name = 'x'")
    db.execute("UPDATE procrastinate_events SET at = now() - interval '100 days'")

    assert prune(db)["jobs"] == 1
    statuses = db.execute("SELECT status::text, queueing_lock FROM procrastinate_jobs")
    assert statuses.fetchall() == [("todo", str(waiting))]


def test_old_webhook_receipts_go(db: psycopg.Connection) -> None:
    db.execute(
        "INSERT INTO social_queue_webhook_events (source, event_id, event_type, "
        "body_sha256, received_at) VALUES "
        "('icadence', 'old', 'schedule.posted', 'x', now() - interval '100 days'), "
        "('icadence', 'new', 'schedule.posted', 'y', now())"
    )

    assert prune(db)["webhook_events"] == 1
    left = db.execute("SELECT event_id FROM social_queue_webhook_events").fetchall()
    assert left == [("new",)]


@pytest.mark.parametrize(
    ("older_than", "limit"), [("-1 day", 10), ("1 day", 0), ("1 day", None)]
)
def test_a_negative_age_or_no_limit_is_refused(
    db: psycopg.Connection, older_than: str, limit: int | None
) -> None:
    with pytest.raises(InvalidInput), sql_errors():
        prune(db, older_than, limit)


def test_retention_below_a_day_is_refused(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE social_queue_settings SET retention = '1 hour'")


async def test_the_periodic_task_prunes_in_batches_until_done(
    db: psycopg.Connection, database_url: str
) -> None:
    ids = [cancelled(db, f"batched {n}") for n in range(7)]
    with raw_writes(db):
        db.execute(
            "UPDATE social_queue SET updated_at = now() - interval '100 days' "
            "WHERE id = ANY(%s)",
            (ids,),
        )

    async with AsyncConnectionPool(
        database_url, min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
    ) as pool:
        store = Store(pool, "pruner")
        publisher = Publisher(store, Accounts(pool, None, {}), {})
        assert await maintenance.prune(publisher, batch=3) == 7

    assert db.execute("SELECT count(*) FROM social_queue").fetchone() == (0,)
    assert "prune_finished" in app.tasks
