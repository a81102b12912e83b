"""What operators do from the ops page: act on a post, on many, on a platform.

Every action is a POST checked for its CSRF token (`login_required`) that
calls one SQL function through `app.queue`, recorded as actor `ops:<user>`.
An htmx request gets the changed fragment back (the row, the platform bar,
the bulk panel); a plain form gets a 303 back to the page with a flash.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from app import posts, queue
from app.exceptions import IllegalTransition, InvalidInput, PostNotFound
from app.web import templating
from app.web.login import flash, is_htmx, login_required
from app.web.ops_view import ALLOWED, Filters

logger = logging.getLogger(__name__)

MAX_BULK_POSTS = 10_000
CHUNK = 500
PAST = {
    "pause": "paused",
    "resume": "resumed",
    "retry": "queued for retry",
    "cancel": "cancelled",
    "mark-posted": "marked as posted",
}
VERB = {"mark-posted": "mark as posted"}


@login_required
async def act(request: Request) -> Response:
    """Pause, resume, retry, cancel or mark-posted one post."""
    action = request.path_params["action"]
    if action not in PAST:
        raise HTTPException(404, "no such action")
    post_id = _uuid(request.path_params["id"])
    form = await request.form()
    actor = request.state.actor

    status, message, level = 200, "", "ok"
    async with request.app.state.pool.connection() as conn:
        try:
            if action == "mark-posted":
                post = await queue.mark_posted(
                    conn,
                    post_id,
                    str(form.get("remote_id", "")).strip(),
                    str(form.get("remote_url", "")).strip() or None,
                    actor,
                )
            else:
                # The SQL refuses to retry a post that may be live unless the
                # operator confirmed, on its page, that they checked.
                post = await queue.act(
                    conn,
                    action,
                    post_id,
                    actor,
                    outcome_checked=action == "retry" and bool(form.get("checked")),
                )
            message = f"Post {_short_id(post_id)} {PAST[action]}."
        except PostNotFound:
            raise HTTPException(404, "no such post") from None
        except (IllegalTransition, InvalidInput) as error:
            found = await posts.posts_by_id(conn, [post_id])
            if not found:
                raise HTTPException(404, "no such post") from None
            post = found[0]
            status = 409 if isinstance(error, IllegalTransition) else 422
            level = "error"
            message = _explain(error, action, post)

    logger.info(
        "event=ops.action action=%s id=%s user=%s status=%d",
        action,
        post_id,
        request.state.user,
        status,
    )
    if not is_htmx(request):
        flash(request, level, message)
        return _back(request, form.get("next"))
    html = templating.render(
        request.app,
        "posts.html",
        {"post": post, "allowed": ALLOWED, "notice": (level, message)},
        "row",
    ) + _flash_oob(request, level, message)
    return HTMLResponse(html, status_code=status)


@login_required
async def platform_action(request: Request) -> Response:
    """Pause or resume publishing to a whole platform."""
    platform, action = request.path_params["platform"], request.path_params["action"]
    form = await request.form()
    async with request.app.state.pool.connection() as conn:
        try:
            if action == "pause":
                reason = str(form.get("reason", "")).strip()[:500] or None
                await queue.pause_platform(conn, platform, reason, request.state.actor)
            elif action == "resume":
                await queue.resume_platform(conn, platform, request.state.actor)
            else:
                raise HTTPException(404, "no such action")
        except InvalidInput:
            raise HTTPException(404, "no such platform") from None
        platforms = await queue.platforms(conn)

    logger.info(
        "event=ops.platform action=%s platform=%s user=%s",
        action,
        platform,
        request.state.user,
    )
    message = (
        f"Publishing to {platform} {'paused' if action == 'pause' else 'resumed'}."
    )
    if not is_htmx(request):
        flash(request, "ok", message)
        return _back(request, form.get("next"))
    html = templating.render(
        request.app, "posts.html", {"platforms": platforms}, "platforms"
    ) + _flash_oob(request, "ok", message)
    return HTMLResponse(html)


@login_required
async def bulk(request: Request) -> Response:
    """An action on the selected posts, or on every post the filter matches.

    Without `confirm` it only counts and asks; with it, it acts. A retry
    skips posts whose last outcome is unknown: each needs a look at the
    platform first, so they are retried one by one.
    """
    form = await request.form()
    action = str(form.get("action", ""))
    if action not in queue.ACTIONS:
        return _bulk_panel(request, {"error": "Choose an action first."}, 422)
    scope = "matching" if form.get("scope") == "matching" else "selected"
    filters = Filters.parse(form)
    ids = [_uuid(v) for v in form.getlist("ids")] if scope == "selected" else []
    if scope == "selected" and not ids:
        return _bulk_panel(request, {"error": "Select posts first."}, 422)

    async with request.app.state.pool.connection() as conn:
        if not form.get("confirm"):
            total = (
                len(set(ids))
                if scope == "selected"
                else await posts.count_posts(conn, filters.post_filter())
            )
            panel = {
                "ask": True,
                "action": action,
                "scope": scope,
                "ids": [str(i) for i in dict.fromkeys(ids)],
                "total": total,
                "capped": min(total, MAX_BULK_POSTS),
                "filters": filters,
            }
            return _bulk_panel(request, panel)

        if scope == "matching":
            ids = await posts.post_ids(conn, filters.post_filter(), MAX_BULK_POSTS)
        skipped_unknown = 0
        if action == "retry":
            unknown = {
                p["id"]
                for p in await posts.posts_by_id(conn, ids)
                if p["status"] == "failed" and p["error_kind"] == "unknown_outcome"
            }
            skipped_unknown = len(unknown)
            ids = [i for i in ids if i not in unknown]
        changed = unchanged = 0
        for start in range(0, len(ids), CHUNK):
            results = await queue.act_many(
                conn, action, ids[start : start + CHUNK], request.state.actor
            )
            changed += sum(1 for r in results if r["changed"])
            unchanged += sum(1 for r in results if not r["changed"])

    logger.info(
        "event=ops.bulk action=%s scope=%s changed=%d unchanged=%d user=%s",
        action,
        scope,
        changed,
        unchanged,
        request.state.user,
    )
    message = f"{PAST[action].capitalize()}: {changed} post(s)."
    if unchanged:
        message += f" {unchanged} left alone: their status does not allow it."
    if skipped_unknown:
        message += (
            f" {skipped_unknown} skipped: their outcome is unknown; check each on "
            "its platform and retry it from its page."
        )
    if not is_htmx(request):
        flash(request, "ok", message)
        return _back(request, form.get("next"))
    response = _bulk_panel(request, {"done": message})
    # The rows update live too; this covers a page whose updates are paused.
    response.headers["HX-Trigger"] = "sq-refresh"
    return response


routes = [
    Route("/social-queue/posts/{id}/{action}", act, methods=["POST"], name="act"),
    Route(
        "/social-queue/platforms/{platform}/{action}",
        platform_action,
        methods=["POST"],
        name="platform",
    ),
    Route("/social-queue/bulk", bulk, methods=["POST"], name="bulk"),
]


def _explain(error: Exception, action: str, post: dict[str, Any]) -> str:
    """The refusal in an operator's words: `Already posted — nothing to
    cancel.`"""
    verb = VERB.get(action, action)
    if isinstance(error, InvalidInput):
        return f"Cannot {verb}: {error}."
    if getattr(error, "context", {}).get("reason") == "outcome_unchecked":
        return (
            "Not retried: the last attempt may have published this post. Check "
            f"it on {post['platform']} first, then confirm on its page."
        )
    status = post["status"]
    if status == "posted":
        return f"Already posted — nothing to {verb}."
    if status == "cancelled":
        return f"Already cancelled — nothing to {verb}."
    if status == "posting":
        return f"Being published right now — cannot {verb} it."
    return f"Cannot {verb}: the post is {status} now."


def _bulk_panel(
    request: Request, panel: dict[str, Any], status: int = 200
) -> HTMLResponse:
    context = {"bulk": panel, "csrf": request.session.get("csrf", "")}
    html = templating.render(request.app, "posts.html", context, "bulk_panel")
    if not is_htmx(request):
        # Without JavaScript the panel is a page of its own.
        html = templating.render(
            request.app,
            "bulk.html",
            {
                "csrf": context["csrf"],
                "panel": Markup(html),
                "user": request.state.user,
                "sandbox": None,
            },
        )
    return HTMLResponse(html, status_code=status)


def _flash_oob(request: Request, level: str, text: str) -> str:
    return templating.render(
        request.app,
        "posts.html",
        {"flashes": [[level, text]], "oob": True},
        "flash",
    )


def _back(request: Request, next_path: Any) -> RedirectResponse:
    target = str(next_path or "")
    if not target.startswith("/ops/") or target.startswith("//"):
        target = str(request.app.url_path_for("ops:posts"))
    return RedirectResponse(target, status_code=303)


def _short_id(post_id: UUID) -> str:
    return str(post_id)[:8]


def _uuid(raw: Any) -> UUID:
    try:
        return UUID(str(raw))
    except ValueError:
        raise HTTPException(404, "no such post") from None
