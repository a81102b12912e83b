"""social_queue_enqueue, plain INSERTs, content checks and the deferred job."""

from __future__ import annotations

import json
import re

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.sql.helpers import enqueue, events, jobs, post, rows


def count_posts(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) FROM social_queue").fetchone()[0]


def test_enqueue_queues_the_post_due_at_its_scheduled_time(
    db: psycopg.Connection,
) -> None:
    post_id = enqueue(db, at="2030-01-01T09:00:00Z", content={"text": "launch"})

    row = post(db, post_id)
    assert row["status"] == "queued"
    assert row["attempts"] == 0
    assert row["next_attempt_at"] == row["scheduled_at"]
    assert row["content"] == {"text": "launch"}
    assert events(db, post_id) == [("enqueue", None, "queued")]


def test_enqueue_defers_one_publish_job_at_the_due_time(db: psycopg.Connection) -> None:
    post_id = enqueue(db, at="2030-01-01T09:00:00Z")

    [job] = jobs(db, post_id)
    assert job["task_name"] == "publish_post"
    assert job["queue_name"] == "publish"
    assert job["args"] == {"post_id": str(post_id)}
    assert job["status"] == "todo"
    assert job["scheduled_at"] == post(db, post_id)["scheduled_at"]


def test_plain_insert_gets_the_same_treatment_as_enqueue(
    db: psycopg.Connection,
) -> None:
    # The original proposal's test, and other systems, insert rows directly.
    post_id = db.execute(
        "INSERT INTO social_queue (profile_id, platform, content, scheduled_at) "
        "VALUES ('p', 'linkedin', '{\"text\": \"from sql\"}', now()) RETURNING id"
    ).fetchone()[0]

    row = post(db, post_id)
    assert row["status"] == "queued"
    assert row["next_attempt_at"] == row["scheduled_at"]
    assert [j["status"] for j in jobs(db, post_id)] == ["todo"]
    [(action, _, to_status)] = events(db, post_id)
    assert (action, to_status) == ("insert", "queued")
    actor = db.execute(
        "SELECT actor FROM social_queue_events WHERE post_id = %s", (post_id,)
    ).fetchone()[0]
    assert actor.startswith("sql:")


def test_enqueue_with_an_existing_idempotency_key_returns_that_post(
    db: psycopg.Connection,
) -> None:
    at = "2030-01-01T09:00:00Z"
    first = enqueue(db, key="icadence:evt_1", content={"text": "one"}, at=at)
    second = enqueue(db, key="icadence:evt_1", content={"text": "one"}, at=at)

    assert second == first
    assert count_posts(db) == 1
    assert len(jobs(db, first)) == 1
    assert events(db, first) == [("enqueue", None, "queued")]


def test_enqueue_replay_matches_the_same_instant_in_another_offset(
    db: psycopg.Connection,
) -> None:
    first = enqueue(db, key="k", at="2030-01-01T09:00:00Z")
    second = enqueue(db, key="k", at="2030-01-01T10:00:00+01:00")

    assert second == first


def test_an_idempotency_key_reused_for_another_post_is_refused(
    db: psycopg.Connection,
) -> None:
    first = enqueue(db, key="icadence:evt_1", content={"text": "one"})

    with pytest.raises(psycopg.Error, match="idempotency key icadence:evt_1") as e:
        enqueue(db, key="icadence:evt_1", content={"text": "different"})

    assert e.value.sqlstate == "SQ409"
    assert str(first) in str(e.value)
    assert count_posts(db) == 1
    assert post(db, first)["content"] == {"text": "one"}


def test_an_idempotent_replay_survives_a_reschedule_of_its_post(
    db: psycopg.Connection,
) -> None:
    # The key remembers what was first asked for: iCadence resending the
    # original event after moving the schedule is still the same post.
    first = enqueue(db, key="k", at="2030-01-01T09:00:00Z", content={"text": "a"})
    db.execute(
        "SELECT social_queue_reschedule(%s, '2030-02-01T09:00:00Z', %s)",
        (first, Jsonb({"text": "b"})),
    )

    again = enqueue(db, key="k", at="2030-01-01T09:00:00Z", content={"text": "a"})

    assert again == first
    assert post(db, first)["content"] == {"text": "b"}


def test_an_empty_idempotency_key_is_refused(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error, match="must not be empty") as e:
        enqueue(db, key="")
    assert e.value.sqlstate == "SQ422"
    assert count_posts(db) == 0


def test_enqueue_notifies_listeners(db: psycopg.Connection, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN social_queue")
        post_id = enqueue(db, platform="linkedin", profile="acme")
        notices = list(listener.notifies(timeout=2, stop_after=1))

    assert json.loads(notices[0].payload) == {
        "id": str(post_id),
        "status": "queued",
        "platform": "linkedin",
        "profile_id": "acme",
    }


@pytest.mark.parametrize(
    ("platform", "content", "message"),
    [
        ("myspace", {"text": "hi"}, "unknown platform 'myspace'; known platforms:"),
        (None, {"text": "hi"}, "platform is required"),
        ("x", {}, "content is empty"),
        ("x", {"text": "   "}, "content is empty"),
        ("x", {"text": "a" * 281}, "text is 281 characters, X allows 280"),
        (
            "linkedin",
            {"text": "a" * 3001},
            "text is 3001 characters, LinkedIn allows 3000",
        ),
        (
            "instagram",
            {"text": "no picture"},
            "Instagram posts need at least one media URL",
        ),
        ("youtube", {"text": "v"}, "YouTube posts need at least one media URL"),
        (
            "x",
            {"mediaUrls": [f"https://cdn.example/{i}.jpg" for i in range(5)]},
            "X posts take at most 4 media, this one has 5",
        ),
        ("x", {"text": 42}, "content.text must be a string"),
        ("x", {"text": "hi", "mediaUrls": "https://a/b.jpg"}, "must be an array"),
        ("x", {"mediaUrls": ["ftp://a/b.jpg"]}, "mediaUrls[0] is not an http(s) URL"),
        ("x", {"mediaUrls": [7]}, "mediaUrls[0] is not an http(s) URL"),
        ("x", {"text": "hi", "colour": "red"}, "unknown field 'colour'"),
        ("x", {"text": "hi", "options": []}, "content.options must be an object"),
        ("x", [], "content must be a JSON object"),
    ],
)
def test_enqueue_rejects_bad_input_and_writes_nothing(
    db: psycopg.Connection, platform: str | None, content: object, message: str
) -> None:
    with pytest.raises(psycopg.Error, match=re.escape(message)) as caught:
        db.execute(
            "SELECT social_queue_enqueue('p', %s, %s, now())",
            (platform, Jsonb(content)),
        )

    assert caught.value.sqlstate == "SQ422"
    assert count_posts(db) == 0
    assert db.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("profile", "at", "key", "message"),
    [
        ("p", None, None, "scheduled_at is required"),
        (None, "now", None, "profile_id is required"),
        ("", "now", None, "profile_id is required"),
        ("p", "now", "", "idempotency_key must not be empty"),
    ],
)
def test_enqueue_requires_its_fields(
    db: psycopg.Connection,
    profile: str | None,
    at: str | None,
    key: str | None,
    message: str,
) -> None:
    with pytest.raises(psycopg.Error, match=re.escape(message)) as caught:
        db.execute(
            "SELECT social_queue_enqueue(%s, 'x', %s, %s::timestamptz, %s)",
            (profile, Jsonb({"text": "hi"}), at, key),
        )
    assert caught.value.sqlstate == "SQ422"
    assert count_posts(db) == 0


def test_enqueue_counts_each_url_as_the_platform_does(db: psycopg.Connection) -> None:
    # X counts every URL as 23 characters, so a long link fits.
    text = "read this " + "https://example.com/" + "a" * 400
    post_id = enqueue(db, platform="x", content={"text": text})

    assert post(db, post_id)["content"]["text"] == text


def test_plain_insert_with_bad_content_is_rejected(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.Error, match="Instagram posts need at least one media"):
        db.execute(
            "INSERT INTO social_queue (profile_id, platform, content, scheduled_at) "
            "VALUES ('p', 'instagram', '{\"text\": \"hi\"}', now())"
        )
    with pytest.raises(psycopg.Error, match="scheduled_at is required"):
        db.execute(
            "INSERT INTO social_queue (profile_id, platform, content) "
            "VALUES ('p', 'x', '{\"text\": \"hi\"}')"
        )
    assert count_posts(db) == 0


def test_platform_limits_live_in_the_database(db: psycopg.Connection) -> None:
    limits = {
        r["platform"]: r
        for r in rows(
            db, "SELECT platform, max_text_length, media_required FROM social_platforms"
        )
    }
    assert set(limits) == {
        "x",
        "instagram",
        "linkedin",
        "facebook",
        "tiktok",
        "youtube",
    }
    assert limits["x"]["max_text_length"] == 280
    assert limits["tiktok"]["media_required"] is True

    db.execute("UPDATE social_platforms SET max_text_length = 10 WHERE platform = 'x'")
    with pytest.raises(psycopg.Error, match="text is 11 characters, X allows 10"):
        enqueue(db, content={"text": "a" * 11})
