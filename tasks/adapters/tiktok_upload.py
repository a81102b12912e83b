"""TikTok FILE_UPLOAD: `video/init/`, then the bytes `PUT` to the upload URL.

The worker downloads the video and sends it itself; the `publish_id` is saved
between init and the first byte.
TikTok's chunk rules: every chunk but the last between 5 MB and 64 MB, the
last one absorbing the remainder (up to 128 MB), at most 1,000 chunks, sent in
order with `Content-Range`; each answers 206 until the last, which answers
201 and starts the post.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tasks.adapters.base import Adapter, ErrorKind, HandleStore, Post, PublishError
from tasks.adapters.media import Media, fetch_media
from tasks.adapters.tiktok_status import save_publish

if TYPE_CHECKING:
    from tasks.adapters.tiktok import TikTokAdapter, TikTokSession

MAX_VIDEO_BYTES = 4 * 1024**3
# Chunk rules: at least 5 MB (binary, the stricter reading), at most 64 MB
# (decimal, the stricter reading); the last chunk absorbs the remainder.
MIN_CHUNK = 5 * 1024 * 1024
MAX_CHUNK = 64 * 1000 * 1000
MAX_CHUNKS = 1000


def chunk_plan(size: int, preferred: int) -> tuple[int, int]:
    """`(chunk_size, total_chunk_count)` for a file of `size` bytes.

    Under 5 MB the file is one chunk; otherwise chunks of `preferred` (kept
    within the limits) with the remainder added to the last one, as TikTok
    counts them: ``chunk_plan(11 MiB, 5 MiB) == (5 MiB, 2)``.
    """
    if size < MIN_CHUNK:
        return size, 1
    chunk = min(max(preferred, MIN_CHUNK), MAX_CHUNK, size)
    count = size // chunk
    if count > MAX_CHUNKS:
        chunk = -(-size // MAX_CHUNKS)
        count = size // chunk
    return chunk, count


async def put_chunks(
    adapter: Adapter, upload_url: str, media: Media, chunk: int, count: int
) -> None:
    """PUT the file in order; every chunk but the last answers 206."""
    for index in range(count):
        first = index * chunk
        last = media.size - 1 if index == count - 1 else first + chunk - 1
        final = index == count - 1
        headers = {
            "Content-Type": media.content_type,
            "Content-Range": f"bytes {first}-{last}/{media.size}",
        }
        # The last chunk completes the upload and starts the post.
        response = await adapter.request(
            "PUT",
            upload_url,
            creates=final,
            content=media.read_range(first, last),
            headers=headers,
        )
        expected = (200, 201) if final else (206,)
        if response.status_code not in expected:
            kind = (
                ErrorKind.TRANSIENT
                if response.status_code >= 500 or response.status_code == 429
                else ErrorKind.INVALID
            )
            raise PublishError(
                kind,
                f"TikTok refused video chunk {index + 1}/{count} "
                f"(bytes {first}-{last}) with HTTP {response.status_code}",
                http_status=response.status_code,
                platform_code="invalid_file_upload",
            )


async def upload_video(
    adapter: TikTokAdapter,
    session: TikTokSession,
    post: Post,
    post_info: dict[str, Any],
    handles: HandleStore,
    username: str | None,
) -> dict[str, Any]:
    """Initialise a FILE_UPLOAD, save its `publish_id`, then send the bytes.

    Returns the saved handle. Nothing is posted before the last chunk arrives,
    so a lost answer to init is a plain retry.
    """
    async with fetch_media(
        adapter.client, post.media_urls[0], MAX_VIDEO_BYTES
    ) as media:
        if media.kind != "video":
            raise PublishError(
                ErrorKind.INVALID,
                f"TikTok: {media.url} is {media.content_type}, not a video",
            )
        chunk, count = chunk_plan(media.size, adapter.chunk_size)
        body = {
            "post_info": post_info,
            "source_info": {
                "source": "FILE_UPLOAD",
                "video_size": media.size,
                "chunk_size": chunk,
                "total_chunk_count": count,
            },
        }
        # Nothing is posted before the bytes arrive, so a lost answer to
        # init is a plain retry.
        data = await session.call("/v2/post/publish/video/init/", body)
        upload_url = data.get("upload_url")
        extra = {
            "source": "FILE_UPLOAD",
            "media_type": "VIDEO",
            "video_size": media.size,
            "username": username,
        }
        saved = await save_publish(handles, post, data, extra)
        if not upload_url:
            raise PublishError(
                ErrorKind.TRANSIENT,
                "TikTok initialised a FILE_UPLOAD without an upload_url; retrying",
            )
        await put_chunks(adapter, str(upload_url), media, chunk, count)
    return saved
