"""Text search reads a trigram index where the server has pg_trgm."""

from __future__ import annotations

import psycopg

from tests.sql.helpers import enqueue, rows

SEARCH = "SELECT id FROM social_queue WHERE content->>'text' ILIKE %s"


def test_the_text_index_exists_exactly_where_pg_trgm_does(
    db: psycopg.Connection,
) -> None:
    available = db.execute(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_trgm'"
    ).fetchone()[0]
    index = db.execute(
        "SELECT count(*) FROM pg_indexes WHERE indexname = 'social_queue_text_trgm_idx'"
    ).fetchone()[0]

    assert index == available


def test_a_substring_search_finds_the_post_with_or_without_the_index(
    db: psycopg.Connection,
) -> None:
    wanted = enqueue(db, content={"text": "Read the launch notes"})
    enqueue(db, content={"text": "Something else"})
    db.execute("SET enable_seqscan = off")

    found = rows(db, SEARCH, "%aunch not%")
    plan = "\n".join(r[0] for r in db.execute("EXPLAIN " + SEARCH, ("%aunch not%",)))

    assert [r["id"] for r in found] == [wanted]
    has_index = db.execute(
        "SELECT count(*) FROM pg_indexes WHERE indexname = 'social_queue_text_trgm_idx'"
    ).fetchone()[0]
    assert ("social_queue_text_trgm_idx" in plan) == bool(has_index)
