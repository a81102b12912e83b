"""The ops JSON API under `/api/ops`: list, inspect and steer posts.

Every route needs a bearer token (`auth.protected`); every change goes
through one SQL function, whose errors `errors` maps to 404, 409 and 422.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app import posts, queue
from app.web.auth import protected
from app.web.errors import ApiError, invalid
from app.web.webhook import read_body

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_BULK_IDS = 500
MAX_FILTER_LENGTH = 200
MAX_BODY_BYTES = 256 * 1024


class ApiResponse(JSONResponse):
    """JSON with the types rows carry: UUIDs, timestamps (ISO-8601), numbers."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content, default=_json_default, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@protected
async def list_posts(request: Request) -> Response:
    params = request.query_params
    async with request.app.state.pool.connection() as conn:
        where = posts.PostFilter(
            statuses=_choices(params.get("status"), posts.STATUSES, "status"),
            platforms=_choices(
                params.get("platform"), await _platform_names(conn), "platform"
            ),
            profile_id=_short(params.get("profile"), "profile"),
            text=_short(params.get("q"), "q"),
        )
        limit = _limit(params.get("limit"))
        cursor = params.get("cursor")
        after = posts.Cursor.decode(cursor) if cursor else None
        page = await posts.list_posts(conn, where, limit=limit, after=after)
    return ApiResponse({"items": page.items, "next_cursor": page.next_cursor})


@protected
async def get_post(request: Request) -> Response:
    post_id = _uuid(request.path_params["id"], "id")
    async with request.app.state.pool.connection() as conn:
        return ApiResponse(await posts.get_post(conn, post_id))


def _action(action: queue.Action) -> Route:
    @protected
    async def endpoint(request: Request) -> Response:
        post_id = _uuid(request.path_params["id"], "id")
        checked = False
        if action == "retry":
            checked = _outcome_checked(await _json_object(request, optional=True))
        async with request.app.state.pool.connection() as conn:
            post = await queue.act(
                conn, action, post_id, request.state.actor, outcome_checked=checked
            )
        return ApiResponse({"post": post})

    endpoint.__name__ = f"{action}_post"
    return Route(f"/api/ops/social-queue/{{id}}/{action}", endpoint, methods=["POST"])


@protected
async def bulk(request: Request) -> Response:
    """`{"action": "cancel", "ids": [...]}` → one result per distinct id."""
    body = await _json_object(request)
    action = body.get("action")
    if action not in queue.ACTIONS:
        raise invalid(
            f"action must be one of {', '.join(queue.ACTIONS)}", field="action"
        )
    ids = body.get("ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_BULK_IDS:
        raise invalid(f"ids must be an array of 1 to {MAX_BULK_IDS} ids", "ids")
    post_ids = [_uuid(value, f"ids[{i}]") for i, value in enumerate(ids)]
    checked = _outcome_checked(body)
    if checked and action != "retry":
        raise invalid("outcome_checked applies to retry only", "outcome_checked")

    async with request.app.state.pool.connection() as conn:
        results = await queue.act_many(
            conn, action, post_ids, request.state.actor, outcome_checked=checked
        )
    return ApiResponse({"action": action, "results": results})


@protected
async def pause_platform(request: Request) -> Response:
    body = await _json_object(request, optional=True)
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
        raise invalid("reason must be a string of at most 500 characters", "reason")
    async with request.app.state.pool.connection() as conn:
        platform = await queue.pause_platform(
            conn, request.path_params["platform"], reason, request.state.actor
        )
    return ApiResponse({"platform": platform})


@protected
async def resume_platform(request: Request) -> Response:
    async with request.app.state.pool.connection() as conn:
        platform = await queue.resume_platform(
            conn, request.path_params["platform"], request.state.actor
        )
    return ApiResponse({"platform": platform})


routes = [
    Route("/api/ops/social-queue", list_posts, methods=["GET"]),
    Route("/api/ops/social-queue/bulk", bulk, methods=["POST"]),
    Route("/api/ops/social-queue/{id}", get_post, methods=["GET"]),
    *(_action(action) for action in queue.ACTIONS),
    Route("/api/ops/platforms/{platform}/pause", pause_platform, methods=["POST"]),
    Route("/api/ops/platforms/{platform}/resume", resume_platform, methods=["POST"]),
]


async def _platform_names(conn: AsyncConnection) -> tuple[str, ...]:
    return tuple(row["platform"] for row in await queue.platforms(conn))


def _choices(raw: str | None, allowed: tuple[str, ...], field: str) -> tuple[str, ...]:
    """`failed,retrying` as ("failed", "retrying"), each one of `allowed`."""
    if raw is None or not raw.strip():
        return ()
    values = tuple(v.strip() for v in raw.split(",") if v.strip())
    for value in values:
        if value not in allowed:
            raise invalid(
                f"unknown {field} {value[:40]!r}; allowed: {', '.join(allowed)}",
                field,
            )
    return values


def _short(raw: str | None, field: str) -> str | None:
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_FILTER_LENGTH or "\x00" in raw:
        raise invalid(f"{field} must be at most {MAX_FILTER_LENGTH} characters", field)
    return raw


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    # ASCII only: "²".isdigit() is true, and int() refuses it.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise invalid(f"limit must be a whole number from 1 to {MAX_LIMIT}", "limit")
    return int(raw)


def _uuid(raw: object, field: str) -> UUID:
    try:
        if not isinstance(raw, str):
            raise ValueError
        return UUID(raw)
    except ValueError:
        raise invalid(f"{field} is not a UUID: {str(raw)[:40]!r}", field) from None


def _outcome_checked(body: dict[str, Any]) -> bool:
    """`outcome_checked: true` vouches that someone looked on the platform
    for a post whose last attempt may have published."""
    checked = body.get("outcome_checked", False)
    if not isinstance(checked, bool):
        raise invalid("outcome_checked must be true or false", "outcome_checked")
    return checked


async def _json_object(request: Request, *, optional: bool = False) -> dict[str, Any]:
    body = await read_body(request, MAX_BODY_BYTES)
    if optional and not body.strip():
        return {}
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "the body is not JSON") from None
    if not isinstance(document, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return document
