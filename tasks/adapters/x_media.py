"""X media uploads: one request for an image, the chunked flow for GIFs and video.

The chunked flow is initialize, append each segment, finalize, then poll the
processing status until X says the media is ready. Each uploaded media id is
saved in the `x_media` handle (keyed by media URL, with its kind, processing
state and expiry) as soon as it exists, so a later attempt reuses it while X
still holds it, or resumes polling instead of uploading again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tasks.adapters.base import (
    ErrorKind,
    HandleStore,
    Post,
    PublishError,
    RefreshOnce,
    parse_time,
)
from tasks.adapters.media import Media, fetch_media
from tasks.adapters.x_errors import classify, data_or_raise

if TYPE_CHECKING:
    from tasks.adapters.x import XAdapter

logger = logging.getLogger(__name__)

MEDIA_HANDLE = "x_media"
MAX_BYTES = {"image": 5 * 1024 * 1024, "gif": 15 * 1024 * 1024}
VIDEO_MAX_BYTES = 512 * 1024 * 1024
MEDIA_CATEGORY = {"image": "tweet_image", "gif": "tweet_gif", "video": "tweet_video"}
# X accepts append segments of up to 5 MB; 4 MiB keeps a margin and keeps a
# 512 MB video well under the 1,000-segment limit.
CHUNK_BYTES = 4 * 1024 * 1024
# Reuse an uploaded media id only if X keeps it at least this much longer.
REUSE_MARGIN = timedelta(minutes=10)


def check_media_mix(kinds: list[str]) -> None:
    """Up to 4 images, or exactly one GIF or one video."""
    if len(kinds) > 4:
        raise PublishError(
            ErrorKind.INVALID, f"X allows at most 4 media per post, got {len(kinds)}"
        )
    if len(kinds) > 1 and any(kind in ("gif", "video") for kind in kinds):
        raise PublishError(
            ErrorKind.INVALID,
            "X allows one GIF or one video per post, alone; got " + ", ".join(kinds),
        )


def saved_media_ids(post: Post) -> set[str]:
    """The media ids earlier attempts of `post` uploaded."""
    return {
        entry["id"]
        for entry in (post.handles.get(MEDIA_HANDLE) or {}).values()
        if isinstance(entry, dict) and entry.get("id")
    }


async def upload_all(
    adapter: XAdapter, post: Post, attempt: RefreshOnce, handles: HandleStore
) -> list[str]:
    """Upload each media URL (reusing earlier uploads); returns the media ids."""
    saved: dict[str, Any] = dict(post.handles.get(MEDIA_HANDLE) or {})
    now = datetime.now(UTC)
    kinds: list[str] = []
    media_ids: list[str] = []

    for url in post.media_urls:
        entry = saved.get(url)
        if not (isinstance(entry, dict) and _reusable(entry, now)):
            async with fetch_media(adapter.client, url, VIDEO_MAX_BYTES) as media:
                entry = await _upload(adapter, media, attempt, handles, saved)
        if entry["state"] != "succeeded":
            entry = await _wait_processing(adapter, url, attempt, handles, saved)
        kinds.append(entry["kind"])
        check_media_mix(kinds)
        media_ids.append(entry["id"])

    return media_ids


async def _upload(
    adapter: XAdapter,
    media: Media,
    attempt: RefreshOnce,
    handles: HandleStore,
    saved: dict[str, Any],
) -> dict[str, Any]:
    kind = media.kind
    limit = MAX_BYTES.get(kind, VIDEO_MAX_BYTES)
    if kind == "other":
        raise PublishError(
            ErrorKind.INVALID,
            f"X cannot attach {media.url}: {media.content_type} is not an "
            "image, GIF or video",
        )
    if media.size > limit:
        raise PublishError(
            ErrorKind.INVALID,
            f"X rejected the media {media.url}: {media.size} bytes, the limit "
            f"for a {kind} is {limit}",
        )

    if kind == "image":
        response = await adapter.call(
            attempt,
            "POST",
            "/2/media/upload",
            files={"media": (media.filename, media.file.read(), media.content_type)},
            data={"media_category": MEDIA_CATEGORY[kind]},
        )
        data = data_or_raise(response, "upload an image")
    else:
        data = await _upload_chunked(adapter, media, kind, attempt, handles, saved)

    processing = data.get("processing_info") or {}
    entry = {
        "id": data["id"],
        "kind": kind,
        "state": processing.get("state", "succeeded"),
        "expires_at": _expiry(data),
    }
    saved[media.url] = entry
    await handles.save(MEDIA_HANDLE, saved)
    return entry


async def _upload_chunked(
    adapter: XAdapter,
    media: Media,
    kind: str,
    attempt: RefreshOnce,
    handles: HandleStore,
    saved: dict[str, Any],
) -> dict[str, Any]:
    response = await adapter.call(
        attempt,
        "POST",
        "/2/media/upload/initialize",
        json={
            "media_type": media.content_type,
            "total_bytes": media.size,
            "media_category": MEDIA_CATEGORY[kind],
        },
    )
    media_id = data_or_raise(response, "start a media upload")["id"]
    saved[media.url] = {"id": media_id, "kind": kind, "state": "uploading"}
    await handles.save(MEDIA_HANDLE, saved)

    for index, chunk in enumerate(media.chunks(adapter.chunk_bytes)):
        response = await adapter.call(
            attempt,
            "POST",
            f"/2/media/upload/{media_id}/append",
            files={"media": (media.filename, chunk, "application/octet-stream")},
            data={"segment_index": str(index)},
        )
        if response.is_error:
            raise classify(response, f"upload segment {index} of {media.url}")

    response = await adapter.call(
        attempt, "POST", f"/2/media/upload/{media_id}/finalize"
    )
    data = data_or_raise(response, "finalize a media upload")
    return {**data, "id": data.get("id", media_id)}


async def _wait_processing(
    adapter: XAdapter,
    url: str,
    attempt: RefreshOnce,
    handles: HandleStore,
    saved: dict[str, Any],
) -> dict[str, Any]:
    """Poll STATUS every `check_after_secs` until the media of `url` is ready."""
    entry = saved[url]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + adapter.max_processing_secs
    while True:
        response = await adapter.call(
            attempt,
            "GET",
            "/2/media/upload",
            params={"command": "STATUS", "media_id": entry["id"]},
        )
        info = data_or_raise(response, "check media processing").get(
            "processing_info", {}
        )
        state = info.get("state", "succeeded")
        logger.debug("event=x.media_status media=%s state=%s", entry["id"], state)

        if state == "succeeded":
            entry = {**entry, "state": "succeeded"}
            saved[url] = entry
            await handles.save(MEDIA_HANDLE, saved)
            return entry
        if state == "failed":
            reason = (info.get("error") or {}).get("message", "no reason given")
            raise PublishError(
                ErrorKind.INVALID,
                f"X could not process media {entry['id']}: {reason}",
            )

        wait = float(info.get("check_after_secs", 1))
        if loop.time() + wait > deadline:
            # The id is saved as still processing: the next attempt resumes
            # polling instead of uploading again.
            raise PublishError(
                ErrorKind.TRANSIENT,
                f"X was still processing media {entry['id']} after "
                f"{adapter.max_processing_secs:.0f} s",
            )
        await asyncio.sleep(wait)


def _reusable(entry: dict[str, Any], now: datetime) -> bool:
    expires_at = parse_time(entry.get("expires_at"))
    return (
        bool(entry.get("id"))
        and entry.get("state") in ("succeeded", "pending", "in_progress")
        and expires_at is not None
        and expires_at - REUSE_MARGIN > now
    )


def _expiry(data: dict[str, Any]) -> str | None:
    secs = data.get("expires_after_secs")
    if not isinstance(secs, int):
        return None
    return (datetime.now(UTC) + timedelta(seconds=secs)).isoformat()
