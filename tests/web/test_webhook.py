"""The iCadence webhook: events become posts, once, and bad input changes nothing."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest

from tests.web.conftest import Deliver
from tests.web.helpers import (
    SECRET,
    count_posts,
    event,
    fail,
    insert_post,
    make_due,
    posted_event,
    publish,
)


async def test_schedule_posted_enqueues_one_post_with_its_source(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    response = await deliver(posted_event(options={"reply_settings": "following"}))

    assert response.status_code == 200
    body = response.json()
    assert body["result"] == "enqueued"
    assert body["event"] == {"id": "evt_1", "type": "schedule.posted"}
    row = db.execute(
        "SELECT id::text, profile_id, platform, content, scheduled_at::text, status,"
        " idempotency_key, source, source_ref FROM social_queue"
    ).fetchone()
    assert row == (
        body["post"]["id"],
        "profile-1",
        "x",
        {
            "text": "hello from iCadence",
            "mediaUrls": [],
            "options": {"reply_settings": "following"},
        },
        "2030-01-01 09:00:00+00",
        "queued",
        "icadence:schedule:sch_1:x",
        "icadence",
        "sch_1",
    )


async def test_flat_shape_of_the_original_integration_is_accepted(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    flat = {
        "type": "schedule.posted",
        "profileId": "profile-9",
        "platform": "linkedin",
        "scheduledAt": "2030-02-01T10:00:00+01:00",
        "content": {"text": "flat"},
    }

    first = await deliver(flat)
    again = await deliver(flat)

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert first.json()["event"]["id"].startswith("sha256:")
    assert count_posts(db) == 1


async def test_duplicate_delivery_gets_the_same_answer_and_changes_nothing(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    first = await deliver(posted_event())
    events_before = db.execute("SELECT count(*) FROM social_queue_events").fetchone()

    second = await deliver(posted_event())

    assert second.status_code == 200
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert count_posts(db) == 1
    assert (
        db.execute("SELECT count(*) FROM social_queue_events").fetchone()
        == events_before
    )


async def test_concurrent_duplicate_deliveries_make_exactly_one_post(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    responses = await asyncio.gather(*(deliver(posted_event()) for _ in range(4)))

    assert {r.status_code for r in responses} == {200}
    assert len({json.dumps(r.json(), sort_keys=True) for r in responses}) == 1
    assert count_posts(db) == 1


async def test_same_schedule_under_a_new_event_id_is_not_posted_twice(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    first = await deliver(posted_event("evt_1"))
    second = await deliver(posted_event("evt_2"))

    assert second.json()["result"] == "already_enqueued"
    assert second.json()["post"] == first.json()["post"]
    assert count_posts(db) == 1


async def test_same_schedule_with_other_content_is_a_conflict_not_a_silent_drop(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    first = await deliver(posted_event("evt_1"))

    second = await deliver(posted_event("evt_2", content={"text": "edited"}))

    assert second.status_code == 409
    error = second.json()["error"]
    assert error["code"] == "schedule_conflict"
    assert error["field"] == "data.scheduleId"
    assert first.json()["post"]["id"] in error["message"]
    assert "schedule.updated" in error["message"]
    assert count_posts(db) == 1
    # Nothing of the refused event was kept: a corrected redelivery is new.
    again = await deliver(posted_event("evt_2"))
    assert again.json()["result"] == "already_enqueued"


async def test_one_schedule_on_two_platforms_makes_two_posts(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    await deliver(posted_event("evt_1", platform="x"))
    await deliver(posted_event("evt_2", platform="linkedin"))

    assert count_posts(db) == 2


async def test_reused_event_id_with_another_body_is_refused_with_409(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    await deliver(posted_event("evt_1"))

    response = await deliver(posted_event("evt_1", profileId="someone-else"))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "event_id_reused"
    assert count_posts(db) == 1


async def test_schedule_deleted_cancels_by_profile_and_time(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    post_id = insert_post(db, at="2030-01-01T09:00:00Z")
    other = insert_post(db, at="2030-01-02T09:00:00Z")

    response = await deliver(
        event(
            "schedule.deleted",
            "evt_del",
            profileId="profile-1",
            scheduledAt="2030-01-01T10:00:00+01:00",
        )
    )

    assert response.status_code == 200
    assert response.json()["cancelled"] == [post_id]
    assert response.json()["untouched"] == []
    statuses = dict(db.execute("SELECT id::text, status::text FROM social_queue"))
    assert statuses == {post_id: "cancelled", other: "queued"}


async def test_schedule_deleted_by_schedule_id_cancels_every_platform(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    await deliver(posted_event("evt_1", platform="x"))
    await deliver(posted_event("evt_2", platform="linkedin"))

    response = await deliver(event("schedule.deleted", "evt_3", scheduleId="sch_1"))

    assert response.json()["result"] == "cancelled"
    assert len(response.json()["cancelled"]) == 2
    assert db.execute(
        "SELECT count(*) FROM social_queue WHERE status = 'cancelled'"
    ).fetchone() == (2,)


async def test_schedule_deleted_leaves_a_posted_post_untouched_and_says_so(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    post_id = insert_post(db)
    publish(db, post_id)

    response = await deliver(
        event(
            "schedule.deleted",
            "evt_del",
            profileId="profile-1",
            scheduledAt="2030-01-01T09:00:00Z",
        )
    )

    assert response.status_code == 200
    body = response.json()
    assert body["result"] == "nothing_to_do"
    assert body["cancelled"] == []
    [untouched] = body["untouched"]
    assert untouched["id"] == post_id
    assert untouched["status"] == "posted"
    assert "it is posted" in untouched["reason"]
    assert db.execute("SELECT status::text FROM social_queue").fetchone() == ("posted",)


async def test_schedule_updated_moves_the_posts_not_yet_published(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    await deliver(posted_event("evt_1", platform="x"))
    await deliver(posted_event("evt_2", platform="linkedin"))
    x_post = db.execute("SELECT id::text FROM social_queue WHERE platform = 'x'")
    x_id = x_post.fetchone()[0]  # type: ignore[index]
    publish(db, x_id)

    response = await deliver(
        event(
            "schedule.updated",
            "evt_3",
            scheduleId="sch_1",
            scheduledAt="2030-03-01T12:00:00Z",
            content={"text": "edited"},
        )
    )

    body = response.json()
    assert body["result"] == "rescheduled"
    assert len(body["rescheduled"]) == 1
    assert [u["id"] for u in body["untouched"]] == [x_id]
    row = db.execute(
        "SELECT scheduled_at::text, content->>'text' FROM social_queue"
        " WHERE platform = 'linkedin'"
    ).fetchone()
    assert row == ("2030-03-01 12:00:00+00", "edited")


async def test_schedule_updated_gives_a_failed_post_a_new_chance(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    await deliver(posted_event("evt_1", platform="x"))
    await deliver(posted_event("evt_2", platform="linkedin"))
    ids = dict(db.execute("SELECT platform, id::text FROM social_queue").fetchall())
    fail(db, ids["x"], "X refused the text")
    # The LinkedIn attempt may have gone out: it stays for an operator.
    make_due(db, ids["linkedin"])
    db.execute("SELECT social_queue_claim(%s, 'w1')", (ids["linkedin"],))
    db.execute(
        "SELECT social_queue_fail(%s, 1, 'unknown_outcome', 'timed out')",
        (ids["linkedin"],),
    )

    response = await deliver(
        event("schedule.updated", "evt_3", scheduleId="sch_1", content={"text": "v2"})
    )

    body = response.json()
    assert body["rescheduled"] == [ids["x"]]
    [untouched] = body["untouched"]
    assert untouched["id"] == ids["linkedin"]
    assert "may have published" in untouched["reason"]
    statuses = dict(db.execute("SELECT platform, status::text FROM social_queue"))
    assert statuses == {"x": "queued", "linkedin": "failed"}


async def test_schedule_updated_content_invalid_for_a_platform_changes_nothing(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    await deliver(posted_event("evt_1", platform="x"))

    response = await deliver(
        event(
            "schedule.updated", "evt_2", scheduleId="sch_1", content={"text": "x" * 300}
        )
    )

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "data.content.text"
    assert db.execute("SELECT content->>'text' FROM social_queue").fetchone() == (
        "hello from iCadence",
    )


async def test_unknown_event_type_is_acknowledged_and_ignored(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    response = await deliver(event("profile.connected", "evt_x", profileId="p"))

    assert response.status_code == 200
    assert response.json()["result"] == "ignored"
    assert count_posts(db) == 0


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"profileId": None}, "data.profileId", "non-empty string"),
        ({"profileId": 42}, "data.profileId", "non-empty string"),
        ({"platform": None}, "data.platform", "non-empty string"),
        ({"platform": "myspace"}, "data.platform", "unknown platform"),
        ({"scheduledAt": None}, "data.scheduledAt", "ISO-8601"),
        ({"scheduledAt": "tomorrow"}, "data.scheduledAt", "not ISO-8601"),
        ({"scheduledAt": "2030-01-01T09:00:00"}, "data.scheduledAt", "offset"),
        ({"scheduledAt": "2030-01-01"}, "data.scheduledAt", "offset"),
        ({"content": None}, "data.content", "object"),
        ({"content": {"text": 5}}, "data.content.text", "string"),
        ({"content": {"mediaUrls": "a.jpg"}}, "data.content.mediaUrls", "array"),
        ({"content": {"text": "x" * 281}}, "data.content.text", "X allows 280"),
        ({"content": {"text": ""}}, "data.content", "empty"),
        ({"platform": "instagram"}, "data.content", "at least one media"),
        ({"options": []}, "data.options", "object"),
        ({"content": {"text": "t", "options": 5}}, "data.content.options", "object"),
        (
            {"content": {"text": "t", "options": 5}, "options": {"a": 1}},
            "data.content.options",
            "object",
        ),
        ({"scheduleId": ""}, "data.scheduleId", "1 to 200"),
    ],
)
async def test_malformed_fields_get_422_naming_the_field_and_nothing_is_written(
    deliver: Deliver,
    db: psycopg.Connection,
    data: dict[str, object],
    field: str,
    words: str,
) -> None:
    response = await deliver(posted_event(**data))

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["field"] == field
    assert words in error["message"]
    assert count_posts(db) == 0
    assert db.execute(
        "SELECT count(*) FROM social_queue_webhook_events"
    ).fetchone() == (0,)


async def test_deleted_without_a_way_to_find_the_posts_is_422(deliver: Deliver) -> None:
    response = await deliver(event("schedule.deleted", "evt", profileId="p"))

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "data.scheduledAt"


async def test_envelope_without_an_id_is_422(deliver: Deliver) -> None:
    body = posted_event()
    del body["id"]

    response = await deliver(body)

    assert response.status_code == 422
    assert response.json()["error"]["field"] == "id"


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[1, 2]", b"", b'"text"'])
async def test_a_body_that_is_not_a_json_object_is_400(
    deliver: Deliver, body: bytes
) -> None:
    response = await deliver(body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


async def test_a_body_over_the_limit_is_413_without_being_read_whole(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    response = await deliver(posted_event(content={"text": "x" * 70_000}))

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert count_posts(db) == 0


async def test_a_streamed_body_over_the_limit_is_413(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit must hold while reading.
        for _ in range(100):
            yield b"x" * 1024

    response = await client.post(
        "/webhooks/icadence",
        content=chunks(),
        headers={"X-ICadence-Signature": "t=1,v1=00"},
    )

    assert response.status_code == 413
    assert count_posts(db) == 0


async def test_rejections_are_logged_at_warning_without_secret_or_body(
    deliver: Deliver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    await deliver(posted_event(content={"text": "private words"}), secret="wrong")

    [rejection] = [r for r in caplog.records if r.name == "app.web.webhook"]
    assert rejection.levelno == logging.WARNING
    line = rejection.getMessage()
    assert "reason=signature_mismatch" in line
    assert "private words" not in caplog.text
    assert SECRET not in caplog.text
