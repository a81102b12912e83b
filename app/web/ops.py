"""The ops page at `/ops/social-queue`: the queue, a post, and the live stream.

Pages render whole for a browser and as one named block for htmx (the
`HX-Request` header), from the same template. Actions live in `ops_actions`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from app import posts
from app.exceptions import InvalidInput, PostNotFound
from app.web import login, ops_actions, templating
from app.web.live import Changes, LiveFeed, Message
from app.web.login import is_htmx, login_required
from app.web.ops_view import (
    PAGE_SIZE,
    Filters,
    page_context,
    render_changes,
    shared_context,
)

logger = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
STATIC = Path(__file__).resolve().parents[2] / "static"


@login_required
async def posts_page(request: Request) -> Response:
    """The queue, filtered and paginated by the URL; the `posts` block alone
    for htmx (a filter change, the next page, a reload after missed
    updates)."""
    filters = Filters.parse(request.query_params)
    try:
        after = _cursor(request.query_params.get("cursor"))
    except InvalidInput:
        after = None
    async with request.app.state.pool.connection() as conn:
        page = await posts.list_posts(
            conn, filters.post_filter(), limit=PAGE_SIZE, after=after
        )
        shared = await shared_context(request.app, conn)

    here = request.url.path + filters.query(
        cursor=request.query_params.get("cursor", "")
    )
    context = page_context(
        request,
        **shared,
        filters=filters,
        posts=page.items,
        next_cursor=page.next_cursor,
        first_page=after is None,
        here=here,
        bulk=None,
    )
    block = "posts" if is_htmx(request) and _targets(request, "posts") else None
    return HTMLResponse(templating.render(request.app, "posts.html", context, block))


@login_required
async def post_page(request: Request) -> Response:
    """One post: content, media, attempts and events."""
    post_id = _uuid(request.path_params["id"])
    async with request.app.state.pool.connection() as conn:
        try:
            found = await posts.get_post(conn, post_id)
        except PostNotFound:
            raise HTTPException(404, "no such post") from None
    context = page_context(
        request,
        **found,
        media=_media(found["post"]["content"]),
        confirm=request.query_params.get("confirm", ""),
        here=request.url.path,
    )
    return HTMLResponse(templating.render(request.app, "post.html", context))


@login_required
async def events(request: Request) -> Response:
    """Server-sent events: `post-<id>` with a row's HTML, `counts`,
    `platforms`, and `reload` when this page missed some."""
    feed: LiveFeed = request.app.state.live_feed

    async def stream() -> AsyncIterator[str]:
        async with feed.subscribe() as subscription:
            # The browser waits 2 s before reconnecting after a drop.
            yield "retry: 2000\n\n"
            while True:
                message = await subscription.next(KEEPALIVE_SECONDS)
                if message is None:
                    # Keeps proxies (Heroku's router: 55 s) from closing it.
                    yield ": keepalive\n\n"
                    continue
                if message.event == "close":
                    return
                yield message.encode()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def routes(settings: login.OpsSettings) -> list[BaseRoute]:
    """`/ops` (login, the queue, a post, actions) behind its session cookie,
    and `/static` (CSS, app.js and the vendored htmx)."""
    return [
        Mount(
            "/ops",
            routes=[
                Route(
                    "/login", login.login_page, methods=["GET", "POST"], name="login"
                ),
                Route("/logout", login.logout, methods=["POST"], name="logout"),
                Route("/social-queue", posts_page, methods=["GET"], name="posts"),
                Route("/social-queue/events", events, methods=["GET"], name="events"),
                Route(
                    "/social-queue/posts/{id}", post_page, methods=["GET"], name="post"
                ),
                *ops_actions.routes,
            ],
            middleware=[settings.middleware()],
            name="ops",
        ),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]


def setup(app: Starlette, settings: login.OpsSettings) -> None:
    """Keep what the ops handlers share on `app.state`."""
    app.state.ops_settings = settings
    app.state.login_throttle = login.LoginThrottle(
        settings.login_attempts, settings.login_window_seconds
    )
    if not settings.users:
        logger.warning(
            "event=ops.no_users detail=%s",
            '"neither OPS_USERS nor OPS_PASSWORD is set: nobody can log in to the '
            'ops page"',
        )


async def start_live(app: Starlette) -> None:
    """Start the process's one listener; called by the lifespan once the
    pool is open."""

    async def render(changes: Changes) -> list[Message]:
        return await render_changes(app, changes)

    feed = LiveFeed(app.state.conninfo, render)
    await feed.start()
    app.state.live_feed = feed


async def stop_live(app: Starlette) -> None:
    feed: LiveFeed | None = getattr(app.state, "live_feed", None)
    if feed is not None:
        await feed.stop()


def _targets(request: Request, element_id: str) -> bool:
    # A history restore asks for the whole page, with no target.
    return request.headers.get("hx-target") == element_id


def _cursor(raw: str | None) -> posts.Cursor | None:
    return posts.Cursor.decode(raw) if raw else None


def _uuid(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise HTTPException(404, "no such post") from None


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")


def _media(content: dict[str, Any]) -> list[dict[str, Any]]:
    """The post's media URLs; images get a thumbnail, others a link."""
    urls = content.get("mediaUrls") or []
    media = []
    for url in urls if isinstance(urls, list) else []:
        if not isinstance(url, str):
            continue
        path = url.split("?", 1)[0].lower()
        safe = url.startswith(("https://", "http://"))
        # Only web URLs become links: a `javascript:` URL stays text.
        media.append(
            {"url": url, "link": safe, "image": safe and path.endswith(IMAGE_SUFFIXES)}
        )
    return media
