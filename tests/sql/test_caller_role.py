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
        "UPDATE social_queue_settings SET max_attempts = 100",
        "SELECT social_queue__invalid('x')",
        "SELECT * FROM procrastinate_jobs",
    ],
)
def test_the_caller_may_do_nothing_else(
    caller: psycopg.Connection, statement: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        caller.execute(statement)
