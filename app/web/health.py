"""`/healthz` for the router and `/api/integrations/status` for operators."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
from psycopg.rows import dict_row
from starlette.requests import Request
from starlette.responses import Response

from app import migrations, posts, queue
from app.web.api import ApiResponse
from app.web.auth import protected
from tasks.environment import ENV_ACCOUNTS

logger = logging.getLogger(__name__)

CHECK_SECONDS = 5
HEALTH_CACHE_SECONDS = 1.0
# What this code needs applied, read from the files once.
EXPECTED_MIGRATIONS = migrations.expected()
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


async def healthz(request: Request) -> Response:
    """200 when the database answers and every migration is applied, else 503.

    Unauthenticated (the router calls it), so it costs one pooled query and
    is answered from a cache for `HEALTH_CACHE_SECONDS`: a flood of checks
    cannot take the workers' connections.
    """
    cache: _HealthCache = _health_cache(request)
    if time.monotonic() - cache.at < HEALTH_CACHE_SECONDS:
        return ApiResponse(cache.body, status_code=cache.status)
    async with cache.lock:
        if time.monotonic() - cache.at >= HEALTH_CACHE_SECONDS:
            cache.status, cache.body = await _check(request)
            cache.at = time.monotonic()
    return ApiResponse(cache.body, status_code=cache.status)


async def _check(request: Request) -> tuple[int, dict[str, Any]]:
    try:
        with anyio.fail_after(CHECK_SECONDS):
            async with request.app.state.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT to_regclass('social_queue_migrations') IS NOT NULL"
                )
                row = await cur.fetchone()
                applied: set[str] = set()
                if row and row[0]:
                    cur = await conn.execute("SELECT name FROM social_queue_migrations")
                    applied = {name for (name,) in await cur.fetchall()}
    except Exception as error:
        # The reason goes to the log; the public answer names only its kind.
        logger.warning("event=health.failed error=%s", type(error).__name__)
        return 503, {
            "database": f"unreachable ({type(error).__name__})",
            "migrations": None,
        }
    pending = [name for name in EXPECTED_MIGRATIONS if name not in applied]
    if pending:
        return 503, {"database": "ok", "migrations": "pending", "pending": pending}
    return 200, {"database": "ok", "migrations": "current"}


@dataclass
class _HealthCache:
    at: float = -1e9
    status: int = 503
    body: dict[str, Any] = field(default_factory=dict)
    lock: anyio.Lock = field(default_factory=anyio.Lock)


def _health_cache(request: Request) -> _HealthCache:
    cache = getattr(request.app.state, "health_cache", None)
    if cache is None:
        cache = request.app.state.health_cache = _HealthCache()
    return cache


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


# Each platform's newest success and failure: one probe each of the partial
# indexes of sql/0012, however long the history.
LAST_SUCCESS = """
    SELECT p.platform, s.posted_at AS at
      FROM social_platforms p
     CROSS JOIN LATERAL (
           SELECT q.posted_at FROM social_queue q
            WHERE q.platform = p.platform AND q.status = 'posted'
              AND q.posted_at IS NOT NULL
            ORDER BY q.posted_at DESC LIMIT 1) s
"""
LAST_ERROR = """
    SELECT p.platform, a.finished_at AS at, a.error_kind, a.error_message
      FROM social_platforms p
     CROSS JOIN LATERAL (
           SELECT a.finished_at, a.error_kind, a.error_message
             FROM social_queue_attempts a
            WHERE a.platform = p.platform
              AND a.outcome IN ('failed', 'lease_expired')
            ORDER BY a.finished_at DESC, a.id DESC LIMIT 1) a
"""
ACCOUNTS = """
    SELECT platform, count(*) AS accounts FROM social_accounts
     WHERE access_token IS NOT NULL GROUP BY platform
"""
