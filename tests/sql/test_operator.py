"""Operator actions: pause, resume, retry, cancel, reschedule, platform pauses."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from uuid import UUID

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.sql.helpers import call, claim, enqueue, events, jobs, make_due, post, rows

STATUSES = ["queued", "posting", "posted", "retrying", "failed", "paused", "cancelled"]

LEGAL = {
    "pause": {"queued", "retrying"},
    "resume": {"paused"},
    "retry": {"failed", "retrying", "paused"},
    "cancel": {"queued", "retrying", "paused", "failed"},
}
RESULT = {
    "pause": "paused",
    "resume": "queued",
    "retry": "queued",
    "cancel": "cancelled",
}


def post_in(db: psycopg.Connection, status: str) -> UUID:
    """A post brought to `status` through the API, as it would be in production."""
    post_id = enqueue(db)
    if status == "queued":
        return post_id
    if status in ("paused", "cancelled"):
        action = {"paused": "pause", "cancelled": "cancel"}[status]
        db.execute(f"SELECT social_queue_{action}(%s::uuid)", (post_id,))
        assert post(db, post_id)["status"] == status
        return post_id
    claim(db, post_id)
    if status == "posted":
        db.execute("SELECT social_queue_complete(%s, 1, 'r1')", (post_id,))
    elif status == "retrying":
        db.execute("SELECT social_queue_fail(%s, 1, 'transient', 'x')", (post_id,))
    elif status == "failed":
        db.execute("SELECT social_queue_fail(%s, 1, 'invalid', 'x')", (post_id,))
    assert post(db, post_id)["status"] == status
    return post_id


@pytest.mark.parametrize("action", sorted(LEGAL))
@pytest.mark.parametrize("status", STATUSES)
def test_each_action_is_legal_exactly_from_its_documented_statuses(
    db: psycopg.Connection, action: str, status: str
) -> None:
    post_id = post_in(db, status)
    before = post(db, post_id)

    if status in LEGAL[action]:
        after = call(
            db, f"SELECT * FROM social_queue_{action}(%s::uuid, 'ops:ana')", post_id
        )
        assert after["status"] == RESULT[action]
        event = call(
            db,
            "SELECT * FROM social_queue_events WHERE post_id = %s "
            "ORDER BY id DESC LIMIT 1",
            post_id,
        )
        assert (event["action"], event["actor"]) == (action, "ops:ana")
        assert (event["from_status"], event["to_status"]) == (status, RESULT[action])
    else:
        with pytest.raises(psycopg.Error) as caught:
            db.execute(f"SELECT social_queue_{action}(%s::uuid)", (post_id,))
        assert caught.value.sqlstate == "SQ409"
        message = caught.value.diag.message_primary
        assert message.startswith(f"cannot {action} post {post_id}: it is {status}")
        assert json.loads(caught.value.diag.message_detail) == {
            "id": str(post_id),
            "status": status,
            "action": action,
        }
        assert post(db, post_id) == before


@pytest.mark.parametrize("action", sorted(LEGAL))
def test_an_unknown_id_is_not_found(db: psycopg.Connection, action: str) -> None:
    with pytest.raises(psycopg.Error, match="no such post") as caught:
        db.execute(f"SELECT social_queue_{action}(%s::uuid)", (UUID(int=7),))
    assert caught.value.sqlstate == "SQ404"


def test_retry_starts_a_fresh_budget_due_now(db: psycopg.Connection) -> None:
    db.execute("UPDATE social_queue_settings SET max_attempts = 1")
    post_id = enqueue(db)
    claim(db, post_id)
    db.execute("SELECT social_queue_fail(%s, 1, 'transient', 'x')", (post_id,))
    assert post(db, post_id)["status"] == "failed"

    retried = call(db, "SELECT * FROM social_queue_retry(%s::uuid)", post_id)

    assert retried["budget_used"] == 0
    assert retried["attempts"] == 1
    assert retried["next_attempt_at"] <= retried["updated_at"]
    assert jobs(db, post_id)[-1]["status"] == "todo"
    assert claim(db, post_id)["attempts"] == 2


def test_resume_puts_the_post_back_at_its_time_or_now(db: psycopg.Connection) -> None:
    future = enqueue(db, at="2099-01-01T00:00:00Z")
    past = enqueue(db, at="2000-01-01T00:00:00Z")
    for post_id in (future, past):
        db.execute("SELECT social_queue_pause(%s::uuid)", (post_id,))
        db.execute("SELECT social_queue_resume(%s::uuid)", (post_id,))

    assert post(db, future)["next_attempt_at"] == post(db, future)["scheduled_at"]
    assert post(db, past)["next_attempt_at"] == post(db, past)["updated_at"]
    assert jobs(db, past)[-1]["scheduled_at"] == post(db, past)["next_attempt_at"]


def test_bulk_actions_change_what_they_may_and_explain_the_rest(
    db: psycopg.Connection,
) -> None:
    queued = post_in(db, "queued")
    posted = post_in(db, "posted")
    missing = UUID("6f1c1c9e-0000-4000-8000-000000000000")

    result = {
        r["id"]: r
        for r in rows(
            db,
            "SELECT * FROM social_queue_cancel(%s::uuid[], 'ops:bulk')",
            [queued, posted, missing, queued],
        )
    }

    assert len(result) == 3
    assert (result[queued]["status"], result[queued]["changed"]) == ("cancelled", True)
    assert result[posted]["changed"] is False
    assert result[posted]["status"] == "posted"
    assert "it is posted" in result[posted]["reason"]
    assert (result[missing]["changed"], result[missing]["reason"]) == (
        False,
        "no such post",
    )
    assert post(db, posted)["status"] == "posted"


@pytest.mark.parametrize("action", ["pause", "resume", "retry"])
def test_bulk_forms_exist_for_every_action(db: psycopg.Connection, action: str) -> None:
    post_id = post_in(db, "queued")
    [row] = rows(db, f"SELECT * FROM social_queue_{action}(%s::uuid[])", [post_id])
    assert row["changed"] is (action == "pause")


def test_cancel_scheduled_finds_posts_by_profile_and_time_or_schedule_id(
    db: psycopg.Connection,
) -> None:
    at = "2030-05-01T10:00:00Z"
    by_time = enqueue(db, profile="acme", at=at)
    by_time_other_platform = enqueue(db, profile="acme", platform="linkedin", at=at)
    by_ref = enqueue(
        db,
        profile="acme",
        at="2030-06-01T10:00:00Z",
        source="icadence",
        source_ref="sch_9",
    )
    other_profile = enqueue(db, profile="globex", at=at)
    other_schedule = enqueue(
        db, profile="acme", at=at, source="icadence", source_ref="sch_10"
    )
    already_out = enqueue(
        db,
        profile="acme",
        at="2000-01-01T00:00:00Z",
        source="icadence",
        source_ref="sch_9",
    )
    claim(db, already_out)
    db.execute("SELECT social_queue_complete(%s, 1, 'live')", (already_out,))

    result = {
        r["id"]: r
        for r in rows(
            db,
            "SELECT * FROM "
            "social_queue_cancel_scheduled('acme', %s, 'sch_9', 'icadence')",
            at,
        )
    }

    assert set(result) == {by_time, by_time_other_platform, by_ref, already_out}
    assert all(result[i]["changed"] for i in (by_time, by_time_other_platform, by_ref))
    assert result[already_out]["changed"] is False
    assert "it is posted" in result[already_out]["reason"]
    assert post(db, other_profile)["status"] == "queued"
    assert post(db, other_schedule)["status"] == "queued"
    assert events(db, by_ref)[-1] == ("cancel", "queued", "cancelled")


def test_cancel_scheduled_without_a_ref_finds_every_post_at_that_time(
    db: psycopg.Connection,
) -> None:
    at = "2030-05-01T10:00:00Z"
    with_ref = enqueue(db, profile="acme", at=at, source_ref="sch_1")
    without = enqueue(db, profile="acme", platform="linkedin", at=at)

    result = rows(db, "SELECT * FROM social_queue_cancel_scheduled('acme', %s)", at)

    assert {r["id"] for r in result} == {with_ref, without}
    assert all(r["changed"] for r in result)


def test_cancel_scheduled_by_ref_keeps_to_its_source(db: psycopg.Connection) -> None:
    # Another system's reference that happens to look like iCadence's is not
    # iCadence's schedule.
    theirs = enqueue(db, at="2030-05-01T10:00:00Z", source="crm", source_ref="sch_1")

    result = rows(
        db,
        "SELECT * FROM social_queue_cancel_scheduled('profile-1', NULL, 'sch_1')",
    )

    assert result == []
    assert post(db, theirs)["status"] == "queued"


def test_cancel_scheduled_needs_a_way_to_find_posts(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error, match="needs profile_id and scheduled_at") as e:
        db.execute("SELECT * FROM social_queue_cancel_scheduled('acme', NULL)")
    assert e.value.sqlstate == "SQ422"


def test_reschedule_moves_the_time_and_the_job(db: psycopg.Connection) -> None:
    post_id = enqueue(db, at="2030-01-01T00:00:00Z")

    moved = call(
        db,
        "SELECT * FROM "
        "social_queue_reschedule(%s, '2031-01-01T00:00:00Z', NULL, 'icadence')",
        post_id,
    )

    assert moved["scheduled_at"] == moved["next_attempt_at"]
    assert moved["scheduled_at"].year == 2031
    [job] = jobs(db, post_id)
    assert job["scheduled_at"] == moved["next_attempt_at"]


def test_reschedule_edits_content_with_the_same_checks(db: psycopg.Connection) -> None:
    post_id = enqueue(db, content={"text": "draft"})

    edited = call(
        db,
        "SELECT * FROM social_queue_reschedule(%s, NULL, %s)",
        post_id,
        Jsonb({"text": "final"}),
    )
    assert edited["content"] == {"text": "final"}
    assert edited["scheduled_at"] == edited["next_attempt_at"]

    with pytest.raises(psycopg.Error, match="text is 300 characters") as e:
        db.execute(
            "SELECT social_queue_reschedule(%s, NULL, %s)",
            (post_id, Jsonb({"text": "a" * 300})),
        )
    assert e.value.sqlstate == "SQ422"
    assert post(db, post_id)["content"] == {"text": "final"}


@pytest.mark.parametrize("status", ["posting", "posted", "cancelled"])
def test_reschedule_refuses_a_post_that_went_out_or_is_going(
    db: psycopg.Connection, status: str
) -> None:
    post_id = post_in(db, status)
    with pytest.raises(psycopg.Error, match=f"it is {status}") as e:
        db.execute("SELECT social_queue_reschedule(%s, now())", (post_id,))
    assert e.value.sqlstate == "SQ409"


def test_reschedule_of_a_retrying_post_queues_it_at_the_new_time(
    db: psycopg.Connection,
) -> None:
    post_id = post_in(db, "retrying")
    moved = call(
        db, "SELECT * FROM social_queue_reschedule(%s, '2030-01-01T00:00:00Z')", post_id
    )
    assert moved["status"] == "queued"
    assert moved["next_attempt_at"] == moved["scheduled_at"]


def test_a_paused_platform_is_not_claimed_until_resumed(db: psycopg.Connection) -> None:
    post_id = enqueue(
        db, platform="tiktok", content={"mediaUrls": ["https://a.b/v.mp4"]}
    )
    paused = call(
        db, "SELECT * FROM social_platform_pause('tiktok', 'audit pending', 'ops:ana')"
    )
    assert (paused["paused"], paused["paused_reason"], paused["paused_by"]) == (
        True,
        "audit pending",
        "ops:ana",
    )

    assert claim(db, post_id) is None
    assert rows(db, "SELECT * FROM social_queue_claim_due('w', 10)") == []
    assert post(db, post_id)["status"] == "queued"

    make_due(db, post_id)
    db.execute("SELECT social_platform_resume('tiktok')")
    # Resuming re-defers the overdue post's job, due now.
    assert jobs(db, post_id)[-1]["scheduled_at"] == post(db, post_id)["next_attempt_at"]
    assert claim(db, post_id) is not None


def test_a_paused_profile_is_not_claimed_until_resumed(db: psycopg.Connection) -> None:
    held = enqueue(db, profile="acme")
    free = enqueue(db, profile="globex")
    db.execute("SELECT social_profile_pause('acme', 'x', 'client asked')")

    assert claim(db, held) is None
    assert claim(db, free) is not None

    db.execute("SELECT social_profile_resume('acme', 'x')")
    assert claim(db, held) is not None


def test_pausing_an_unknown_platform_is_an_error(db: psycopg.Connection) -> None:
    for sql in (
        "SELECT social_platform_pause('myspace')",
        "SELECT social_platform_resume('myspace')",
        "SELECT social_profile_pause('acme', 'myspace')",
    ):
        with pytest.raises(
            psycopg.Error, match=re.escape("unknown platform 'myspace'")
        ):
            db.execute(sql)


def test_stats_count_by_platform_and_status_with_the_oldest_overdue(
    db: psycopg.Connection,
) -> None:
    overdue = enqueue(db, at="2020-01-01T00:00:00Z")
    enqueue(db, at="2099-01-01T00:00:00Z")
    post_in(db, "posted")
    enqueue(db, platform="linkedin", at="2099-01-01T00:00:00Z")

    stats = {
        (r["platform"], r["status"]): r
        for r in rows(db, "SELECT * FROM social_queue_stats()")
    }

    assert stats[("x", "queued")]["posts"] == 2
    assert (
        stats[("x", "queued")]["oldest_overdue_at"] == post(db, overdue)["scheduled_at"]
    )
    assert stats[("x", "posted")]["posts"] == 1
    assert stats[("linkedin", "queued")]["oldest_overdue_at"] is None
    assert sum(r["posts"] for r in stats.values()) == 4


def test_a_raw_update_by_another_system_is_recorded(db: psycopg.Connection) -> None:
    post_id = enqueue(db, at="2030-01-01T00:00:00Z")

    db.execute(
        "UPDATE social_queue SET scheduled_at = scheduled_at + interval '1 day' "
        "WHERE id = %s",
        (post_id,),
    )
    db.execute("UPDATE social_queue SET status = 'paused' WHERE id = %s", (post_id,))

    row = post(db, post_id)
    assert row["next_attempt_at"] is None
    assert events(db, post_id)[-1] == ("update", "queued", "paused")
    assert row["updated_at"] >= row["created_at"]


def test_a_raw_update_of_the_time_moves_the_job(db: psycopg.Connection) -> None:
    post_id = enqueue(db, at="2030-01-01T00:00:00Z")
    db.execute(
        "UPDATE social_queue SET scheduled_at = scheduled_at + interval '1 day' "
        "WHERE id = %s",
        (post_id,),
    )
    row = post(db, post_id)
    assert row["next_attempt_at"] == row["scheduled_at"]
    assert row["scheduled_at"] == datetime(2030, 1, 2, tzinfo=UTC)
    [job] = jobs(db, post_id)
    assert job["scheduled_at"] == row["scheduled_at"]


def unknown_outcome(db: psycopg.Connection) -> UUID:
    post_id = enqueue(db, content={"text": "maybe live"})
    claim(db, post_id)
    db.execute(
        "SELECT social_queue_fail(%s, 1, 'unknown_outcome', 'timeout')", (post_id,)
    )
    return post_id


def test_a_post_that_may_be_live_is_retried_only_once_checked(
    db: psycopg.Connection,
) -> None:
    post_id = unknown_outcome(db)

    with pytest.raises(psycopg.Error, match="may have published") as e:
        db.execute("SELECT social_queue_retry(%s::uuid, 'ops:ana')", (post_id,))
    assert e.value.sqlstate == "SQ409"
    assert json.loads(e.value.diag.message_detail)["reason"] == "outcome_unchecked"
    [unchanged] = rows(
        db, "SELECT * FROM social_queue_retry(ARRAY[%s]::uuid[])", post_id
    )
    assert unchanged["changed"] is False
    assert post(db, post_id)["status"] == "failed"

    retried = call(
        db,
        "SELECT * FROM social_queue_retry(%s::uuid, 'ops:ana',"
        " p_outcome_checked => true)",
        post_id,
    )
    assert retried["status"] == "queued"


@pytest.mark.parametrize(
    ("new_time", "new_content"),
    [("2031-01-01T00:00:00Z", None), (None, {"text": "edited"})],
)
def test_a_post_that_may_be_live_cannot_be_rescheduled(
    db: psycopg.Connection, new_time: str | None, new_content: dict | None
) -> None:
    post_id = unknown_outcome(db)
    before = post(db, post_id)

    with pytest.raises(psycopg.Error, match="may have published it") as e:
        db.execute(
            "SELECT social_queue_reschedule(%s, %s, %s)",
            (post_id, new_time, Jsonb(new_content) if new_content else None),
        )

    assert e.value.sqlstate == "SQ409"
    assert json.loads(e.value.diag.message_detail)["reason"] == "outcome_unchecked"
    assert post(db, post_id) == before


def test_rescheduling_a_failed_post_gives_it_a_new_chance(
    db: psycopg.Connection,
) -> None:
    # iCadence fixes the text that the platform refused.
    post_id = enqueue(db, content={"text": "too long for them"})
    claim(db, post_id)
    db.execute(
        "SELECT social_queue_fail(%s, 1, 'invalid', 'text too long')", (post_id,)
    )

    fixed = call(
        db,
        "SELECT * FROM social_queue_reschedule(%s, '2031-01-01T00:00:00Z', %s)",
        post_id,
        Jsonb({"text": "shorter"}),
    )

    assert (fixed["status"], fixed["budget_used"]) == ("queued", 0)
    assert fixed["next_attempt_at"] == datetime(2031, 1, 1, tzinfo=UTC)
    assert jobs(db, post_id)[-1]["scheduled_at"] == fixed["next_attempt_at"]
    assert events(db, post_id)[-1] == ("reschedule", "failed", "queued")


def test_new_content_drops_the_handles_made_for_the_old(db: psycopg.Connection) -> None:
    post_id = enqueue(db)
    claim(db, post_id)
    db.execute(
        "SELECT social_queue_save_handle(%s, 1, 'container_id', '\"17890\"')",
        (post_id,),
    )
    db.execute("SELECT social_queue_fail(%s, 1, 'transient', '503')", (post_id,))

    db.execute(
        "SELECT social_queue_reschedule(%s, NULL, %s)",
        (post_id, Jsonb({"text": "edited"})),
    )

    assert post(db, post_id)["handles"] == {}
    [edit] = rows(
        db,
        "SELECT detail FROM social_queue_events WHERE post_id = %s "
        "AND action = 'reschedule'",
        post_id,
    )
    assert edit["detail"]["content_changed"] is True


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("infinity", "between 2000-01-01 and 9000-01-01"),
        ("1999-12-31T23:59:59Z", "between 2000-01-01 and 9000-01-01"),
        ("9999-01-01T00:00:00Z", "between 2000-01-01 and 9000-01-01"),
    ],
)
def test_a_time_no_client_can_read_back_is_refused(
    db: psycopg.Connection, at: str, message: str
) -> None:
    with pytest.raises(psycopg.Error, match=message) as e:
        enqueue(db, at=at)
    assert e.value.sqlstate == "SQ422"
    assert db.execute("SELECT count(*) FROM social_queue").fetchone()[0] == 0


def test_pauses_and_resumes_of_platforms_and_accounts_are_recorded(
    db: psycopg.Connection, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN social_queue")
        db.execute("SELECT social_platform_pause('x', 'incident', 'ops:ana')")
        db.execute("SELECT social_platform_resume('x', 'ops:bob')")
        db.execute(
            "SELECT social_profile_pause('acme', 'linkedin', 'asked', 'ops:ana')"
        )
        db.execute("SELECT social_profile_resume('acme', 'linkedin', 'ops:ana')")
        # Resuming an account that is not paused changes nothing.
        db.execute("SELECT social_profile_resume('acme', 'linkedin', 'ops:ana')")
        notices = [
            json.loads(n.payload) for n in listener.notifies(timeout=2, stop_after=4)
        ]

    history = rows(
        db,
        "SELECT action, actor, platform, profile_id, reason "
        "FROM social_control_events ORDER BY id",
    )
    assert [tuple(r.values()) for r in history] == [
        ("pause", "ops:ana", "x", None, "incident"),
        ("resume", "ops:bob", "x", None, None),
        ("pause", "ops:ana", "linkedin", "acme", "asked"),
        ("resume", "ops:ana", "linkedin", "acme", None),
    ]
    assert [(n["platform"], n["paused"]) for n in notices] == [
        ("x", True),
        ("x", False),
        ("linkedin", True),
        ("linkedin", False),
    ]


@pytest.mark.parametrize("profile", ["", "   ", "p" * 201])
def test_a_profile_pause_needs_a_real_profile(
    db: psycopg.Connection, profile: str
) -> None:
    with pytest.raises(psycopg.Error, match="profile_id") as e:
        db.execute("SELECT social_profile_pause(%s, 'x')", (profile,))
    assert e.value.sqlstate == "SQ422"
    assert rows(db, "SELECT * FROM social_accounts") == []
