"""The worker's calls to the SQL API.

Python never writes a post's status itself: every change here is one SQL
function call. Reports (complete, fail) matter most, since a post the
platform accepted must be recorded as posted; they are retried through a
database outage until the claim's lease would expire.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from app.database import raise_for

logger = logging.getLogger(__name__)

T = TypeVar("T")

Row = dict[str, Any]


class Store:
    """The SQL API as the worker uses it, over one connection pool."""

    def __init__(self, pool: AsyncConnectionPool, worker: str) -> None:
        self.pool = pool
        self.worker = worker

    async def _one(self, query: str, *params: Any) -> Row | None:
        async with (
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cur,
        ):
            try:
                await cur.execute(query, params)
            except psycopg.errors.Error as error:
                if error.sqlstate and error.sqlstate.startswith("SQ"):
                    raise_for(error)
                raise
            return await cur.fetchone() if cur.description else None

    async def _all(self, query: str, *params: Any) -> list[Row]:
        async with (
            self.pool.connection() as conn,
            conn.cursor(row_factory=dict_row) as cur,
        ):
            await cur.execute(query, params)
            return await cur.fetchall()

    async def claim(self, post_id: UUID) -> Row | None:
        return await self._one(
            "SELECT * FROM social_queue_claim(%s, %s)", post_id, self.worker
        )

    async def save_handle(
        self, post_id: UUID, attempt: int, name: str, value: Any
    ) -> None:
        await self._one(
            "SELECT social_queue_save_handle(%s, %s, %s, %s)",
            post_id,
            attempt,
            name,
            Jsonb(value),
        )

    async def extend_lease(self, post_id: UUID, attempt: int) -> datetime | None:
        row = await self._one(
            "SELECT social_queue_extend_lease(%s, %s) AS until", post_id, attempt
        )
        return row["until"] if row else None

    async def complete(
        self,
        post_id: UUID,
        attempt: int,
        remote_id: str,
        url: str | None,
        deadline: float,
    ) -> Row | None:
        return await self._until(
            deadline,
            lambda: self._one(
                "SELECT * FROM social_queue_complete(%s, %s, %s, %s)",
                post_id,
                attempt,
                remote_id,
                url,
            ),
        )

    async def fail(
        self,
        post_id: UUID,
        attempt: int,
        kind: str,
        message: str,
        http_status: int | None,
        retry_at: datetime | None,
        deadline: float,
    ) -> Row | None:
        return await self._until(
            deadline,
            lambda: self._one(
                "SELECT * FROM social_queue_fail(%s, %s, %s, %s, %s, %s)",
                post_id,
                attempt,
                kind,
                message,
                http_status,
                retry_at,
            ),
        )

    async def mark_posted(
        self, post_id: UUID, remote_id: str, url: str | None
    ) -> Row | None:
        return await self._one(
            "SELECT * FROM social_queue_mark_posted(%s, %s, %s, %s)",
            post_id,
            remote_id,
            url,
            self.worker,
        )

    async def requeue_unpublished(self, post_id: UUID, actor: str) -> Row | None:
        """A lost attempt proved not to have published: retry it, spending
        one attempt of its budget (`social_queue_requeue_unpublished`)."""
        return await self._one(
            "SELECT * FROM social_queue_requeue_unpublished(%s, %s)", post_id, actor
        )

    async def attempt_age(self, post_id: UUID, attempt: int) -> float:
        """Seconds since the attempt started, by the database's clock."""
        row = await self._one(
            "SELECT extract(epoch FROM now() - started_at)::float8 AS age"
            " FROM social_queue_attempts WHERE post_id = %s AND number = %s",
            post_id,
            attempt,
        )
        return float(row["age"]) if row else float("inf")

    async def reap_expired(self, limit: int = 100) -> list[Row]:
        return await self._all(
            "SELECT * FROM social_queue_reap_expired(%s, %s)",
            limit,
            f"reaper:{self.worker}",
        )

    async def sweep(self) -> int:
        row = await self._one("SELECT social_queue_sweep() AS n")
        return int(row["n"]) if row else 0

    async def prune(self, limit: int = 1000) -> Row:
        """One batch of `social_queue_prune` at the configured retention."""
        row = await self._one("SELECT * FROM social_queue_prune(NULL, %s)", limit)
        return row or {"posts": 0, "jobs": 0, "webhook_events": 0}

    async def post(self, post_id: UUID) -> Row | None:
        return await self._one("SELECT * FROM social_queue WHERE id = %s", post_id)

    async def _until(self, deadline: float, call: Callable[[], Awaitable[T]]) -> T:
        """Retry `call` through connection failures until `deadline` (monotonic)."""
        delay = 0.2
        while True:
            try:
                return await call()
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                if time.monotonic() + delay > deadline:
                    raise
                logger.warning(
                    "event=store.retry reason=%r wait_ms=%d",
                    type(error).__name__,
                    delay * 1000,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
