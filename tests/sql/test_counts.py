"""Counts by platform and status, kept by triggers instead of read from the table."""

from __future__ import annotations

import threading

import psycopg

from tests.sql.helpers import claim, enqueue, rows


def counts(db: psycopg.Connection) -> dict[tuple[str, str], int]:
    return {
        (r["platform"], r["status"]): r["posts"]
        for r in rows(
            db, "SELECT platform, status::text, posts FROM social_queue_stats()"
        )
    }


def true_counts(db: psycopg.Connection) -> dict[tuple[str, str], int]:
    return {
        (r["platform"], r["status"]): r["n"]
        for r in rows(
            db,
            "SELECT platform, status::text, count(*) AS n"
            " FROM social_queue GROUP BY 1, 2",
        )
    }


def test_stats_follow_inserts_updates_and_deletes_before_and_after_compaction(
    db: psycopg.Connection,
) -> None:
    a = enqueue(db)
    b = enqueue(db)
    enqueue(db, platform="linkedin")
    claim(db, a)
    db.execute("SELECT social_queue_complete(%s, 1, 'r')", (a,))
    db.execute("SELECT social_queue_cancel(%s::uuid)", (b,))
    # Another system's plain statements are counted too.
    db.execute(
        "INSERT INTO social_queue (profile_id, platform, content, scheduled_at) "
        "SELECT 'p', 'facebook', '{\"text\": \"t\"}', now() FROM generate_series(1, 3)"
    )
    db.execute("DELETE FROM social_queue WHERE id = %s", (b,))

    before = counts(db)
    folded = db.execute("SELECT social_queue_compact_counts()").fetchone()[0]
    after = counts(db)

    assert before == after == true_counts(db)
    assert after == {
        ("x", "posted"): 1,
        ("linkedin", "queued"): 1,
        ("facebook", "queued"): 3,
    }
    assert folded > 0
    assert rows(db, "SELECT * FROM social_queue_count_deltas") == []
    assert db.execute("SELECT social_queue_compact_counts()").fetchone()[0] == 0


def test_stats_are_empty_after_a_truncate(db: psycopg.Connection) -> None:
    enqueue(db)
    db.execute("SELECT social_queue_compact_counts()")
    enqueue(db)

    db.execute("TRUNCATE social_queue CASCADE")

    assert counts(db) == {}


def test_concurrent_compactions_fold_every_delta_once(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as setup:
        for _ in range(20):
            enqueue(setup)
    folded: list[int] = []

    with psycopg.connect(database_url) as first:
        folded.append(
            first.execute("SELECT social_queue_compact_counts()").fetchone()[0]
        )

        def compact_meanwhile() -> None:
            with psycopg.connect(database_url, autocommit=True) as second:
                n = second.execute("SELECT social_queue_compact_counts()").fetchone()[0]
                folded.append(n)

        # The second waits on the deltas the first deleted but has not committed.
        other = threading.Thread(target=compact_meanwhile)
        other.start()
        other.join(timeout=0.5)
        assert other.is_alive()
        first.commit()
        other.join(timeout=10)

    assert folded == [20, 0]
    with psycopg.connect(database_url, autocommit=True) as check:
        assert counts(check) == true_counts(check) == {("x", "queued"): 20}
