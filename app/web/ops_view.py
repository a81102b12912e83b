"""What the ops page shows: its filters, counts, platforms, and the fragments
a live update sends."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import Any
from urllib.parse import urlencode

from psycopg import AsyncConnection
from starlette.applications import Starlette
from starlette.requests import Request

from app import posts, queue
from app.web import templating
from app.web.health import integration_mode
from app.web.live import Changes, Message

PAGE_SIZE = 50
MAX_FILTER_LENGTH = 200
COUNTS_TTL_SECONDS = 2.0
# What each status allows (docs/state-machine.md); the SQL checks again.
ALLOWED: dict[str, tuple[str, ...]] = {
    "queued": ("pause", "cancel"),
    "retrying": ("pause", "retry", "cancel"),
    "paused": ("resume", "retry", "cancel"),
    "failed": ("retry", "cancel"),
    "posting": (),
    "posted": (),
    "cancelled": (),
}


@dataclass(frozen=True)
class Filters:
    """The page's filters as the URL carries them (`?status=failed&q=launch`).

    Dates are whole UTC days: `to` includes its day.
    """

    status: str = ""
    platform: str = ""
    profile: str = ""
    q: str = ""
    since: date | None = None
    until: date | None = None

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Filters:
        """Read filters, dropping values that cannot be meant (an unknown
        status, a malformed date) rather than failing a shared link."""
        status = str(params.get("status") or "")
        return cls(
            status=status if status in posts.STATUSES else "",
            platform=_short(params.get("platform")).lower(),
            profile=_short(params.get("profile")),
            q=_short(params.get("q")),
            since=_date(params.get("from")),
            until=_date(params.get("to")),
        )

    def post_filter(self) -> posts.PostFilter:
        return posts.PostFilter(
            statuses=(self.status,) if self.status else (),
            platforms=(self.platform,) if self.platform else (),
            profile_id=self.profile or None,
            text=self.q or None,
            scheduled_from=_midnight(self.since),
            scheduled_before=_midnight(self.until + timedelta(days=1))
            if self.until
            else None,
        )

    def params(self) -> dict[str, str]:
        """The non-empty filters as query parameters."""
        values = {
            "status": self.status,
            "platform": self.platform,
            "profile": self.profile,
            "q": self.q,
            "from": self.since.isoformat() if self.since else "",
            "to": self.until.isoformat() if self.until else "",
        }
        return {k: v for k, v in values.items() if v}

    def query(self, **extra: str) -> str:
        """`?status=failed&cursor=…`, or `` when there is nothing to say."""
        params = {**self.params(), **{k: v for k, v in extra.items() if v}}
        return "?" + urlencode(params) if params else ""

    def __bool__(self) -> bool:
        return bool(self.params())


class CountsCache:
    """Posts per status, read at most once per `ttl` seconds per process.

    `social_queue_stats()` is cheap (counts kept by trigger), but with many
    pages open and posts changing every second it would still run once per
    page per change; this keeps it to one query per interval.
    """

    def __init__(self, ttl: float = COUNTS_TTL_SECONDS) -> None:
        self.ttl = ttl
        self._at = -1e9
        self._counts: dict[str, int] = {}

    async def get(
        self, conn: AsyncConnection, *, fresh: bool = False
    ) -> dict[str, int]:
        if fresh or time.monotonic() - self._at > self.ttl:
            counts = dict.fromkeys(posts.STATUSES, 0)
            for row in await queue.stats(conn):
                counts[str(row["status"])] += row["posts"]
            self._counts, self._at = counts, time.monotonic()
        return self._counts


def counts_cache(app: Starlette) -> CountsCache:
    cache: CountsCache | None = getattr(app.state, "counts_cache", None)
    if cache is None:
        cache = app.state.counts_cache = CountsCache()
    return cache


def sandbox_platforms(app: Starlette) -> list[str]:
    """Platforms whose adapter points at this machine (the sandbox fakes)."""
    base_urls: Mapping[str, str] = app.state.settings.base_urls
    return sorted(
        p for p, url in base_urls.items() if integration_mode(url) == "sandbox"
    )


async def shared_context(app: Starlette, conn: AsyncConnection) -> dict[str, Any]:
    """What every rendering of the queue page needs, whoever looks at it."""
    return {
        "counts": await counts_cache(app).get(conn),
        "platforms": await queue.platforms(conn),
        "statuses": posts.STATUSES,
        "allowed": ALLOWED,
    }


def page_context(request: Request, **context: Any) -> dict[str, Any]:
    """The session's part: user, CSRF token, flashes, the sandbox badge."""
    from app.web.login import csrf_token, take_flashes

    return {
        "user": request.state.user,
        "csrf": csrf_token(request),
        "flashes": take_flashes(request),
        "sandbox": sandbox_platforms(request.app),
        "allowed": ALLOWED,
        **context,
    }


async def render_changes(app: Starlette, changes: Changes) -> list[Message]:
    """The live update for what changed: one `post-<id>` event per changed
    row, and `counts` and `platforms` when those changed."""
    messages: list[Message] = []
    async with app.state.pool.connection() as conn:
        if changes.post_ids:
            for post in await posts.posts_by_id(conn, list(changes.post_ids)):
                html = templating.render(
                    app, "posts.html", {"post": post, "allowed": ALLOWED}, "row"
                )
                messages.append(Message(f"post-{post['id']}", html.strip()))
        if changes.counts:
            counts = await counts_cache(app).get(conn, fresh=True)
            html = templating.render(
                app,
                "posts.html",
                {"counts": counts, "statuses": posts.STATUSES},
                "counts",
            )
            messages.append(Message("counts", html.strip()))
        if changes.platforms:
            html = templating.render(
                app,
                "posts.html",
                {"platforms": await queue.platforms(conn)},
                "platforms",
            )
            messages.append(Message("platforms", html.strip()))
    return messages


def _short(value: Any) -> str:
    return str(value or "").strip()[:MAX_FILTER_LENGTH]


def _date(value: Any) -> date | None:
    """An ISO date the queue can hold (2000 to 8999, as sql/0009 checks), or
    None: a date out of range filters nothing rather than failing a link."""
    try:
        day = date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
    return day if day and date(2000, 1, 1) <= day <= date(8999, 12, 30) else None


def _midnight(day: date | None) -> datetime | None:
    return datetime.combine(day, clock(0), tzinfo=UTC) if day else None
