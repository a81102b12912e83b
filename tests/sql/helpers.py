"""Small helpers for calling the SQL API from tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb


def enqueue(
    db: psycopg.Connection,
    *,
    profile: str = "profile-1",
    platform: str = "x",
    content: dict[str, Any] | None = None,
    at: str | datetime = "now",
    key: str | None = None,
    source: str = "sql",
    source_ref: str | None = None,
) -> UUID:
    row = db.execute(
        "SELECT social_queue_enqueue(%s, %s, %s, %s::timestamptz, %s, %s, %s)",
        (
            profile,
            platform,
            Jsonb(content if content is not None else {"text": "hello"}),
            at,
            key,
            source,
            source_ref,
        ),
    ).fetchone()
    assert row is not None
    return row[0]


def post(db: psycopg.Connection, post_id: UUID) -> dict[str, Any]:
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM social_queue WHERE id = %s", (post_id,)
        ).fetchone()
    assert row is not None, f"post {post_id} not found"
    return row


def call(db: psycopg.Connection, sql: str, *params: Any) -> dict[str, Any] | None:
    """Run `SELECT * FROM <function call>` and return its first row as a dict."""
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchone()


def rows(db: psycopg.Connection, sql: str, *params: Any) -> list[dict[str, Any]]:
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def claim(
    db: psycopg.Connection, post_id: UUID, worker: str = "w1"
) -> dict[str, Any] | None:
    return call(db, "SELECT * FROM social_queue_claim(%s, %s)", post_id, worker)


def make_due(db: psycopg.Connection, post_id: UUID) -> None:
    """Move a waiting post's next attempt into the past, as time passing would."""
    db.execute(
        "UPDATE social_queue SET next_attempt_at = now() - interval '1 second' "
        "WHERE id = %s",
        (post_id,),
    )


def events(db: psycopg.Connection, post_id: UUID) -> list[tuple[str, str | None, str]]:
    return [
        (r["action"], r["from_status"], r["to_status"])
        for r in rows(
            db,
            "SELECT action, from_status::text, to_status::text "
            "FROM social_queue_events WHERE post_id = %s ORDER BY id",
            post_id,
        )
    ]


def jobs(db: psycopg.Connection, post_id: UUID) -> list[dict[str, Any]]:
    return rows(
        db,
        "SELECT task_name, queue_name, args, scheduled_at, status::text "
        "FROM procrastinate_jobs WHERE queueing_lock = %s ORDER BY id",
        str(post_id),
    )
