"""`POST /webhooks/icadence`: iCadence's schedule events become posts.

The contract iCadence is configured from is docs/webhook.md. The order of the
checks is deliberate: the size is bounded before anything is read in full,
the signature is checked before the body is parsed, every field is checked
before the database is touched, and the answer is sent only after commit.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app import queue
from app.exceptions import IllegalTransition, InvalidInput
from app.web import events, signature
from app.web.errors import ApiError, invalid
from app.web.events import Event
from app.web.settings import WebSettings

logger = logging.getLogger(__name__)

SOURCE = "icadence"
POSTED, DELETED, UPDATED = "schedule.posted", "schedule.deleted", "schedule.updated"

Answer = dict[str, Any]
# What an event does to the database, once its fields are known to be good.
Handler = Callable[[AsyncConnection], Awaitable[Answer]]


async def receive(request: Request) -> Response:
    try:
        return await _receive(request)
    except ApiError as error:
        logger.warning(
            "event=webhook.rejected status=%d reason=%s field=%s",
            error.status,
            error.code,
            error.field or "-",
        )
        raise


async def _receive(request: Request) -> Response:
    settings: WebSettings = request.app.state.web_settings
    body = await read_body(request, settings.webhook_max_body_bytes)
    signature.verify(request.headers.get(signature.HEADER), body, settings)
    event = events.parse_event(body)

    if event.type not in HANDLERS:
        # Acknowledged so that iCadence stops retrying; nothing is recorded.
        logger.info("event=webhook.ignored type=%s id=%s", event.type, event.id)
        return JSONResponse({"event": _ref(event), "result": "ignored"})

    apply = HANDLERS[event.type](event)
    digest = hashlib.sha256(body).hexdigest()
    answer: Answer = {}
    async with request.app.state.pool.connection() as conn, conn.transaction():
        earlier = await queue.webhook_receive(
            conn, SOURCE, event.id, event.type, digest
        )
        if earlier is None:
            answer = await apply(conn)
            await queue.webhook_answer(conn, SOURCE, event.id, 200, answer)
    # Committed: only now may iCadence hear that the event is safe.

    if earlier is not None:
        return _replay(event, earlier, digest)
    logger.info(
        "event=webhook.accepted type=%s id=%s result=%s",
        event.type,
        event.id,
        answer["result"],
    )
    return JSONResponse(answer)


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it is known to exceed `limit`."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the body is larger than {limit} bytes")


def _on_posted(event: Event) -> Handler:
    profile_id = events.profile(event)
    platform = events.string_field(event, "platform", required=True)
    scheduled_at = events.timestamp_field(event, "scheduledAt", required=True)
    content = events.content_field(event, required=True)
    assert platform and scheduled_at and content is not None
    schedule_id = events.identifier(event.data, "scheduleId", prefix=event.prefix)
    # One post per schedule and platform: a schedule sent again under a new
    # event id must not be posted twice.
    key = (
        f"{SOURCE}:schedule:{schedule_id}:{platform}"
        if schedule_id
        else f"{SOURCE}:event:{event.id}"
    )

    async def apply(conn: AsyncConnection) -> Answer:
        with _field_of_invalid_input(event), _schedule_conflict(event, schedule_id):
            posted = await queue.enqueue(
                conn,
                profile_id=profile_id,
                platform=platform,
                content=content,
                scheduled_at=scheduled_at,
                idempotency_key=key,
                source=SOURCE,
                source_ref=schedule_id,
                actor=SOURCE,
            )
        return {
            "event": _ref(event),
            "result": "enqueued" if posted.created else "already_enqueued",
            "post": {"id": str(posted.id), "status": posted.status},
        }

    return apply


def _on_deleted(event: Event) -> Handler:
    profile_id, scheduled_at, schedule_id = events.schedule_ref(event, "scheduledAt")

    async def apply(conn: AsyncConnection) -> Answer:
        rows = await queue.cancel_scheduled(
            conn,
            profile_id=profile_id,
            scheduled_at=scheduled_at,
            source_ref=schedule_id,
            actor=SOURCE,
        )
        return _outcome(event, "cancelled", rows)

    return apply


def _on_updated(event: Event) -> Handler:
    profile_id, previous_at, schedule_id = events.schedule_ref(
        event, "previousScheduledAt"
    )
    scheduled_at = events.timestamp_field(event, "scheduledAt", required=False)
    content = events.content_field(event, required=False)
    if scheduled_at is None and content is None:
        raise invalid(
            "schedule.updated needs a new scheduledAt, new content or both",
            event.prefix + "scheduledAt",
        )

    async def apply(conn: AsyncConnection) -> Answer:
        with _field_of_invalid_input(event):
            rows = await queue.reschedule_scheduled(
                conn,
                profile_id=profile_id,
                scheduled_at=previous_at,
                source_ref=schedule_id,
                new_scheduled_at=scheduled_at,
                new_content=content,
                actor=SOURCE,
            )
        return _outcome(event, "rescheduled", rows)

    return apply


HANDLERS = {POSTED: _on_posted, DELETED: _on_deleted, UPDATED: _on_updated}


def _outcome(event: Event, verb: str, rows: list[queue.Row]) -> dict[str, Any]:
    """Which posts changed, and which were left alone (already out) and why."""
    return {
        "event": _ref(event),
        "result": verb if any(r["changed"] for r in rows) else "nothing_to_do",
        verb: [str(r["id"]) for r in rows if r["changed"]],
        "untouched": [
            {"id": str(r["id"]), "status": r["status"], "reason": r["reason"]}
            for r in rows
            if not r["changed"]
        ],
    }


def _replay(event: Event, earlier: queue.Row, digest: str) -> Response:
    if earlier["body_sha256"] != digest:
        raise ApiError(
            409,
            "event_id_reused",
            f"event {event.id} was delivered before with a different body",
            field="id" if event.prefix else "eventId",
        )
    logger.info("event=webhook.replayed type=%s id=%s", event.type, event.id)
    return JSONResponse(
        earlier["response"],
        status_code=earlier["response_status"],
        headers={"Idempotent-Replayed": "true"},
    )


def _ref(event: Event) -> dict[str, str]:
    return {"id": event.id, "type": event.type}


# The first words of the SQL API's SQ422 messages, and the field they are
# about; anything else (media counts, emptiness) is about the content.
SQL_MESSAGE_FIELDS = (
    ("unknown platform", "platform"),
    ("platform", "platform"),
    ("profile_id", "profileId"),
    ("scheduled_at", "scheduledAt"),
    ("content.text", "content.text"),
    ("content.mediaUrls", "content.mediaUrls"),
    ("text is", "content.text"),
)


@contextmanager
def _schedule_conflict(event: Event, schedule_id: str | None) -> Iterator[None]:
    """A schedule already queued with other content or time is a conflict,
    said in iCadence's terms: changes come as schedule.updated."""
    try:
        yield
    except IllegalTransition as error:
        post_id = error.context.get("id", "?")
        raise ApiError(
            409,
            "schedule_conflict",
            f"schedule {schedule_id} is already queued as post {post_id} with "
            "other content, profile or time; send schedule.updated to change it",
            field=event.prefix + "scheduleId",
        ) from error


@contextmanager
def _field_of_invalid_input(event: Event) -> Iterator[None]:
    """Name the field of an SQL SQ422 raised inside, as the sender spelled it."""
    try:
        yield
    except InvalidInput as error:
        message = str(error)
        field = next(
            (name for start, name in SQL_MESSAGE_FIELDS if message.startswith(start)),
            "content",
        )
        error.context.setdefault("field", event.prefix + field)
        raise
