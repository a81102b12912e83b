"""Random sequences of API calls never leave a post in an inconsistent state.

Hypothesis drives the SQL API with operations in any order against a model
of the documented state machine (docs/state-machine.md). After every step,
the database must agree with the model on each post's status, the SQL API must
have refused exactly the transitions the model refuses, and every row must be
internally consistent: status, attempts, next attempt, lease, remote id,
attempt rows, event history and the deferred job all tell the same story.
"""

from __future__ import annotations

import itertools
from typing import Any
from uuid import UUID

import psycopg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tests.sql.helpers import enqueue, rows

LEGAL = {
    "pause": {"queued", "retrying"},
    "resume": {"paused"},
    "retry": {"failed", "retrying", "paused"},
    "cancel": {"queued", "retrying", "paused", "failed"},
}
AFTER = {
    "pause": "paused",
    "resume": "queued",
    "retry": "queued",
    "cancel": "cancelled",
}
WAITING = {"queued", "retrying"}
KINDS = ["transient", "rate_limited", "auth", "invalid", "config", "unknown_outcome"]


def run(db: psycopg.Connection, sql: str, *params: Any) -> str | None:
    """Run a statement; return the SQLSTATE of an API error, None on success."""
    try:
        db.execute(sql, params)
    except psycopg.Error as error:
        if error.sqlstate and error.sqlstate.startswith("SQ"):
            return error.sqlstate
        raise
    return None


def check_row_consistency(db: psycopg.Connection) -> None:
    max_attempts = db.execute(
        "SELECT max_attempts FROM social_queue_settings"
    ).fetchone()[0]
    for post in rows(db, "SELECT * FROM social_queue"):
        status = post["status"]
        assert (post["next_attempt_at"] is not None) == (status in WAITING), post
        assert (post["lease_expires_at"] is not None) == (status == "posting"), post
        assert (post["claimed_by"] is not None) == (status == "posting"), post
        assert (post["posted_at"] is not None) == (status == "posted"), post
        if status == "posted":
            assert post["remote_id"], post
        if status in ("failed", "retrying"):
            assert post["error_kind"] is not None, post
        assert 0 <= post["budget_used"] <= min(post["attempts"], max_attempts), post

        attempts = rows(
            db,
            "SELECT * FROM social_queue_attempts WHERE post_id = %s ORDER BY number",
            post["id"],
        )
        assert [a["number"] for a in attempts] == list(range(1, post["attempts"] + 1))
        open_attempts = [a for a in attempts if a["finished_at"] is None]
        if status == "posting":
            assert [a["number"] for a in open_attempts] == [post["attempts"]]
        else:
            assert open_attempts == []
        published = [a for a in attempts if a["outcome"] == "published"]
        assert len(published) <= 1

        history = rows(
            db,
            "SELECT from_status::text, to_status::text FROM social_queue_events "
            "WHERE post_id = %s ORDER BY id",
            post["id"],
        )
        assert history[0]["from_status"] is None
        for before, after in itertools.pairwise(history):
            assert after["from_status"] == before["to_status"], history
        assert history[-1]["to_status"] == status

        if status in WAITING:
            todo = rows(
                db,
                "SELECT scheduled_at FROM procrastinate_jobs "
                "WHERE queueing_lock = %s AND status = 'todo'",
                str(post["id"]),
            )
            assert [j["scheduled_at"] for j in todo] == [post["next_attempt_at"]]


class QueueMachine(RuleBasedStateMachine):
    db: psycopg.Connection

    posts = Bundle("posts")

    def __init__(self) -> None:
        super().__init__()
        self.db.execute(
            "TRUNCATE social_queue, social_accounts, procrastinate_jobs CASCADE"
        )
        self.db.execute("UPDATE social_platforms SET paused = false, paused_at = NULL")
        self.db.execute("UPDATE social_queue_settings SET max_attempts = 2")
        self.status: dict[UUID, str] = {}
        self.attempt: dict[UUID, int] = {}
        self.budget: dict[UUID, int] = {}
        self.failure: dict[UUID, str | None] = {}
        self.platform_paused = False

    @rule(target=posts, profile=st.sampled_from(["acme", "globex"]))
    def enqueue(self, profile: str) -> UUID:
        post_id = enqueue(self.db, profile=profile, at="2000-01-01T00:00:00Z")
        self.status[post_id] = "queued"
        self.attempt[post_id] = 0
        self.budget[post_id] = 0
        self.failure[post_id] = None
        return post_id

    @rule(post_id=posts)
    def claim(self, post_id: UUID) -> None:
        # Time passes: the post is due and no rate limit holds it back.
        self.db.execute("UPDATE social_accounts SET rate_limited_until = NULL")
        self.db.execute(
            "UPDATE social_queue SET next_attempt_at = now() - interval '1 s' "
            "WHERE id = %s AND status IN ('queued', 'retrying')",
            (post_id,),
        )
        claimed = rows(self.db, "SELECT * FROM social_queue_claim(%s, 'prop')", post_id)
        expected = self.status[post_id] in WAITING and not self.platform_paused
        assert bool(claimed) == expected
        if claimed:
            self.status[post_id] = "posting"
            self.attempt[post_id] += 1

    @rule(post_id=posts)
    def complete(self, post_id: UUID) -> None:
        error = run(
            self.db,
            "SELECT social_queue_complete(%s, %s, 'remote')",
            post_id,
            self.attempt[post_id],
        )
        if self.status[post_id] == "posting":
            assert error is None
            self.status[post_id] = "posted"
        else:
            assert error == "SQ409"

    @rule(post_id=posts, kind=st.sampled_from(KINDS))
    def fail(self, post_id: UUID, kind: str) -> None:
        error = run(
            self.db,
            "SELECT social_queue_fail(%s, %s, %s, 'err')",
            post_id,
            self.attempt[post_id],
            kind,
        )
        if self.status[post_id] != "posting":
            assert error == "SQ409"
            return
        assert error is None
        self.failure[post_id] = kind
        if kind == "rate_limited":
            self.status[post_id] = "retrying"
        elif kind == "transient":
            self.budget[post_id] += 1
            self.status[post_id] = "retrying" if self.budget[post_id] < 2 else "failed"
        else:
            self.status[post_id] = "failed"

    @rule(post_id=posts, kind=st.sampled_from(KINDS))
    def attempt_that_fails(self, post_id: UUID, kind: str) -> None:
        # Claim and failure in one step, so that retry budgets run out within
        # the few steps of one example.
        self.claim(post_id)
        self.fail(post_id, kind)

    @rule(post_id=posts)
    def report_as_a_stale_attempt(self, post_id: UUID) -> None:
        error = run(
            self.db,
            "SELECT social_queue_complete(%s, %s, 'remote')",
            post_id,
            self.attempt[post_id] - 1,
        )
        assert error == "SQ409"

    @rule(post_id=posts, action=st.sampled_from(sorted(LEGAL)))
    def operate(self, post_id: UUID, action: str) -> None:
        error = run(self.db, f"SELECT social_queue_{action}(%s::uuid)", post_id)
        if action == "retry" and self.may_be_live(post_id):
            # Nobody said they checked the platform.
            assert error == "SQ409"
        elif self.status[post_id] in LEGAL[action]:
            assert error is None
            if action == "retry":
                self.budget[post_id] = 0
            self.status[post_id] = AFTER[action]
        else:
            assert error == "SQ409"

    @rule(post_id=posts)
    def retry_after_checking(self, post_id: UUID) -> None:
        error = run(
            self.db,
            "SELECT social_queue_retry(%s::uuid, 'ops:ana', p_outcome_checked => true)",
            post_id,
        )
        if self.status[post_id] in LEGAL["retry"]:
            assert error is None
            self.budget[post_id] = 0
            self.status[post_id] = "queued"
        else:
            assert error == "SQ409"

    @rule(post_id=posts)
    def reconciled_as_not_published(self, post_id: UUID) -> None:
        error = run(self.db, "SELECT social_queue_requeue_unpublished(%s)", post_id)
        if not self.may_be_live(post_id):
            assert error == "SQ409"
            return
        assert error is None
        self.budget[post_id] += 1
        self.failure[post_id] = "transient"
        self.status[post_id] = "retrying" if self.budget[post_id] < 2 else "failed"

    def may_be_live(self, post_id: UUID) -> bool:
        return (
            self.status[post_id] == "failed"
            and self.failure[post_id] == "unknown_outcome"
        )

    @rule(post_id=posts)
    def lease_expires(self, post_id: UUID) -> None:
        self.db.execute(
            "UPDATE social_queue SET lease_expires_at = now() - interval '1 s' "
            "WHERE id = %s AND status = 'posting'",
            (post_id,),
        )
        reaped = rows(self.db, "SELECT id FROM social_queue_reap_expired()")
        if self.status[post_id] == "posting":
            assert [r["id"] for r in reaped] == [post_id]
            self.status[post_id] = "failed"
            self.failure[post_id] = "unknown_outcome"
        else:
            assert reaped == []

    @rule(post_id=posts)
    def mark_posted(self, post_id: UUID) -> None:
        error = run(self.db, "SELECT social_queue_mark_posted(%s, 'found')", post_id)
        if (
            self.status[post_id] == "failed"
            and self.failure[post_id] == "unknown_outcome"
        ):
            assert error is None
            self.status[post_id] = "posted"
        else:
            assert error == "SQ409"

    @rule(post_id=posts, new_time=st.booleans())
    def reschedule(self, post_id: UUID, new_time: bool) -> None:
        error = run(
            self.db,
            "SELECT social_queue_reschedule(%s, %s, %s)",
            post_id,
            "2001-01-01T00:00:00Z" if new_time else None,
            None if new_time else '{"text": "edited"}',
        )
        if self.may_be_live(post_id):
            # A new time or text would hide what to look for on the platform.
            assert error == "SQ409"
        elif self.status[post_id] in {"queued", "retrying", "paused", "failed"}:
            assert error is None
            if self.status[post_id] == "failed":
                self.status[post_id] = "queued"
                self.budget[post_id] = 0
            elif new_time and self.status[post_id] == "retrying":
                self.status[post_id] = "queued"
        else:
            assert error == "SQ409"

    @rule(paused=st.booleans())
    def platform(self, paused: bool) -> None:
        verb = "pause" if paused else "resume"
        self.db.execute(f"SELECT social_platform_{verb}('x')")
        self.platform_paused = paused

    @invariant()
    def database_agrees_with_the_model(self) -> None:
        actual = {
            r["id"]: r["status"] for r in rows(self.db, "SELECT * FROM social_queue")
        }
        assert actual == self.status
        check_row_consistency(self.db)


def test_random_operation_sequences_keep_every_post_consistent(
    db: psycopg.Connection,
) -> None:
    QueueMachine.db = db
    run_state_machine_as_test(
        QueueMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        ),
    )
