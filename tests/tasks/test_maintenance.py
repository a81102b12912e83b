"""The reaper: lost attempts are reconciled with the platform, never retried blindly."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from tasks import maintenance
from tasks.publish import Publisher
from tests.sql.helpers import claim, enqueue, events, make_due, post
from tests.tasks.conftest import Sandbox


def lose_the_worker(db: psycopg.Connection, post_id: UUID) -> None:
    """A worker claimed the post, sent X the create request, and died."""
    claim(db, post_id, "worker.dead")
    db.execute(
        "SELECT social_queue_save_handle(%s, 1, 'x_sent_at', %s)",
        (post_id, Jsonb(datetime.now(UTC).isoformat())),
    )
    db.execute(
        "UPDATE social_queue SET lease_expires_at = now() - interval '1 s' "
        "WHERE id = %s",
        (post_id,),
    )


async def test_a_lost_attempt_that_did_not_publish_is_retried_from_its_budget(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    post_id = enqueue(db, content={"text": "lost on the way"})
    lose_the_worker(db, post_id)
    # The sandbox's timeline shows posts at once; X's may take a while.
    publisher.adapters["x"].search_lag = 0.5

    assert await maintenance.reap_and_reconcile(publisher) == 1

    row = post(db, post_id)
    assert (row["status"], row["error_kind"], row["budget_used"]) == (
        "retrying",
        "transient",
        1,
    )
    assert [e[0] for e in events(db, post_id)][-2:] == ["reap", "requeue"]
    make_due(db, post_id)
    assert await publisher.publish(post_id) == "posted"
    assert sandbox.creates("x") == 1


async def test_a_lost_attempt_that_did_publish_is_marked_posted(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    post_id = enqueue(db, content={"text": "it went out"})
    # The lost attempt's tweet is on the account: put it there through another
    # post, since both use the one account configured in the environment.
    sibling = enqueue(db, content={"text": "it went out"}, profile="other")
    assert await publisher.publish(sibling) == "posted"
    lose_the_worker(db, post_id)

    assert await maintenance.reap_and_reconcile(publisher) == 1

    row = post(db, post_id)
    assert row["status"] == "posted"
    assert row["remote_id"] == post(db, sibling)["remote_id"]
    assert sandbox.creates("x") == 1


async def test_a_post_that_keeps_losing_its_worker_stops(
    db: psycopg.Connection, publisher: Publisher
) -> None:
    publisher.adapters["x"].search_lag = 0.5
    db.execute("UPDATE social_queue_settings SET max_attempts = 1")
    post_id = enqueue(db, content={"text": "kills its worker"})
    lose_the_worker(db, post_id)

    await maintenance.reap_and_reconcile(publisher)

    row = post(db, post_id)
    assert (row["status"], row["error_kind"]) == ("failed", "transient")
    assert row["last_error"].startswith("gave up after 1 attempts")


async def test_the_reaper_waits_for_the_timeline_before_believing_a_search(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    # The lost attempt's tweet exists but the timeline shows it only after a
    # second: searching at once would requeue a live post.
    sandbox.state.listing_lag = 1.0
    post_id = enqueue(db, content={"text": "live, not yet listed"})
    sibling = enqueue(db, content={"text": "live, not yet listed"}, profile="other")
    assert await publisher.publish(sibling) == "posted"
    lose_the_worker(db, post_id)
    publisher.adapters["x"].search_lag = 2.0

    await maintenance.reap_and_reconcile(publisher)

    row = post(db, post_id)
    assert row["status"] == "posted"
    assert sandbox.creates("x") == 1
