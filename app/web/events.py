"""iCadence's events as they arrive: the two body shapes and their fields.

Everything here is checked before the database is touched, and each error
names the field as the sender spelled it (`data.scheduledAt`, `content.text`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.web.errors import ApiError, invalid

MAX_ID_LENGTH = 200


@dataclass(frozen=True)
class Event:
    """One delivery, whichever shape it came in.

    `prefix` is where `data` sits in the body ("data." in the envelope, ""
    in the flat shape), so that error fields name what the sender wrote.
    """

    id: str
    type: str
    data: dict[str, Any]
    prefix: str


def parse_event(body: bytes) -> Event:
    """The envelope `{"id", "type", "createdAt", "data": {…}}`, or the flat
    shape `{"type", "profileId", …, "eventId"?}` of the original integration.

    An event without an id (flat shape only) is known by its body's hash.
    """
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "the body is not JSON") from None
    if not isinstance(document, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")

    event_type = document.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise invalid("type is required: a string such as schedule.posted", "type")

    if "data" in document:
        data = document["data"]
        if not isinstance(data, dict):
            raise invalid("data must be an object", "data")
        event_id = identifier(document, "id", required=True)
        prefix = "data."
    else:
        data = {k: v for k, v in document.items() if k not in ("type", "eventId")}
        event_id = identifier(document, "eventId", required=False)
        prefix = ""
    if event_id is None:
        event_id = "sha256:" + hashlib.sha256(body).hexdigest()
    return Event(event_id, event_type, data, prefix)


def schedule_ref(
    event: Event, at_field: str
) -> tuple[str | None, datetime | None, str | None]:
    """How a deleted or updated event names its posts: a schedule id, or a
    profile and the time it was scheduled at."""
    schedule_id = identifier(event.data, "scheduleId", prefix=event.prefix)
    profile_id = string_field(event, "profileId", required=False)
    scheduled_at = timestamp_field(event, at_field, required=False)
    if schedule_id is None and (profile_id is None or scheduled_at is None):
        missing = "profileId" if profile_id is None else at_field
        raise invalid(
            f"{event.type} needs scheduleId, or profileId and {at_field}",
            event.prefix + missing,
        )
    return profile_id, scheduled_at, schedule_id


def profile(event: Event) -> str:
    profile_id = string_field(event, "profileId", required=True)
    assert profile_id is not None
    if len(profile_id) > MAX_ID_LENGTH:
        raise invalid(
            f"profileId is longer than {MAX_ID_LENGTH} characters",
            event.prefix + "profileId",
        )
    return profile_id


def string_field(event: Event, name: str, *, required: bool) -> str | None:
    value = event.data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{name} must be a non-empty string", event.prefix + name)
    return value


def identifier(
    document: dict[str, Any], name: str, *, required: bool = False, prefix: str = ""
) -> str | None:
    value = document.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise invalid(
            f"{name} must be a string of 1 to {MAX_ID_LENGTH} characters",
            prefix + name,
        )
    return value


def timestamp_field(event: Event, name: str, *, required: bool) -> datetime | None:
    value = event.data.get(name)
    if value is None and not required:
        return None
    field = event.prefix + name
    if not isinstance(value, str):
        raise invalid(f"{name} must be an ISO-8601 string with an offset", field)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(
            f"{name} is not ISO-8601: {value[:40]!r} "
            "(expected e.g. 2025-06-01T09:30:00Z)",
            field,
        ) from None
    if parsed.tzinfo is None or "T" not in value:
        raise invalid(
            f"{name} needs a date, a time and an offset (Z or ±hh:mm): {value[:40]!r}",
            field,
        )
    return parsed


def content_field(event: Event, *, required: bool) -> dict[str, Any] | None:
    """`content {text, mediaUrls, options}`; a top-level `options` object
    (per-platform settings such as a YouTube title) joins content.options."""
    content = event.data.get("content")
    options = event.data.get("options")
    field = event.prefix + "content"
    if content is None and not required:
        if options is not None:
            raise invalid(
                "options may only come with content", event.prefix + "options"
            )
        return None
    if not isinstance(content, dict):
        raise invalid("content must be an object with text and/or mediaUrls", field)
    if "text" in content and not isinstance(content["text"], str | None):
        raise invalid("content.text must be a string", field + ".text")
    media = content.get("mediaUrls")
    if media is not None and not (
        isinstance(media, list) and all(isinstance(u, str) for u in media)
    ):
        raise invalid(
            "content.mediaUrls must be an array of URLs", field + ".mediaUrls"
        )
    if not isinstance(content.get("options"), dict | None):
        raise invalid("content.options must be an object", field + ".options")
    if options is not None:
        if not isinstance(options, dict):
            raise invalid("options must be an object", event.prefix + "options")
        merged = content.get("options")
        content = {**content, "options": {**(merged or {}), **options}}
    return content
