"""`/healthz` for the router and `/api/integrations/status` for operators."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio
from psycopg.rows import dict_row
from starlette.requests import Request
from starlette.responses import Response

from app import migrations, posts, queue
from app.web.api import ApiResponse
from app.web.auth import protected
from tasks.accounts import ENV_ACCOUNTS

logger = logging.getLogger(__name__)

CHECK_SECONDS = 5
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


async def healthz(request: Request) -> Response:
    """200 when the database answers and every migration is applied, else 503."""
    body: dict[str, Any] = {"database": "ok", "migrations": "current"}
    try:
        with anyio.fail_after(CHECK_SECONDS):
            async with request.app.state.pool.connection() as conn:
                await conn.execute("SELECT 1")
            # app.migrations is synchronous; a thread keeps the loop free.
            pending = await anyio.to_thread.run_sync(
                migrations.pending, request.app.state.conninfo, abandon_on_cancel=True
            )
    except Exception as error:
        # The reason goes to the log; the public answer names only its kind.
        logger.warning("event=health.failed error=%s", type(error).__name__)
        return ApiResponse(
            {"database": f"unreachable ({type(error).__name__})", "migrations": None},
            status_code=503,
        )
    if pending:
        body.update(migrations="pending", pending=pending)
        return ApiResponse(body, status_code=503)
    return ApiResponse(body)


@protected
async def integrations_status(request: Request) -> Response:
    """Per platform: configured how, paused, counts by status, last success and
    last error."""
    async with request.app.state.pool.connection() as conn:
        platforms = await queue.platforms(conn)
        counts = await queue.stats(conn)
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(LAST_SUCCESS)
            successes = {r["platform"]: r["at"] for r in await cur.fetchall()}
            await cur.execute(LAST_ERROR)
            failures = {r["platform"]: r for r in await cur.fetchall()}
            await cur.execute(ACCOUNTS)
            accounts = {r["platform"]: r["accounts"] for r in await cur.fetchall()}

    base_urls: Mapping[str, str] = request.app.state.settings.base_urls
    items = []
    for row in platforms:
        name = row["platform"]
        # The single-account fallback publishes with its token variable.
        account = ENV_ACCOUNTS.get(name)
        env_vars = [account.token] if account and _env(request, account.token) else []
        failure = failures.get(name)
        items.append(
            {
                "platform": name,
                "display_name": row["display_name"],
                "configured": bool(env_vars or accounts.get(name)),
                "credentials": {"env": env_vars, "accounts": accounts.get(name, 0)},
                "mode": integration_mode(base_urls.get(name)),
                "base_url": base_urls.get(name),
                "paused": row["paused"],
                "paused_reason": row["paused_reason"],
                "paused_at": row["paused_at"],
                "counts": {
                    status: sum(
                        c["posts"]
                        for c in counts
                        if c["platform"] == name and c["status"] == status
                    )
                    for status in posts.STATUSES
                },
                "last_success_at": successes.get(name),
                "last_error": failure
                and {
                    "at": failure["at"],
                    "kind": failure["error_kind"],
                    "message": failure["error_message"],
                },
            }
        )
    return ApiResponse({"platforms": items})


def _env(request: Request, name: str) -> bool:
    return bool(request.app.state.environ.get(name, "").strip())


def integration_mode(base_url: str | None) -> str:
    """`live` (the platform's API), `sandbox` (a fake on this machine) or
    `custom` (another host, e.g. a proxy)."""
    if not base_url:
        return "live"
    host = urlsplit(base_url).hostname or ""
    if host in LOOPBACK or host.endswith(".localhost"):
        return "sandbox"
    return "custom"


# TODO: max(posted_at) reads every posted row of the platform (no index has
# posted_at); once tables hold millions of posts, add one in a migration.
LAST_SUCCESS = """
    SELECT platform, max(posted_at) AS at FROM social_queue
     WHERE status = 'posted' GROUP BY platform
"""
# The latest failed attempt of each platform, with its message.
LAST_ERROR = """
    SELECT DISTINCT ON (q.platform) q.platform, a.finished_at AS at,
           a.error_kind, a.error_message
      FROM social_queue_attempts a JOIN social_queue q ON q.id = a.post_id
     WHERE a.outcome IN ('failed', 'lease_expired')
     ORDER BY q.platform, a.finished_at DESC, a.id DESC
"""
ACCOUNTS = """
    SELECT platform, count(*) AS accounts FROM social_accounts
     WHERE access_token IS NOT NULL GROUP BY platform
"""
