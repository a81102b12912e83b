"""TikTok publish status: polling `status/fetch/` for a saved `publish_id`.

A post is processing until TikTok reports `PUBLISH_COMPLETE` (or
`SEND_TO_USER_INBOX`) or `FAILED`. The status also tells whether a post saved
by an earlier attempt may still go out, which is what forbids a second init.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from tasks.adapters.base import ErrorKind, HandleStore, Post, Published, PublishError
from tasks.adapters.tiktok_errors import publish_failed

if TYPE_CHECKING:
    from tasks.adapters.tiktok import TikTokSession

logger = logging.getLogger(__name__)

PUBLISH_HANDLE = "tiktok_publish"
DONE_STATES = ("PUBLISH_COMPLETE", "SEND_TO_USER_INBOX")


async def fetch_status(session: TikTokSession, publish_id: str) -> dict[str, Any]:
    return await session.call(
        "/v2/post/publish/status/fetch/", {"publish_id": publish_id}
    )


async def wait_published(
    session: TikTokSession,
    post: Post,
    saved: dict[str, Any],
    status: dict[str, Any],
    *,
    poll_interval: float,
    poll_timeout: float,
) -> Published:
    """Poll the post's status until TikTok completes or fails it."""
    publish_id = str(saved["publish_id"])
    deadline = time.monotonic() + poll_timeout
    while True:
        state = status.get("status")
        logger.debug("tiktok publish_id=%s status=%s", publish_id, state)
        if state in DONE_STATES:
            published = published_result(saved, status)
            logger.info(
                "event=tiktok.published post=%s publish_id=%s remote_id=%s",
                post.id,
                publish_id,
                published.remote_id,
            )
            return published
        if state == "FAILED":
            raise publish_failed(
                publish_id, str(status.get("fail_reason") or "unknown")
            )
        if time.monotonic() >= deadline:
            raise PublishError(
                ErrorKind.TRANSIENT,
                f"TikTok is still processing publish_id {publish_id} ({state}) "
                f"after {poll_timeout:.0f} s; the next attempt polls it "
                "again instead of posting anew",
            )
        await asyncio.sleep(poll_interval)
        status = await fetch_status(session, publish_id)


def still_counts(status: dict[str, Any], saved: dict[str, Any]) -> bool:
    """Whether a saved post may still go out (so no new init is allowed).

    FAILED never goes out. A FILE_UPLOAD whose bytes never all arrived cannot
    either: TikTok discards it when its upload URL expires.
    """
    state = status.get("status")
    if state == "FAILED":
        return False
    if state == "PROCESSING_UPLOAD" and saved.get("source") == "FILE_UPLOAD":
        uploaded = status.get("uploaded_bytes")
        size = saved.get("video_size")
        if isinstance(uploaded, int) and isinstance(size, int) and uploaded < size:
            return False
    return True


def published_result(saved: dict[str, Any], status: dict[str, Any]) -> Published:
    # The API's own spelling; the list stays empty for private posts and
    # until moderation ends.
    post_ids = status.get("publicaly_available_post_id") or []
    if not post_ids:
        return Published(str(saved["publish_id"]), None)
    post_id = str(post_ids[0])
    username = saved.get("username")
    kind = "photo" if saved.get("media_type") == "PHOTO" else "video"
    url = f"https://www.tiktok.com/@{username}/{kind}/{post_id}" if username else None
    return Published(post_id, url)


async def save_publish(
    handles: HandleStore, post: Post, data: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """Save the `publish_id` TikTok answered to an init, with what `extra` adds."""
    publish_id = data.get("publish_id")
    if not publish_id:
        raise PublishError(
            ErrorKind.UNKNOWN_OUTCOME
            if extra["source"] == "PULL_FROM_URL"
            else ErrorKind.TRANSIENT,
            "TikTok accepted the post without returning a publish_id; "
            "check the account before retrying",
        )
    saved = {"publish_id": str(publish_id), **extra}
    await handles.save(PUBLISH_HANDLE, saved)
    logger.info("event=tiktok.initialised post=%s publish_id=%s", post.id, publish_id)
    return saved
