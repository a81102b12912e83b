"""Async calls of the SQL API, for the web layer.

Each function takes a connection and runs in the caller's transaction, so a
webhook can record its receipt and enqueue in one commit. State changes go
through the SQL functions only (Python never writes `status`); their errors
come out as `app.exceptions` through `app.database.sql_errors`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from app.database import sql_errors
from app.exceptions import InvalidInput, PostNotFound

Row = dict[str, Any]
Action = Literal["pause", "resume", "retry", "cancel"]
ACTIONS: tuple[Action, ...] = ("pause", "resume", "retry", "cancel")
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
_SELECT_POST = sql.SQL("SELECT {} FROM social_queue").format(
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


@dataclass(frozen=True)
class Enqueued:
    id: UUID
    status: str
    # False when the idempotency key named a post that already existed.
    created: bool


async def enqueue(
    conn: AsyncConnection,
    *,
    profile_id: str,
    platform: str,
    content: dict[str, Any],
    scheduled_at: datetime,
    idempotency_key: str | None = None,
    source: str = "sql",
    source_ref: str | None = None,
    actor: str | None = None,
) -> Enqueued:
    """Queue a post through `social_queue_enqueue`."""
    with sql_errors():
        cur = await conn.execute(
            "SELECT social_queue_enqueue(%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                profile_id,
                platform,
                Jsonb(content),
                scheduled_at,
                idempotency_key,
                source,
                source_ref,
                actor,
            ),
        )
        row = await cur.fetchone()
        assert row is not None
        # created_at defaults to now(), the transaction's start: equal only
        # for a row this transaction inserted.
        cur = await conn.execute(
            "SELECT status::text, created_at = now() FROM social_queue WHERE id = %s",
            (row[0],),
        )
        status, created = await cur.fetchone() or ("unknown", False)
    return Enqueued(row[0], status, created)


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

    query = _SELECT_POST
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
        await cur.execute(_SELECT_POST + sql.SQL(" WHERE id = ANY(%s)"), (list(ids),))
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
        # TODO: a substring search scans the table (about 1.5 s at a million
        # rows when matches are rare); a trigram index would make it fast but
        # needs pg_trgm, which the embedded PostgreSQL does not ship.
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
        await cur.execute(_SELECT_POST + sql.SQL(" WHERE id = %s"), (post_id,))
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


async def act(
    conn: AsyncConnection,
    action: Action,
    post_id: UUID,
    actor: str,
    *,
    outcome_checked: bool = False,
) -> Row:
    """Pause, resume, retry or cancel one post; returns the changed post.

    `outcome_checked` vouches, for a retry, that someone looked on the
    platform: a post whose last attempt may have published is refused
    without it.
    """
    function = _action_function(action)
    arguments, params = _action_call(
        action, "%s::uuid", post_id, actor, outcome_checked
    )
    query = sql.SQL("SELECT {} FROM {}({})").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in POST_COLUMNS),
        function,
        arguments,
    )
    with sql_errors():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            row = await cur.fetchone()
    assert row is not None
    return row


async def act_many(
    conn: AsyncConnection,
    action: Action,
    post_ids: Sequence[UUID],
    actor: str,
    *,
    outcome_checked: bool = False,
) -> list[Row]:
    """The bulk form: one row per distinct id (id, status, changed, reason)."""
    function = _action_function(action)
    arguments, params = _action_call(
        action, "%s::uuid[]", list(post_ids), actor, outcome_checked
    )
    query = sql.SQL("SELECT id, status, changed, reason FROM {}({})").format(
        function, arguments
    )
    with sql_errors():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()


async def mark_posted(
    conn: AsyncConnection,
    post_id: UUID,
    remote_id: str,
    remote_url: str | None,
    actor: str,
) -> Row:
    """An operator found a post of unknown outcome live: failed -> posted."""
    query = sql.SQL("SELECT {} FROM social_queue_mark_posted(%s, %s, %s, %s)").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in POST_COLUMNS)
    )
    with sql_errors():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, (post_id, remote_id, remote_url, actor))
            row = await cur.fetchone()
    assert row is not None
    return row


async def reschedule(
    conn: AsyncConnection,
    post_id: UUID,
    *,
    scheduled_at: datetime | None = None,
    content: dict[str, Any] | None = None,
    actor: str | None = None,
) -> Row:
    """Move a post not yet published to a new time and/or content."""
    query = sql.SQL("SELECT {} FROM social_queue_reschedule(%s, %s, %s, %s)").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in POST_COLUMNS)
    )
    with sql_errors():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                query,
                (post_id, scheduled_at, Jsonb(content) if content else None, actor),
            )
            row = await cur.fetchone()
    assert row is not None
    return row


async def cancel_scheduled(
    conn: AsyncConnection,
    *,
    profile_id: str | None,
    scheduled_at: datetime | None,
    source_ref: str | None,
    actor: str | None = None,
) -> list[Row]:
    """Cancel what iCadence knows as one schedule; one row per post found."""
    with sql_errors():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT id, status, changed, reason"
                " FROM social_queue_cancel_scheduled(%s, %s, %s, %s)",
                (profile_id, scheduled_at, source_ref, actor),
            )
            return await cur.fetchall()


async def reschedule_scheduled(
    conn: AsyncConnection,
    *,
    profile_id: str | None,
    scheduled_at: datetime | None,
    source_ref: str | None,
    new_scheduled_at: datetime | None,
    new_content: dict[str, Any] | None,
    actor: str | None = None,
) -> list[Row]:
    """Reschedule what iCadence knows as one schedule; one row per post found."""
    with sql_errors():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT id, status, changed, reason"
                " FROM social_queue_reschedule_scheduled(%s, %s, %s, %s, %s, %s)",
                (
                    profile_id,
                    scheduled_at,
                    source_ref,
                    new_scheduled_at,
                    Jsonb(new_content) if new_content is not None else None,
                    actor,
                ),
            )
            return await cur.fetchall()


async def pause_platform(
    conn: AsyncConnection, platform: str, reason: str | None, actor: str
) -> Row:
    return await _platform_call(
        conn, "SELECT * FROM social_platform_pause(%s, %s, %s)", platform, reason, actor
    )


async def resume_platform(conn: AsyncConnection, platform: str, actor: str) -> Row:
    return await _platform_call(
        conn, "SELECT * FROM social_platform_resume(%s, %s)", platform, actor
    )


async def platforms(conn: AsyncConnection) -> list[Row]:
    """Every platform with its pause state and limits, by name."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM social_platforms ORDER BY platform")
        return await cur.fetchall()


async def stats(conn: AsyncConnection) -> list[Row]:
    """`social_queue_stats()`: posts by platform and status."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM social_queue_stats()")
        return await cur.fetchall()


async def webhook_receive(
    conn: AsyncConnection, source: str, event_id: str, event_type: str, digest: str
) -> Row | None:
    """Start processing a webhook event; its earlier answer if it had one."""
    with sql_errors():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                "SELECT * FROM social_queue_webhook_receive(%s, %s, %s, %s)",
                (source, event_id, event_type, digest),
            )
            return await cur.fetchone()


async def webhook_answer(
    conn: AsyncConnection, source: str, event_id: str, status: int, body: Any
) -> None:
    """Store the answer to a webhook event received in this transaction."""
    with sql_errors():
        await conn.execute(
            "SELECT social_queue_webhook_answer(%s, %s, %s, %s)",
            (source, event_id, status, Jsonb(body)),
        )


async def _platform_call(conn: AsyncConnection, query: str, *params: Any) -> Row:
    with sql_errors():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            row = await cur.fetchone()
    assert row is not None
    return row


def _action_function(action: str) -> sql.Identifier:
    if action not in ACTIONS:
        raise InvalidInput(
            f"unknown action {action!r}; allowed: {', '.join(ACTIONS)}",
            field="action",
        )
    return sql.Identifier(f"social_queue_{action}")


def _action_call(
    action: str, placeholder: str, ids: Any, actor: str, outcome_checked: bool
) -> tuple[sql.SQL, tuple[Any, ...]]:
    """The arguments of an action's SQL call and their values; only retry
    takes `p_outcome_checked`."""
    if action == "retry":
        return sql.SQL(placeholder + ", %s, %s"), (ids, actor, outcome_checked)
    if outcome_checked:
        raise InvalidInput(
            f"outcome_checked applies to retry only, not {action}",
            field="outcome_checked",
        )
    return sql.SQL(placeholder + ", %s"), (ids, actor)


def _escape_like(text: str) -> str:
    """`50%_off` as a LIKE pattern matching itself: `50\\%\\_off`."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
