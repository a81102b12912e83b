"""Downloading a post's media for platforms that want the bytes, not a URL.

`fetch_media` streams one media URL into a `SpooledTemporaryFile`, so a large
video spills to disk instead of being held in memory, and tells what it is
from the `Content-Type` header, the file's magic bytes, or the URL's
extension, in that order of trust.
"""

from __future__ import annotations

import logging
import mimetypes
import posixpath
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import IO

import httpx

from tasks.adapters.base import ErrorKind, PublishError

logger = logging.getLogger(__name__)

# Up to this size a download stays in memory; above it, it spills to disk.
SPOOL_MAX_BYTES = 8 * 1024 * 1024

# Content types that say nothing about the media itself.
_VAGUE_TYPES = {"", "application/octet-stream", "binary/octet-stream"}


def sniff_content_type(head: bytes) -> str | None:
    """The media type that a file's first bytes announce, if recognised.

    >>> sniff_content_type(b"GIF89a...")
    'image/gif'
    """
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        # QuickTime brands its files "qt  "; every other ISO-BMFF brand plays
        # as MP4 on the platforms we publish to.
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


def content_type_from_url(url: str) -> str | None:
    """The media type a URL's file extension suggests, if any."""
    path = httpx.URL(url).path
    guessed, _ = mimetypes.guess_type(path)
    return guessed


def media_kind(content_type: str) -> str:
    """`"image"`, `"gif"` or `"video"`: how platforms group media types.

    Platforms treat an animated GIF apart from still images (X: one GIF, no
    other media), so it is its own kind. Anything else is `"other"`.
    """
    if content_type == "image/gif":
        return "gif"
    if content_type.startswith("image/"):
        return "image"
    if content_type.startswith("video/"):
        return "video"
    return "other"


@dataclass
class Media:
    """One downloaded media file, readable from `file` (positioned at 0)."""

    url: str
    content_type: str
    size: int
    file: IO[bytes]
    filename: str

    @property
    def kind(self) -> str:
        return media_kind(self.content_type)

    def chunks(self, chunk_size: int) -> Iterator[bytes]:
        """The file's bytes in pieces of `chunk_size` (the last may be shorter)."""
        self.file.seek(0)
        while chunk := self.file.read(chunk_size):
            yield chunk

    def read_range(self, first: int, last: int) -> bytes:
        """Bytes `first` to `last`, both inclusive (HTTP `Range` convention)."""
        self.file.seek(first)
        return self.file.read(last - first + 1)


@asynccontextmanager
async def fetch_media(
    client: httpx.AsyncClient, url: str, max_bytes: int
) -> AsyncIterator[Media]:
    """Download `url` into a temporary file; the file is deleted on exit.

    Raises `PublishError`: TRANSIENT when the media host fails or cannot be
    reached (it may recover), INVALID when the URL answers 4xx, the file is
    larger than `max_bytes`, or its type cannot be told.
    """
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES) as spool:
        declared, size = await _download(client, url, max_bytes, spool)
        spool.seek(0)
        head = spool.read(16)
        spool.seek(0)

        content_type = (
            (declared if declared not in _VAGUE_TYPES else None)
            or sniff_content_type(head)
            or content_type_from_url(url)
        )
        if content_type is None:
            raise PublishError(
                ErrorKind.INVALID,
                f"cannot tell what kind of media {url} is: no Content-Type, "
                "no known file signature, no known extension",
            )

        filename = posixpath.basename(httpx.URL(url).path) or "media"
        logger.debug("fetched media url=%s type=%s size=%d", url, content_type, size)
        yield Media(url, content_type, size, spool, filename)


async def _download(
    client: httpx.AsyncClient, url: str, max_bytes: int, spool: IO[bytes]
) -> tuple[str, int]:
    """Stream `url` into `spool`; returns the declared content type and size."""
    try:
        async with client.stream("GET", url, follow_redirects=True) as response:
            if response.status_code >= 500:
                raise PublishError(
                    ErrorKind.TRANSIENT,
                    f"media host answered {response.status_code} for {url}",
                    http_status=response.status_code,
                )
            if response.status_code >= 400:
                raise PublishError(
                    ErrorKind.INVALID,
                    f"media {url} cannot be downloaded: the host answered "
                    f"{response.status_code}; fix the media URL",
                    http_status=response.status_code,
                )

            declared = response.headers.get("content-type", "")
            declared = declared.split(";")[0].strip().lower()
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise PublishError(
                        ErrorKind.INVALID,
                        f"media {url} is larger than the platform's limit of "
                        f"{max_bytes} bytes",
                    )
                spool.write(chunk)
    except httpx.TransportError as exc:
        raise PublishError(
            ErrorKind.TRANSIENT, f"could not download media {url}: {exc!r}"
        ) from exc

    return declared, size
