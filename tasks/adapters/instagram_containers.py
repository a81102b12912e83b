"""Instagram media containers: created, polled until FINISHED, or found gone.

A container is Meta's staging object for a post: `POST /{ig-user-id}/media`
creates one per image or reel (a carousel is one per item plus a parent), Meta
fetches and processes the media while its `status_code` reads `IN_PROGRESS`,
and it becomes `FINISHED`, `ERROR` (with a 2207xxx subcode in `status`),
`EXPIRED` after 24 h unused, or `PUBLISHED` once `media_publish` made it live.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

from tasks.adapters import graph
from tasks.adapters.base import ErrorKind, Post, PublishError
from tasks.adapters.instagram_errors import RECREATE_SUBCODES, TRANSIENT_SUBCODES
from tasks.adapters.media import content_type_from_url, media_kind

logger = logging.getLogger(__name__)

# The subcode Meta appends to an ERROR container's `status` text.
STATUS_SUBCODE = re.compile(r"\b(2207\d{3})\b")


class ContainerGone(Exception):
    """The container expired or must be rebuilt; a new one fixes it."""


class AlreadyPublished(Exception):
    """The container is already live; look the media up instead of publishing."""


async def create_container(
    session: graph.GraphSession,
    account: str,
    post: Post,
    *,
    poll_interval: float,
    poll_timeout: float,
) -> str:
    """Create the post's container (children first for a carousel)."""
    if len(post.media_urls) == 1:
        fields = item_fields(post.media_urls[0], carousel_item=False)
        if "image_url" in fields and post.options.get("alt_text"):
            fields["alt_text"] = str(post.options["alt_text"])
        return await _new_container(session, account, fields, post.text)

    children = []
    for url in post.media_urls:
        fields = item_fields(url, carousel_item=True)
        children.append(await _new_container(session, account, fields, None))
    for child in children:
        await wait_finished(
            session, child, poll_interval=poll_interval, poll_timeout=poll_timeout
        )
    fields = {"media_type": "CAROUSEL", "children": ",".join(children)}
    return await _new_container(session, account, fields, post.text)


async def _new_container(
    session: graph.GraphSession,
    account: str,
    fields: dict[str, str],
    caption: str | None,
) -> str:
    if caption:
        fields = {**fields, "caption": caption}
    # Not `creates`: a container is invisible until media_publish and
    # expires unused after 24 h, so a lost answer costs nothing but quota.
    body = await session.call("POST", f"{account}/media", data=fields)
    container_id = body.get("id")
    if not container_id:
        raise PublishError(
            ErrorKind.TRANSIENT,
            "Instagram accepted a container but returned no id; "
            "nothing was published, retrying",
        )
    logger.debug("instagram container created id=%s", container_id)
    return str(container_id)


async def read_status(session: graph.GraphSession, container_id: str) -> str:
    """The container's `status_code`; `GONE` if Graph no longer knows it."""
    try:
        body = await session.call(
            "GET", container_id, params={"fields": "status_code,status"}
        )
    except graph.GraphFailure as exc:
        # Code 100 ("object does not exist") or 24: the container is gone,
        # and a published container stays readable, so it never went out.
        if exc.graph.code in (100, 24) or exc.graph.subcode == 2207008:
            return "GONE"
        raise
    return str(body.get("status_code") or "UNKNOWN")


async def wait_finished(
    session: graph.GraphSession,
    container_id: str,
    *,
    poll_interval: float,
    poll_timeout: float,
) -> None:
    """Poll until the container is FINISHED; raise on ERROR, EXPIRED or timeout."""
    deadline = time.monotonic() + poll_timeout
    while True:
        body = await session.call(
            "GET", container_id, params={"fields": "status_code,status"}
        )
        status_code = str(body.get("status_code") or "")
        logger.debug("instagram container=%s status=%s", container_id, status_code)
        if status_code == "FINISHED":
            return
        if status_code == "PUBLISHED":
            raise AlreadyPublished
        if status_code == "EXPIRED":
            raise ContainerGone
        if status_code == "ERROR":
            raise_container_error(container_id, str(body.get("status") or ""))
        if status_code not in ("IN_PROGRESS", ""):
            raise PublishError(
                ErrorKind.TRANSIENT,
                f"Instagram container {container_id} reports an unknown "
                f"status_code {status_code!r}; retrying",
            )
        if time.monotonic() >= deadline:
            raise PublishError(
                ErrorKind.TRANSIENT,
                f"Instagram is still processing container {container_id} "
                f"after {poll_timeout:.0f} s; the next attempt keeps "
                "polling the same container",
            )
        await asyncio.sleep(poll_interval)


def item_fields(url: str, *, carousel_item: bool) -> dict[str, str]:
    """Container fields for one media URL, by the kind its extension suggests."""
    content_type = content_type_from_url(url) or ""
    is_video = media_kind(content_type) == "video"
    if carousel_item:
        fields = {"is_carousel_item": "true"}
        if is_video:
            fields.update(media_type="VIDEO", video_url=url)
        else:
            fields["image_url"] = url
        return fields
    # Feed videos are published as reels since July 2023.
    return {"media_type": "REELS", "video_url": url} if is_video else {"image_url": url}


def raise_container_error(container_id: str, status: str) -> None:
    """Raise what an ERROR container's `status` text means (its 2207xxx subcode)."""
    match = STATUS_SUBCODE.search(status)
    subcode = int(match.group(1)) if match else None
    if subcode in RECREATE_SUBCODES:
        raise ContainerGone
    kind = ErrorKind.TRANSIENT if subcode in TRANSIENT_SUBCODES else ErrorKind.INVALID
    raise PublishError(
        kind,
        f"Instagram could not process container {container_id}: "
        f"{status[:300] or 'no reason given'}",
        platform_code=str(subcode) if subcode else "container_error",
    )
