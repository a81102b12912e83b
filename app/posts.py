"""Reading posts: filters, keyset pages, and one post with its history.

The list queries are fixed fragments joined as needed (values stay
parameters), so each one matches one of the list indexes of sql/0001.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from app.exceptions import InvalidInput, PostNotFound

Row = dict[str, Any]
STATUSES = ("queued", "posting", "posted", "retrying", "failed", "paused", "cancelled")

# The original proposal's columns, then what the job added.
POST_COLUMNS = (
    "id",
    "profile_id",
    "platform",
    "content",
    "scheduled_at",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "created_at",
    "updated_at",
    "error_kind",
    "remote_id",
    "remote_url",
    "posted_at",
    "source",
    "source_ref",
)
SELECT_POST = sql.SQL("SELECT {} FROM social_queue").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in POST_COLUMNS)
)


@dataclass(frozen=True)
class Cursor:
    """Where a page of the list ends: the last post's (scheduled_at, id).

    Opaque to clients: base64url of a JSON pair, without padding.
    """

    scheduled_at: datetime
    id: UUID

    def encode(self) -> str:
        raw = json.dumps([self.scheduled_at.isoformat(), str(self.id)])
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            at, post_id = json.loads(raw)
            cursor = cls(datetime.fromisoformat(at), UUID(post_id))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise InvalidInput(
                "cursor is not one this API gave out", field="cursor"
            ) from None
        if cursor.scheduled_at.tzinfo is None:
            raise InvalidInput("cursor is not one this API gave out", field="cursor")
        return cursor


@dataclass(frozen=True)
class PostFilter:
    """Which posts to list; empty means any."""

    statuses: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ()
    profile_id: str | None = None
    text: str | None = None
    # Scheduled at or after `scheduled_from`, and before `scheduled_before`.
    scheduled_from: datetime | None = None
    scheduled_before: datetime | None = None


@dataclass(frozen=True)
class Page:
    items: list[Row]
    next_cursor: str | None


async def list_posts(
    conn: AsyncConnection,
    where: PostFilter,
    *,
    limit: int = 50,
    after: Cursor | None = None,
) -> Page:
    """One page of posts, newest scheduled first, keyset-paginated.

    The conditions are fixed fragments joined as needed (values stay
    parameters), so each query matches one of the list indexes exactly.
    """
    conditions, params = _conditions(where)
    if after is not None:
        conditions.append(sql.SQL("(scheduled_at, id) < (%s, %s)"))
        params += [after.scheduled_at, after.id]

    query = SELECT_POST
    if conditions:
        query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
    query += sql.SQL(" ORDER BY scheduled_at DESC, id DESC LIMIT %s")
    params.append(limit + 1)

    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        rows = await cur.fetchall()
    more = len(rows) > limit
    items = rows[:limit]
    next_cursor = (
        Cursor(items[-1]["scheduled_at"], items[-1]["id"]).encode() if more else None
    )
    return Page(items, next_cursor)


async def count_posts(conn: AsyncConnection, where: PostFilter) -> int:
    """How many posts match; reads every match, so callers ask only on demand."""
    conditions, params = _conditions(where)
    query = sql.SQL("SELECT count(*) FROM social_queue")
    if conditions:
        query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def post_ids(conn: AsyncConnection, where: PostFilter, limit: int) -> list[UUID]:
    """The ids of up to `limit` matching posts, newest scheduled first."""
    conditions, params = _conditions(where)
    query = sql.SQL("SELECT id FROM social_queue")
    if conditions:
        query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
    query += sql.SQL(" ORDER BY scheduled_at DESC, id DESC LIMIT %s")
    cur = await conn.execute(query, [*params, limit])
    return [row[0] for row in await cur.fetchall()]


async def posts_by_id(conn: AsyncConnection, ids: Sequence[UUID]) -> list[Row]:
    """The posts with these ids (those that exist), in no particular order."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(SELECT_POST + sql.SQL(" WHERE id = ANY(%s)"), (list(ids),))
        return await cur.fetchall()


def _conditions(where: PostFilter) -> tuple[list[sql.Composable], list[Any]]:
    conditions: list[sql.Composable] = []
    params: list[Any] = []
    if where.statuses:
        conditions.append(sql.SQL("status = ANY(%s::social_status[])"))
        params.append(list(where.statuses))
    if where.platforms:
        conditions.append(sql.SQL("platform = ANY(%s::text[])"))
        params.append(list(where.platforms))
    if where.profile_id is not None:
        conditions.append(sql.SQL("profile_id = %s"))
        params.append(where.profile_id)
    if where.text:
        # Served by the trigram index of sql/0010 where the server has
        # pg_trgm. TODO: on the embedded PostgreSQL, which lacks it, this
        # scans the table: about 1.5 s at a million posts when matches are
        # rare.
        conditions.append(sql.SQL("content->>'text' ILIKE %s"))
        params.append("%" + _escape_like(where.text) + "%")
    if where.scheduled_from is not None:
        conditions.append(sql.SQL("scheduled_at >= %s"))
        params.append(where.scheduled_from)
    if where.scheduled_before is not None:
        conditions.append(sql.SQL("scheduled_at < %s"))
        params.append(where.scheduled_before)
    return conditions, params


async def get_post(conn: AsyncConnection, post_id: UUID) -> Row:
    """One post with its attempts and events, oldest first; PostNotFound if none."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(SELECT_POST + sql.SQL(" WHERE id = %s"), (post_id,))
        post = await cur.fetchone()
        if post is None:
            raise PostNotFound(f"no post has id {post_id}", id=str(post_id))
        await cur.execute(
            "SELECT number, worker, started_at, finished_at, outcome, error_kind,"
            " error_message, http_status, remote_id FROM social_queue_attempts"
            " WHERE post_id = %s ORDER BY number",
            (post_id,),
        )
        attempts = await cur.fetchall()
        await cur.execute(
            "SELECT id, at, action, actor, from_status, to_status, detail"
            " FROM social_queue_events WHERE post_id = %s ORDER BY id",
            (post_id,),
        )
        events = await cur.fetchall()
    return {"post": post, "attempts": attempts, "events": events}


def _escape_like(text: str) -> str:
    """`50%_off` as a LIKE pattern matching itself: `50\\%\\_off`."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
