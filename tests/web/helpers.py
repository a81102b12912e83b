"""Constants and builders shared by the web tests."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

SECRET = "whsec_test_0123456789abcdef"
TOKEN = "ops-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def posted_event(event_id: str = "evt_1", **data: Any) -> dict[str, Any]:
    """A schedule.posted event in the envelope; `data` overrides its fields
    (None removes one)."""
    fields: dict[str, Any] = {
        "scheduleId": "sch_1",
        "profileId": "profile-1",
        "platform": "x",
        "scheduledAt": "2030-01-01T09:00:00Z",
        "content": {"text": "hello from iCadence", "mediaUrls": []},
    }
    fields.update(data)
    return {
        "id": event_id,
        "type": "schedule.posted",
        "createdAt": "2029-12-31T09:00:00Z",
        "data": {k: v for k, v in fields.items() if v is not None},
    }


def event(event_type: str, event_id: str, **data: Any) -> dict[str, Any]:
    return {"id": event_id, "type": event_type, "data": data}


def insert_post(
    db: psycopg.Connection,
    *,
    profile: str = "profile-1",
    platform: str = "x",
    text: str = "hello",
    at: str = "2030-01-01T09:00:00Z",
) -> str:
    """A post written the way another system would: a plain INSERT."""
    row = db.execute(
        "INSERT INTO social_queue (profile_id, platform, content, scheduled_at)"
        " VALUES (%s, %s, %s, %s) RETURNING id::text",
        (profile, platform, Jsonb({"text": text}), at),
    ).fetchone()
    assert row is not None
    return row[0]


def count_posts(db: psycopg.Connection) -> int:
    row = db.execute("SELECT count(*) FROM social_queue").fetchone()
    assert row is not None
    return row[0]


def publish(db: psycopg.Connection, post_id: str, remote_id: str = "r-1") -> None:
    """Take a post through claim and complete, as a worker would."""
    make_due(db, post_id)
    db.execute("SELECT social_queue_claim(%s, 'w1')", (post_id,))
    db.execute("SELECT social_queue_complete(%s, 1, %s)", (post_id, remote_id))


def fail(db: psycopg.Connection, post_id: str, message: str = "boom") -> None:
    """Take a post through claim and a permanent failure."""
    make_due(db, post_id)
    db.execute("SELECT social_queue_claim(%s, 'w1')", (post_id,))
    db.execute(
        "SELECT social_queue_fail(%s, 1, 'invalid', %s, 400)", (post_id, message)
    )


def make_due(db: psycopg.Connection, post_id: str) -> None:
    db.execute(
        "UPDATE social_queue SET next_attempt_at = now() - interval '1 second'"
        " WHERE id = %s",
        (post_id,),
    )
