"""The social_queue_caller role: read the queue, call the API, nothing else."""

from __future__ import annotations

import psycopg
import pytest

from tests.sql.helpers import enqueue


@pytest.fixture
def caller(database_url: str) -> psycopg.Connection:
    conn = psycopg.connect(database_url, autocommit=True)
    conn.execute("SET ROLE social_queue_caller")
    yield conn
    conn.close()


def test_the_caller_enqueues_operates_and_reads(caller: psycopg.Connection) -> None:
    post_id = enqueue(caller, content={"text": "from another system"})

    caller.execute("SELECT social_queue_pause(%s::uuid)", (post_id,))
    status = caller.execute(
        "SELECT status FROM social_queue WHERE id = %s", (post_id,)
    ).fetchone()[0]
    assert status == "paused"
    assert caller.execute("SELECT count(*) FROM social_queue_events").fetchone()[0] == 2
    assert caller.execute("SELECT * FROM social_queue_stats()").fetchall()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE social_queue SET status = 'posted'",
        "DELETE FROM social_queue",
        "INSERT INTO social_queue_events (post_id, action, actor, to_status) "
        "VALUES (gen_random_uuid(), 'x', 'x', 'queued')",
        "SELECT * FROM social_accounts",
        "SELECT * FROM social_environment_grants",
        "UPDATE social_queue_settings SET max_attempts = 100",
        "SELECT social_queue__invalid('x')",
        "SELECT * FROM procrastinate_jobs",
        "SELECT * FROM social_queue_prune(NULL, 1)",
        "SELECT social_queue_webhook_prune('1 day')",
    ],
)
def test_the_caller_may_do_nothing_else(
    caller: psycopg.Connection, statement: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        caller.execute(statement)


def test_the_caller_cannot_shadow_our_tables_with_temporary_ones(
    caller: psycopg.Connection,
) -> None:
    # The API runs with its owner's rights; if it looked in the caller's
    # temporary schema first, this table would let the caller invent a
    # platform without limits.
    caller.execute("CREATE TEMP TABLE social_platforms (LIKE pg_class)")

    with pytest.raises(psycopg.Error, match="unknown platform 'myspace'") as e:
        enqueue(caller, platform="myspace")
    assert e.value.sqlstate == "SQ422"
    assert enqueue(caller, platform="x")
