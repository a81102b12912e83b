"""Async calls of the SQL API, for the web layer.

Each function takes a connection and runs in the caller's transaction, so a
webhook can record its receipt and enqueue in one commit. State changes go
through the SQL functions only (Python never writes `status`); their errors
come out as `app.exceptions` through `app.database.sql_errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from app.database import sql_errors
from app.exceptions import InvalidInput
from app.posts import POST_COLUMNS, Row

Action = Literal["pause", "resume", "retry", "cancel"]
ACTIONS: tuple[Action, ...] = ("pause", "resume", "retry", "cancel")


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
