"""LinkedIn media: images and videos are uploaded before the post that uses them.

An image is initialised (`/rest/images?action=initializeUpload`) and its bytes
`PUT` to the upload URL LinkedIn returns. A video is initialised with its size,
sent in the parts LinkedIn's upload instructions ask for (pre-signed URLs, no
token), finalised with the parts' ETags, and polled until `AVAILABLE`. The
URNs are saved as handles (`linkedin_images`, `linkedin_video`) for reuse by a
later attempt.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tasks.adapters.base import (
    ErrorKind,
    HandleStore,
    Post,
    PublishError,
    RefreshOnce,
    json_object,
)
from tasks.adapters.linkedin_errors import classify, shape_error, value_or_raise
from tasks.adapters.media import Media, content_type_from_url, fetch_media, media_kind

if TYPE_CHECKING:
    from tasks.adapters.linkedin import LinkedInAdapter

logger = logging.getLogger(__name__)

MAX_IMAGES = 20
IMAGE_MAX_BYTES = 5 * 1024 * 1024
VIDEO_MAX_BYTES = 500 * 1024 * 1024


def check_media_mix(kinds: list[str]) -> None:
    """One video alone, or up to `MAX_IMAGES` images."""
    if "video" in kinds and len(kinds) > 1:
        raise PublishError(
            ErrorKind.INVALID, "LinkedIn posts take one video alone, or images"
        )
    if len(kinds) > MAX_IMAGES:
        raise PublishError(
            ErrorKind.INVALID,
            f"LinkedIn allows at most {MAX_IMAGES} images, got {len(kinds)}",
        )


async def upload_media(
    adapter: LinkedInAdapter,
    post: Post,
    author: str,
    attempt: RefreshOnce,
    handles: HandleStore,
) -> dict[str, Any] | None:
    """Upload the post's media; returns the post's `content` field."""
    if not post.media_urls:
        return None

    kinds = [media_kind(content_type_from_url(u) or "") for u in post.media_urls]
    if kinds == ["video"]:
        urn = await _video(adapter, post, author, attempt, handles)
        return {"media": {"id": urn, "title": post.options.get("title", "")}}

    saved: dict[str, str] = dict(post.handles.get("linkedin_images") or {})
    for url in post.media_urls:
        if url not in saved:
            async with fetch_media(adapter.client, url, IMAGE_MAX_BYTES) as media:
                saved[url] = await _image(adapter, media, author, attempt)
            await handles.save("linkedin_images", saved)
    urns = [saved[url] for url in post.media_urls]
    if len(urns) == 1:
        return {"media": {"id": urns[0]}}
    return {"multiImage": {"images": [{"id": urn} for urn in urns]}}


async def _image(
    adapter: LinkedInAdapter, media: Media, author: str, attempt: RefreshOnce
) -> str:
    if media.kind not in ("image", "gif"):
        raise PublishError(
            ErrorKind.INVALID,
            f"LinkedIn cannot post {media.url} as an image: it is {media.content_type}",
        )
    response = await adapter.call(
        attempt,
        "POST",
        "/rest/images?action=initializeUpload",
        json={"initializeUploadRequest": {"owner": author}},
    )
    value = value_or_raise(response, "start an image upload", adapter.version)
    upload_url, urn = value.get("uploadUrl"), value.get("image")
    if not isinstance(upload_url, str) or not isinstance(urn, str):
        raise shape_error(response, "start an image upload")

    response = await adapter.call(attempt, "PUT", upload_url, content=media.file.read())
    if response.is_error:
        raise classify(response, f"upload the image {media.url}", adapter.version)
    return urn


async def _video(
    adapter: LinkedInAdapter,
    post: Post,
    author: str,
    attempt: RefreshOnce,
    handles: HandleStore,
) -> str:
    """Upload (or resume) the post's video; returns its URN once AVAILABLE."""
    url = post.media_urls[0]
    saved = post.handles.get("linkedin_video") or {}
    if saved.get("url") == url and saved.get("state") == "finalized":
        urn = str(saved["urn"])
    else:
        async with fetch_media(adapter.client, url, VIDEO_MAX_BYTES) as media:
            urn = await _upload_video(adapter, media, author, attempt)
        await handles.save(
            "linkedin_video", {"url": url, "urn": urn, "state": "finalized"}
        )
    await _wait_available(adapter, urn, attempt)
    return urn


async def _upload_video(
    adapter: LinkedInAdapter, media: Media, author: str, attempt: RefreshOnce
) -> str:
    response = await adapter.call(
        attempt,
        "POST",
        "/rest/videos?action=initializeUpload",
        json={
            "initializeUploadRequest": {
                "owner": author,
                "fileSizeBytes": media.size,
                "uploadCaptions": False,
                "uploadThumbnail": False,
            }
        },
    )
    value = value_or_raise(response, "start a video upload", adapter.version)
    urn = value.get("video")
    instructions = value.get("uploadInstructions")
    if not isinstance(urn, str) or not isinstance(instructions, list):
        raise shape_error(response, "start a video upload")

    etags = []
    for part in instructions:
        chunk = media.read_range(int(part["firstByte"]), int(part["lastByte"]))
        # Upload URLs are pre-signed: no token goes with them.
        response = await adapter.call(
            attempt,
            "PUT",
            part["uploadUrl"],
            authorise=False,
            content=chunk,
            headers={"Content-Type": "application/octet-stream"},
        )
        if response.is_error or "etag" not in response.headers:
            raise classify(response, f"upload part of {media.url}", adapter.version)
        etags.append(response.headers["etag"])

    response = await adapter.call(
        attempt,
        "POST",
        "/rest/videos?action=finalizeUpload",
        json={
            "finalizeUploadRequest": {
                "video": urn,
                "uploadToken": value.get("uploadToken", ""),
                "uploadedPartIds": etags,
            }
        },
    )
    if response.is_error:
        raise classify(response, "finalize the video upload", adapter.version)
    return urn


async def _wait_available(
    adapter: LinkedInAdapter, urn: str, attempt: RefreshOnce
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + adapter.max_processing_secs
    while True:
        response = await adapter.call(attempt, "GET", f"/rest/videos/{quote(urn, '')}")
        if response.is_error:
            raise classify(response, "check the video's processing", adapter.version)
        status = json_object(response).get("status")
        logger.debug("event=linkedin.video_status video=%s status=%s", urn, status)
        if status == "AVAILABLE":
            return
        if status == "PROCESSING_FAILED":
            reason = json_object(response).get("processingFailureReason", "no reason")
            raise PublishError(
                ErrorKind.INVALID, f"LinkedIn could not process {urn}: {reason}"
            )
        if loop.time() + adapter.poll_interval > deadline:
            raise PublishError(
                ErrorKind.TRANSIENT,
                f"LinkedIn was still processing {urn} after "
                f"{adapter.max_processing_secs:.0f} s",
            )
        await asyncio.sleep(adapter.poll_interval)
