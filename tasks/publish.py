"""One publish attempt: claim the post, call its adapter, report the outcome.

The attempt never decides a post's status itself; it reports through the SQL
API, which applies the state machine. What it does decide is how to classify
what happened, and the rule is the product's first promise: retry only when
the post certainly did not go out. An answer that may have published is
reconciled with the platform first, and left for an operator when the
platform cannot tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from app.exceptions import IllegalTransition
from app.logs import quote
from tasks.accounts import Accounts
from tasks.adapters.base import (
    Adapter,
    ErrorKind,
    Post,
    Published,
    PublishError,
    tracking_creates,
)
from tasks.store import Row, Store

logger = logging.getLogger(__name__)


@dataclass
class _Handles:
    """Saves the attempt's intermediate handles before the adapter goes on."""

    store: Store
    post_id: UUID
    attempt: int

    async def save(self, name: str, value: Any) -> None:
        await self.store.save_handle(self.post_id, self.attempt, name, value)


def post_from_row(row: Row) -> Post:
    content = row["content"]
    return Post(
        id=row["id"],
        profile_id=row["profile_id"],
        platform=row["platform"],
        text=content.get("text") or "",
        media_urls=tuple(content.get("mediaUrls") or ()),
        options=content.get("options") or {},
        attempt=row["attempts"],
        handles=row["handles"] or {},
    )


class Publisher:
    """Publishes claimed posts through the platform adapters."""

    def __init__(
        self, store: Store, accounts: Accounts, adapters: Mapping[str, Adapter]
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.adapters = adapters

    async def publish(self, post_id: UUID) -> str:
        """Run one attempt for the post; returns what became of it."""
        row = await self.store.claim(post_id)
        if row is None:
            logger.debug("event=post.not_claimed id=%s", post_id)
            return "not_claimed"

        attempt = row["attempts"]
        started = time.monotonic()
        logger.info(
            "event=post.posting id=%s platform=%s attempt=%d worker=%s",
            post_id,
            row["platform"],
            attempt,
            row["claimed_by"],
        )
        # Both timestamps come from the claim's transaction: their difference
        # is the lease the database granted, whatever our clock says.
        lease = (row["lease_expires_at"] - row["updated_at"]).total_seconds()
        # Reports are retried through a database outage until shortly before
        # the lease would expire; after that the reaper owns the post.
        deadline = started + lease - 5
        keeper = asyncio.create_task(self._keep_lease(post_id, attempt, lease))
        try:
            result = await self._attempt(row, started)
        except asyncio.CancelledError:
            # Shutdown outlasted the grace period mid-call: whether the
            # platform published is unknown, so say so instead of re-queuing.
            await asyncio.shield(
                self._report(
                    row,
                    PublishError(
                        ErrorKind.UNKNOWN_OUTCOME,
                        "the worker stopped during the platform call; check the "
                        "account before retrying",
                    ),
                    started,
                    deadline,
                )
            )
            raise
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        return await self._report(row, result, started, deadline)

    async def _attempt(self, row: Row, started: float) -> Published | PublishError:
        post = post_from_row(row)
        adapter = self.adapters.get(post.platform)
        if adapter is None:
            return PublishError(
                ErrorKind.CONFIG, f"no adapter for platform {post.platform!r}"
            )

        with tracking_creates() as sent:
            try:
                adapter.validate(post)
                credentials = await self.accounts.credentials(
                    post.profile_id, post.platform, adapter
                )
                return await adapter.publish(
                    post, credentials, _Handles(self.store, post.id, post.attempt)
                )
            except PublishError as error:
                if error.kind is not ErrorKind.UNKNOWN_OUTCOME:
                    return error
                return await self._reconcile(adapter, post, error, started)
            except Exception as error:
                logger.exception(
                    "event=adapter.crashed id=%s platform=%s sent=%s",
                    post.id,
                    post.platform,
                    quote(", ".join(sent)),
                )
                return _crash(post.platform, error, sent)

    async def _reconcile(
        self, adapter: Adapter, post: Post, error: PublishError, started: float
    ) -> Published | PublishError:
        """Ask the platform whether an attempt with an unknown outcome went out.

        A search that does not find the post yet is asked again once the
        platform's lag since the attempt `started` (monotonic) has passed:
        only then does "not there" mean "not published".
        """
        fresh = await self.store.post(post.id)
        if fresh is not None:
            post = post_from_row(fresh)
        found = await self.look_up(adapter, post)
        wait = started + adapter.search_lag - time.monotonic()
        if found is None and wait > 0:
            logger.info(
                "event=post.reconcile_wait id=%s platform=%s seconds=%.1f",
                post.id,
                post.platform,
                wait,
            )
            await asyncio.sleep(wait)
            found = await self.look_up(adapter, post)
        if isinstance(found, PublishError):
            return error

        if found is None:
            return PublishError(
                ErrorKind.TRANSIENT,
                f"{error.message}; the platform confirms it was not published",
                http_status=error.http_status,
            )
        logger.info(
            "event=post.reconciled id=%s remote_id=%s", post.id, found.remote_id
        )
        return found

    async def look_up(
        self, adapter: Adapter, post: Post
    ) -> Published | PublishError | None:
        """The adapter's `reconcile`: the live post, None if it certainly is not
        live, or the reason the platform could not tell."""
        try:
            credentials = await self.accounts.credentials(
                post.profile_id, post.platform, adapter
            )
            return await adapter.reconcile(post, credentials)
        except PublishError as lookup:
            logger.info(
                "event=post.reconcile_inconclusive id=%s platform=%s reason=%s",
                post.id,
                post.platform,
                quote(lookup.message),
            )
            return lookup
        except Exception:
            logger.exception("event=post.reconcile_crashed id=%s", post.id)
            return PublishError(
                ErrorKind.UNKNOWN_OUTCOME, "the lookup failed unexpectedly"
            )

    async def _report(
        self,
        row: Row,
        result: Published | PublishError,
        started: float,
        deadline: float,
    ) -> str:
        post_id, attempt, platform = row["id"], row["attempts"], row["platform"]
        ms = (time.monotonic() - started) * 1000

        if isinstance(result, Published):
            try:
                await self.store.complete(
                    post_id, attempt, result.remote_id, result.url, deadline
                )
            except IllegalTransition:
                # The lease was reaped while we were out of touch; the post
                # is live, which is what the record must say.
                try:
                    await self.store.mark_posted(post_id, result.remote_id, result.url)
                except IllegalTransition:
                    # Settled meanwhile (reconciled, or an operator acted): if
                    # they retried it, the platform may now show it twice.
                    logger.error(
                        "event=post.published_late id=%s platform=%s attempt=%d "
                        "remote_id=%s detail=%s",
                        post_id,
                        platform,
                        attempt,
                        quote(result.remote_id),
                        quote("published after its record was settled; check"),
                    )
                    return "late"
            logger.info(
                "event=post.posted id=%s platform=%s attempt=%d remote_id=%s ms=%d",
                post_id,
                platform,
                attempt,
                quote(result.remote_id),
                ms,
            )
            return "posted"

        try:
            after = await self.store.fail(
                post_id,
                attempt,
                result.kind.value,
                result.message,
                result.http_status,
                result.retry_at,
                deadline,
            )
        except IllegalTransition:
            logger.warning(
                "event=post.report_late id=%s attempt=%d kind=%s",
                post_id,
                attempt,
                result.kind.value,
            )
            return "late"
        status = after["status"] if after else "failed"
        level = logging.WARNING if status == "retrying" else logging.ERROR
        logger.log(
            level,
            "event=post.%s id=%s platform=%s attempt=%d kind=%s http_status=%s "
            "next_attempt_at=%s ms=%d error=%s",
            status,
            post_id,
            platform,
            attempt,
            result.kind.value,
            result.http_status,
            after["next_attempt_at"].isoformat()
            if after and after["next_attempt_at"]
            else "",
            ms,
            quote(result.message),
        )
        return status

    async def _keep_lease(self, post_id: UUID, attempt: int, lease: float) -> None:
        """Extend the lease while the attempt runs (long video uploads)."""
        while True:
            await asyncio.sleep(lease / 3)
            try:
                await self.store.extend_lease(post_id, attempt)
            except IllegalTransition:
                logger.warning(
                    "event=post.lease_lost id=%s attempt=%d", post_id, attempt
                )
                return
            except Exception as error:
                logger.warning(
                    "event=post.lease_not_extended id=%s reason=%r", post_id, error
                )


def _crash(platform: str, error: Exception, sent: list[str]) -> PublishError:
    """What an unexpected exception during an attempt means for the post.

    After a create request went out, the post may be live. Before, nothing
    was published: a lost database or network is worth another try, and
    anything else (a bad option, a bug) would fail the same way again.
    """
    if sent:
        return PublishError(
            ErrorKind.UNKNOWN_OUTCOME,
            f"the {platform} adapter failed unexpectedly ({type(error).__name__}) "
            f"after {sent[-1]}; check the account before retrying",
        )
    if isinstance(error, OSError | TimeoutError | psycopg.OperationalError):
        return PublishError(
            ErrorKind.TRANSIENT,
            f"the attempt failed before anything was sent to {platform}: "
            f"{type(error).__name__}",
        )
    return PublishError(
        ErrorKind.INVALID,
        f"the {platform} adapter failed before sending anything "
        f"({type(error).__name__}: {str(error)[:200]}); nothing was published: "
        "check the post's options",
    )
