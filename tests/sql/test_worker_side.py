"""The worker's side of the SQL API: claim, complete, fail, leases, handles."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.sql.helpers import call, claim, enqueue, events, jobs, make_due, post, rows


def fail(
    db: psycopg.Connection,
    post_id: object,
    attempt: int,
    kind: str,
    message: str = "boom",
    http_status: int | None = None,
    retry_at: datetime | None = None,
) -> dict:
    row = call(
        db,
        "SELECT * FROM social_queue_fail(%s, %s, %s, %s, %s, %s)",
        post_id,
        attempt,
        kind,
        message,
        http_status,
        retry_at,
    )
    assert row is not None
    return row


def test_claim_moves_a_due_post_to_posting_and_opens_an_attempt(
    db: psycopg.Connection,
) -> None:
    post_id = enqueue(db)

    claimed = claim(db, post_id, "worker.1")

    assert claimed["status"] == "posting"
    assert claimed["attempts"] == 1
    assert claimed["claimed_by"] == "worker.1"
    assert claimed["next_attempt_at"] is None
    lease = claimed["lease_expires_at"] - claimed["updated_at"]
    assert lease == timedelta(minutes=5)
    [attempt] = rows(
        db, "SELECT * FROM social_queue_attempts WHERE post_id = %s", post_id
    )
    assert (attempt["number"], attempt["worker"], attempt["outcome"]) == (
        1,
        "worker.1",
        None,
    )
    assert events(db, post_id)[-1] == ("claim", "queued", "posting")


def test_claim_returns_nothing_for_a_post_not_yet_due(db: psycopg.Connection) -> None:
    post_id = enqueue(db, at="2099-01-01T00:00:00Z")

    assert claim(db, post_id) is None
    assert post(db, post_id)["status"] == "queued"


@pytest.mark.parametrize("action", ["pause", "cancel"])
def test_claim_returns_nothing_for_a_post_that_is_not_waiting(
    db: psycopg.Connection, action: str
) -> None:
    post_id = enqueue(db)
    db.execute(f"SELECT social_queue_{action}(%s::uuid)", (post_id,))

    assert claim(db, post_id) is None


def test_a_post_is_claimed_once_even_by_concurrent_workers(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as setup:
        post_id = enqueue(setup)

    barrier = threading.Barrier(8)
    results: list[bool] = []

    def worker(n: int) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            barrier.wait()
            results.append(claim(conn, post_id, f"w{n}") is not None)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert results.count(True) == 1


def test_claim_due_takes_due_posts_oldest_first_and_skips_others(
    db: psycopg.Connection,
) -> None:
    old = enqueue(db, at="2020-01-01T00:00:00Z")
    newer = enqueue(db, at="2021-01-01T00:00:00Z")
    enqueue(db, at="2099-01-01T00:00:00Z")
    enqueue(db, platform="linkedin", at="2019-01-01T00:00:00Z")

    claimed = rows(db, "SELECT id FROM social_queue_claim_due('w', 5, ARRAY['x'])")

    assert [r["id"] for r in claimed] == [old, newer]


def test_complete_records_the_remote_post(db: psycopg.Connection) -> None:
    post_id = enqueue(db)
    claim(db, post_id)

    done = call(
        db,
        "SELECT * FROM social_queue_complete(%s, 1, '1860', 'https://x.com/i/web/status/1860')",
        post_id,
    )

    assert done["status"] == "posted"
    assert done["remote_id"] == "1860"
    assert done["posted_at"] is not None
    attempt = call(
        db, "SELECT * FROM social_queue_attempts WHERE post_id = %s", post_id
    )
    assert attempt["outcome"] == "published"
    assert attempt["remote_id"] == "1860"
    assert attempt["finished_at"] >= attempt["started_at"]
    assert events(db, post_id)[-1] == ("complete", "posting", "posted")


def test_a_stale_attempt_cannot_report(db: psycopg.Connection) -> None:
    post_id = enqueue(db)
    claim(db, post_id)
    db.execute("UPDATE social_queue SET lease_expires_at = now() - interval '1 s'")
    db.execute("SELECT social_queue_reap_expired()")
    db.execute(
        "SELECT social_queue_retry(%s::uuid, p_outcome_checked => true)", (post_id,)
    )
    claim(db, post_id, "w2")

    with pytest.raises(psycopg.Error, match="attempt 1 no longer holds the claim") as e:
        db.execute("SELECT social_queue_complete(%s, 1, 'late')", (post_id,))
    assert e.value.sqlstate == "SQ409"
    assert post(db, post_id)["status"] == "posting"


def test_complete_needs_a_posting_post_and_a_remote_id(db: psycopg.Connection) -> None:
    post_id = enqueue(db)
    with pytest.raises(
        psycopg.Error, match="it is queued, and complete needs it posting"
    ):
        db.execute("SELECT social_queue_complete(%s, 1, 'r')", (post_id,))

    claim(db, post_id)
    with pytest.raises(psycopg.Error, match="remote_id is required"):
        db.execute("SELECT social_queue_complete(%s, 1, '')", (post_id,))
    with pytest.raises(psycopg.Error, match="no such post") as e:
        db.execute("SELECT social_queue_complete(%s, 1, 'r')", (UUID(int=7),))
    assert e.value.sqlstate == "SQ404"


def test_transient_failure_retries_with_backoff_and_defers_a_job(
    db: psycopg.Connection,
) -> None:
    post_id = enqueue(db)
    claim(db, post_id)

    failed = fail(db, post_id, 1, "transient", "503 from X", 503)

    assert failed["status"] == "retrying"
    assert failed["budget_used"] == 1
    assert failed["error_kind"] == "transient"
    assert failed["last_error"] == "503 from X"
    wait = failed["next_attempt_at"] - failed["updated_at"]
    # First retry: 15 s base, lowered by up to half at random.
    assert timedelta(seconds=7.5) <= wait <= timedelta(seconds=15)
    assert [j["status"] for j in jobs(db, post_id)][-1] == "todo"
    assert jobs(db, post_id)[-1]["scheduled_at"] == failed["next_attempt_at"]
    attempt = call(
        db, "SELECT * FROM social_queue_attempts WHERE post_id = %s", post_id
    )
    assert (attempt["outcome"], attempt["error_kind"], attempt["http_status"]) == (
        "failed",
        "transient",
        503,
    )


def test_backoff_doubles_until_the_cap_and_the_budget_runs_out(
    db: psycopg.Connection,
) -> None:
    db.execute("UPDATE social_queue_settings SET backoff_jitter = 0")
    post_id = enqueue(db)
    waits = []

    for attempt in range(1, 9):
        make_due(db, post_id)
        assert claim(db, post_id)["attempts"] == attempt
        failed = fail(db, post_id, attempt, "transient")
        if failed["status"] == "retrying":
            waits.append(
                (failed["next_attempt_at"] - failed["updated_at"]).total_seconds()
            )

    assert waits == [15, 30, 60, 120, 240, 480, 960]
    final = post(db, post_id)
    assert final["status"] == "failed"
    assert final["budget_used"] == 8
    assert final["last_error"] == "gave up after 8 attempts: boom"


def test_backoff_caps_at_thirty_minutes(db: psycopg.Connection) -> None:
    db.execute("UPDATE social_queue_settings SET backoff_jitter = 0")
    for spent, expected in [(1, 15), (7, 960), (8, 1800), (50, 1800), (10_000, 1800)]:
        wait = db.execute(
            "SELECT extract(epoch FROM social_queue_backoff(%s) - now())", (spent,)
        ).fetchone()[0]
        assert float(wait) == pytest.approx(expected), spent


def test_backoff_jitter_spreads_retries_within_bounds(db: psycopg.Connection) -> None:
    waits = [
        float(r[0])
        for r in db.execute(
            "SELECT extract(epoch FROM social_queue_backoff(3) - now()) "
            "FROM generate_series(1, 400)"
        )
    ]

    assert min(waits) >= 30 and max(waits) <= 60
    assert len({round(w, 3) for w in waits}) > 300
    assert min(waits) < 35 and max(waits) > 55


def test_backoff_settings_are_read_at_run_time(db: psycopg.Connection) -> None:
    db.execute(
        "UPDATE social_queue_settings SET backoff_base = '2 s', backoff_cap = '5 s', "
        "backoff_jitter = 0, max_attempts = 2"
    )
    post_id = enqueue(db)
    claim(db, post_id)
    first = fail(db, post_id, 1, "transient")
    make_due(db, post_id)
    claim(db, post_id)
    second = fail(db, post_id, 2, "transient")

    assert (first["next_attempt_at"] - first["updated_at"]).total_seconds() == 2
    assert second["status"] == "failed"


def test_retry_after_is_honoured_when_later_than_the_backoff(
    db: psycopg.Connection,
) -> None:
    post_id = enqueue(db)
    claim(db, post_id)
    later = datetime.now(UTC) + timedelta(hours=1)

    failed = fail(db, post_id, 1, "transient", retry_at=later)

    assert failed["next_attempt_at"] == later


def test_rate_limit_waits_without_spending_budget_and_holds_the_account(
    db: psycopg.Connection,
) -> None:
    post_id = enqueue(db, profile="acme")
    sibling = enqueue(db, profile="acme")
    other_profile = enqueue(db, profile="globex")
    claim(db, post_id)
    reset = datetime.now(UTC) + timedelta(minutes=15)

    failed = fail(db, post_id, 1, "rate_limited", "429", 429, reset)

    assert failed["status"] == "retrying"
    assert failed["budget_used"] == 0
    assert failed["attempts"] == 1
    assert failed["next_attempt_at"] == reset
    # The account's other posts wait for the same reset, without an attempt.
    assert claim(db, sibling) is None
    held = post(db, sibling)
    assert (held["status"], held["attempts"], held["next_attempt_at"]) == (
        "queued",
        0,
        reset,
    )
    assert jobs(db, sibling)[-1]["scheduled_at"] == reset
    assert claim(db, other_profile) is not None


def test_rate_limit_without_a_reset_time_backs_off(db: psycopg.Connection) -> None:
    post_id = enqueue(db)
    claim(db, post_id)

    failed = fail(db, post_id, 1, "rate_limited")

    assert failed["status"] == "retrying"
    assert failed["budget_used"] == 0
    assert failed["next_attempt_at"] > failed["updated_at"]


@pytest.mark.parametrize("kind", ["invalid", "auth", "config", "unknown_outcome"])
def test_permanent_failures_go_straight_to_failed(
    db: psycopg.Connection, kind: str
) -> None:
    post_id = enqueue(db)
    claim(db, post_id)

    failed = fail(db, post_id, 1, kind, "no")

    assert failed["status"] == "failed"
    assert failed["error_kind"] == kind
    assert failed["next_attempt_at"] is None
    assert events(db, post_id)[-1] == ("fail", "posting", "failed")


def test_fail_rejects_an_unknown_error_kind(db: psycopg.Connection) -> None:
    post_id = enqueue(db)
    claim(db, post_id)
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        db.execute("SELECT social_queue_fail(%s, 1, 'oops', 'x')", (post_id,))
    assert post(db, post_id)["status"] == "posting"


def test_expired_leases_are_reaped_as_unknown_outcome(db: psycopg.Connection) -> None:
    lost = enqueue(db)
    alive = enqueue(db)
    claim(db, lost, "worker.dead")
    claim(db, alive, "worker.alive")
    db.execute(
        "UPDATE social_queue SET lease_expires_at = now() - interval '1 s' "
        "WHERE id = %s",
        (lost,),
    )

    reaped = rows(db, "SELECT id FROM social_queue_reap_expired()")

    assert [r["id"] for r in reaped] == [lost]
    row = post(db, lost)
    assert row["status"] == "failed"
    assert row["error_kind"] == "unknown_outcome"
    assert "worker.dead stopped reporting during attempt 1" in row["last_error"]
    attempt = call(db, "SELECT * FROM social_queue_attempts WHERE post_id = %s", lost)
    assert attempt["outcome"] == "lease_expired"
    assert events(db, lost)[-1] == ("reap", "posting", "failed")
    assert post(db, alive)["status"] == "posting"


def test_extend_lease_keeps_a_long_upload_alive(db: psycopg.Connection) -> None:
    post_id = enqueue(db)
    claim(db, post_id)
    db.execute(
        "UPDATE social_queue SET lease_expires_at = now() + interval '1 s' "
        "WHERE id = %s",
        (post_id,),
    )

    until = db.execute(
        "SELECT social_queue_extend_lease(%s, 1)", (post_id,)
    ).fetchone()[0]

    assert until == post(db, post_id)["lease_expires_at"]
    assert rows(db, "SELECT * FROM social_queue_reap_expired()") == []


def test_handles_are_saved_during_the_attempt_and_kept(db: psycopg.Connection) -> None:
    post_id = enqueue(db)
    claim(db, post_id)

    db.execute(
        "SELECT social_queue_save_handle(%s, 1, 'container_id', %s)",
        (post_id, Jsonb("17890")),
    )
    db.execute(
        "SELECT social_queue_save_handle(%s, 1, 'upload', %s)",
        (post_id, Jsonb({"uri": "https://upload/1", "sent": 0})),
    )
    fail(db, post_id, 1, "unknown_outcome")

    assert post(db, post_id)["handles"] == {
        "container_id": "17890",
        "upload": {"uri": "https://upload/1", "sent": 0},
    }
    with pytest.raises(psycopg.Error, match="save a handle for") as e:
        db.execute(
            "SELECT social_queue_save_handle(%s, 1, 'late', '1')",
            (post_id,),
        )
    assert e.value.sqlstate == "SQ409"


def test_mark_posted_settles_an_unknown_outcome(db: psycopg.Connection) -> None:
    post_id = enqueue(db)
    claim(db, post_id)
    fail(db, post_id, 1, "unknown_outcome")

    done = call(
        db,
        "SELECT * FROM social_queue_mark_posted(%s, 'r-9', NULL, 'ops:ana')",
        post_id,
    )

    assert done["status"] == "posted"
    assert events(db, post_id)[-1] == ("mark_posted", "failed", "posted")


def test_mark_posted_refuses_a_post_that_failed_for_a_known_reason(
    db: psycopg.Connection,
) -> None:
    post_id = enqueue(db)
    claim(db, post_id)
    fail(db, post_id, 1, "invalid")

    with pytest.raises(psycopg.Error, match="needs it failed with an unknown outcome"):
        db.execute("SELECT social_queue_mark_posted(%s, 'r')", (post_id,))


def test_a_report_without_an_attempt_number_is_refused(db: psycopg.Connection) -> None:
    post_id = enqueue(db)
    claim(db, post_id)

    for statement in (
        "SELECT social_queue_complete(%s, NULL, 'r')",
        "SELECT social_queue_fail(%s, NULL, 'transient', 'x')",
    ):
        with pytest.raises(psycopg.Error, match="the attempt number is required") as e:
            db.execute(statement, (post_id,))
        assert e.value.sqlstate == "SQ422"
    assert post(db, post_id)["status"] == "posting"


def test_a_retry_after_far_in_the_future_is_capped(db: psycopg.Connection) -> None:
    # A Retry-After read in milliseconds as seconds must not park a post for
    # a month.
    post_id = enqueue(db)
    claim(db, post_id)

    failed = fail(
        db, post_id, 1, "rate_limited", retry_at=datetime.now(UTC) + timedelta(days=40)
    )

    wait = failed["next_attempt_at"] - failed["updated_at"]
    assert timedelta(days=2) - timedelta(seconds=5) < wait <= timedelta(days=2)


def test_a_retry_after_in_the_past_is_ignored(db: psycopg.Connection) -> None:
    db.execute("UPDATE social_queue_settings SET backoff_jitter = 0")
    post_id = enqueue(db)
    claim(db, post_id)

    failed = fail(
        db, post_id, 1, "transient", retry_at=datetime.now(UTC) - timedelta(hours=1)
    )

    wait = failed["next_attempt_at"] - failed["updated_at"]
    assert timedelta(seconds=14) < wait <= timedelta(seconds=15)


def test_rate_limits_in_a_row_without_a_reset_time_wait_longer_each_time(
    db: psycopg.Connection,
) -> None:
    db.execute("UPDATE social_queue_settings SET backoff_jitter = 0")
    post_id = enqueue(db)
    waits = []
    for attempt in (1, 2, 3):
        db.execute("UPDATE social_accounts SET rate_limited_until = NULL")
        make_due(db, post_id)
        claim(db, post_id)
        failed = fail(db, post_id, attempt, "rate_limited", http_status=429)
        waits.append(failed["next_attempt_at"] - failed["updated_at"])

    assert [round(w.total_seconds()) for w in waits] == [15, 30, 60]
    assert post(db, post_id)["budget_used"] == 0


def test_requeue_unpublished_retries_a_lost_attempt_from_its_budget(
    db: psycopg.Connection,
) -> None:
    post_id = enqueue(db)
    claim(db, post_id)
    fail(db, post_id, 1, "unknown_outcome", "worker lost")

    requeued = call(db, "SELECT * FROM social_queue_requeue_unpublished(%s)", post_id)

    assert requeued["status"] == "retrying"
    assert requeued["budget_used"] == 1
    assert requeued["error_kind"] == "transient"
    assert "did not publish" in requeued["last_error"]
    assert jobs(db, post_id)[-1]["scheduled_at"] == requeued["next_attempt_at"]
    assert events(db, post_id)[-1] == ("requeue", "failed", "retrying")


def test_requeue_unpublished_gives_up_when_the_budget_is_spent(
    db: psycopg.Connection,
) -> None:
    # A post that kills its worker every time must stop, not loop forever.
    db.execute("UPDATE social_queue_settings SET max_attempts = 1")
    post_id = enqueue(db)
    claim(db, post_id)
    fail(db, post_id, 1, "unknown_outcome", "worker lost")

    settled = call(db, "SELECT * FROM social_queue_requeue_unpublished(%s)", post_id)

    assert settled["status"] == "failed"
    assert settled["error_kind"] == "transient"
    assert settled["last_error"].startswith("gave up after 1 attempts")
    assert events(db, post_id)[-1] == ("requeue", "failed", "failed")


@pytest.mark.parametrize("kind", ["invalid", "transient"])
def test_requeue_unpublished_needs_an_unknown_outcome(
    db: psycopg.Connection, kind: str
) -> None:
    post_id = enqueue(db)
    claim(db, post_id)
    db.execute("UPDATE social_queue_settings SET max_attempts = 1")
    fail(db, post_id, 1, kind)

    with pytest.raises(psycopg.Error, match="failed with an unknown outcome") as e:
        db.execute("SELECT social_queue_requeue_unpublished(%s)", (post_id,))
    assert e.value.sqlstate == "SQ409"


def test_the_settings_row_cannot_be_deleted(db: psycopg.Connection) -> None:
    for statement in (
        "DELETE FROM social_queue_settings",
        "TRUNCATE social_queue_settings",
    ):
        with pytest.raises(psycopg.Error, match="keeps exactly one row") as e:
            db.execute(statement)
        assert e.value.sqlstate == "SQ422"
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE social_queue_settings SET backoff_jitter = 1")


def test_claim_due_passes_over_held_back_accounts_to_the_next_due_post(
    db: psycopg.Connection,
) -> None:
    paused = enqueue(db, profile="paused", at="2020-01-01T00:00:00Z")
    limited = enqueue(db, profile="limited", at="2020-01-02T00:00:00Z")
    free = enqueue(db, profile="free", at="2020-01-03T00:00:00Z")
    db.execute("SELECT social_profile_pause('paused', 'x')")
    db.execute(
        "INSERT INTO social_accounts (profile_id, platform, rate_limited_until) "
        "VALUES ('limited', 'x', now() + interval '1 hour')"
    )

    claimed = rows(db, "SELECT id FROM social_queue_claim_due('w', 1)")

    assert [r["id"] for r in claimed] == [free]
    assert post(db, paused)["status"] == post(db, limited)["status"] == "queued"
