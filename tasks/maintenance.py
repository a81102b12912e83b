"""Periodic upkeep: reap lost leases (reconciling where the platform can
tell), re-defer lost wake-ups, and prune what retention lets go."""

from __future__ import annotations

import asyncio
import logging

from app.exceptions import IllegalTransition
from app.logs import quote
from tasks.adapters.base import Post, Published, PublishError
from tasks.publish import Publisher, post_from_row

logger = logging.getLogger(__name__)


async def reap_and_reconcile(publisher: Publisher) -> int:
    """Fail posts whose lease expired as unknown outcomes, then ask each
    platform that can tell whether the post went out: live means posted,
    certainly absent means retry; anything else waits for an operator."""
    reaped = await publisher.store.reap_expired()
    posts = [post_from_row(row) for row in reaped]
    for post, row in zip(posts, reaped, strict=True):
        logger.error(
            "event=post.failed id=%s platform=%s attempt=%d kind=unknown_outcome "
            "error=%s",
            post.id,
            post.platform,
            post.attempt,
            quote(row["last_error"]),
        )
    # A search that misses a young attempt's post is asked again once the
    # platform's lag has passed; with the default five-minute lease, every
    # reaped attempt is older than that already.
    unsure: list[tuple[Post, float]] = []
    for post in posts:
        adapter = publisher.adapters.get(post.platform)
        if adapter is None:
            continue
        found = await publisher.look_up(adapter, post)
        if found is None and adapter.search_lag > 0:
            age = await publisher.store.attempt_age(post.id, post.attempt)
            if age < adapter.search_lag:
                unsure.append((post, adapter.search_lag - age))
                continue
        await _settle(publisher, post, found)

    if unsure:
        wait = max(seconds for _, seconds in unsure)
        logger.info("event=reaper.wait_for_search_lag seconds=%.1f", wait)
        await asyncio.sleep(wait)
        for post, _ in unsure:
            adapter = publisher.adapters[post.platform]
            await _settle(publisher, post, await publisher.look_up(adapter, post))
    return len(reaped)


async def _settle(
    publisher: Publisher, post: Post, found: Published | PublishError | None
) -> None:
    """Mark a reaped post posted if the platform has it, requeue it if the
    platform certainly does not, and leave it to an operator otherwise."""
    if isinstance(found, PublishError):
        return
    try:
        if found is not None:
            await publisher.store.mark_posted(post.id, found.remote_id, found.url)
            logger.info(
                "event=post.posted id=%s platform=%s remote_id=%s reconciled=true",
                post.id,
                post.platform,
                quote(found.remote_id),
            )
        else:
            row = await publisher.store.requeue_unpublished(post.id, "reconciler")
            logger.info(
                "event=post.requeued id=%s platform=%s status=%s reason=not_published",
                post.id,
                post.platform,
                row["status"] if row else "unknown",
            )
    except IllegalTransition:
        # An operator acted on it meanwhile; their decision stands.
        logger.info("event=post.reconcile_superseded id=%s", post.id)


async def sweep(publisher: Publisher) -> int:
    swept = await publisher.store.sweep()
    if swept:
        logger.warning("event=queue.swept posts=%d reason=lost_wakeup", swept)
    return swept


PRUNE_BATCH = 1000
# One run stops after this many batches (a million posts), so a first run on
# a long-unpruned database ends and the next hour carries on.
PRUNE_MAX_BATCHES = 1000


async def prune(publisher: Publisher, batch: int = PRUNE_BATCH) -> int:
    """Delete finished posts and jobs past retention, one short transaction
    per batch so that no lock is held for long; returns posts deleted."""
    posts = jobs = receipts = 0
    for _ in range(PRUNE_MAX_BATCHES):
        counts = await publisher.store.prune(batch)
        posts += counts["posts"]
        jobs += counts["jobs"]
        receipts += counts["webhook_events"]
        if counts["posts"] < batch and counts["jobs"] < batch:
            break
    if posts or jobs or receipts:
        logger.info(
            "event=queue.pruned posts=%d jobs=%d webhook_events=%d",
            posts,
            jobs,
            receipts,
        )
    return posts
