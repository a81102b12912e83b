"""Operators' actions from the ops page: one post, many, a platform."""

from __future__ import annotations

import re

import httpx
import psycopg
import pytest

from tests.web.helpers import fail, insert_post, make_due, publish
from tests.web.ops_helpers import log_in, page_csrf

HTMX = {"HX-Request": "true"}


@pytest.fixture
async def client(ops: httpx.AsyncClient) -> httpx.AsyncClient:
    await log_in(ops, "ana", "ana's secret")
    ops.headers["X-CSRF-Token"] = await page_csrf(ops)
    return ops


def status_of(db: psycopg.Connection, post_id: str) -> str:
    row = db.execute(
        "SELECT status::text FROM social_queue WHERE id = %s", (post_id,)
    ).fetchone()
    assert row is not None
    return row[0]


def unknown_outcome(db: psycopg.Connection, post_id: str) -> None:
    make_due(db, post_id)
    db.execute("SELECT social_queue_claim(%s, 'w1')", (post_id,))
    db.execute(
        "SELECT social_queue_fail(%s, 1, 'unknown_outcome', 'timed out after send')",
        (post_id,),
    )


@pytest.mark.parametrize(
    ("setup", "action", "after"),
    [
        ("queued", "pause", "paused"),
        ("paused", "resume", "queued"),
        ("paused", "retry", "queued"),
        ("queued", "cancel", "cancelled"),
    ],
)
async def test_each_action_changes_the_row_and_swaps_it_in(
    client: httpx.AsyncClient,
    db: psycopg.Connection,
    setup: str,
    action: str,
    after: str,
) -> None:
    post_id = insert_post(db)
    if setup == "paused":
        db.execute("SELECT social_queue_pause(%s::uuid)", (post_id,))

    response = await client.post(
        f"/ops/social-queue/posts/{post_id}/{action}", headers=HTMX
    )

    assert response.status_code == 200
    assert response.text.lstrip().startswith(f'<tr id="post-{post_id}"')
    assert f'<span class="badge st-{after}">{after}</span>' in response.text
    assert 'hx-swap-oob="true"' in response.text  # the flash
    assert status_of(db, post_id) == after
    actor = db.execute(
        "SELECT actor FROM social_queue_events WHERE post_id = %s ORDER BY id DESC",
        (post_id,),
    ).fetchone()
    assert actor == ("ops:ana",)


async def test_an_illegal_action_is_a_409_that_says_why(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    post_id = insert_post(db)
    publish(db, post_id)

    response = await client.post(
        f"/ops/social-queue/posts/{post_id}/cancel", headers=HTMX
    )

    assert response.status_code == 409
    assert "Already posted — nothing to cancel." in response.text
    assert '<span class="badge st-posted">posted</span>' in response.text


async def test_a_plain_form_action_redirects_back_with_a_flash(
    ops: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    await log_in(ops)
    csrf = await page_csrf(ops)
    post_id = insert_post(db)

    response = await ops.post(
        f"/ops/social-queue/posts/{post_id}/pause",
        data={"csrf": csrf, "next": "/ops/social-queue?status=paused"},
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/ops/social-queue?status=paused"
    page = await ops.get(response.headers["location"])
    assert f"Post {post_id[:8]} paused." in page.text


async def test_an_unknown_outcome_is_not_retried_without_confirmation(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    post_id = insert_post(db)
    unknown_outcome(db, post_id)

    page = await client.get("/ops/social-queue")
    refused = await client.post(
        f"/ops/social-queue/posts/{post_id}/retry", headers=HTMX
    )
    confirmed = await client.post(
        f"/ops/social-queue/posts/{post_id}/retry",
        data={"checked": "1"},
        headers=HTMX,
    )

    assert "Check &amp; retry…" in page.text
    assert refused.status_code == 409 and "may have published" in refused.text
    assert confirmed.status_code == 200
    assert status_of(db, post_id) == "queued"


async def test_an_unknown_outcome_can_be_marked_as_posted(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    post_id = insert_post(db)
    unknown_outcome(db, post_id)

    detail = await client.get(f"/ops/social-queue/posts/{post_id}?confirm=retry")
    missing = await client.post(
        f"/ops/social-queue/posts/{post_id}/mark-posted", headers=HTMX
    )
    marked = await client.post(
        f"/ops/social-queue/posts/{post_id}/mark-posted",
        data={"remote_id": "179", "remote_url": "https://x.example/s/179"},
        headers=HTMX,
    )

    assert "The last attempt may have published this post" in detail.text
    assert missing.status_code == 422
    assert marked.status_code == 200
    assert status_of(db, post_id) == "posted"


async def test_bulk_asks_with_the_count_then_acts_on_the_selection(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    chosen = [insert_post(db) for _ in range(3)]
    other = insert_post(db)

    ask = await client.post(
        "/ops/social-queue/bulk",
        data={"action": "cancel", "scope": "selected", "ids": chosen},
        headers=HTMX,
    )
    assert "Cancel 3 posts</strong>" in ask.text
    assert [status_of(db, i) for i in chosen] == ["queued"] * 3

    done = await client.post(
        "/ops/social-queue/bulk",
        data={"action": "cancel", "scope": "selected", "ids": chosen, "confirm": "1"},
        headers=HTMX,
    )
    assert "Cancelled: 3 post(s)." in done.text
    assert done.headers["hx-trigger"] == "sq-refresh"
    assert [status_of(db, i) for i in chosen] == ["cancelled"] * 3
    assert status_of(db, other) == "queued"


async def test_bulk_on_all_matching_counts_the_filter_first(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    on_x = [insert_post(db, platform="x") for _ in range(4)]
    on_li = insert_post(db, platform="linkedin")
    publish(db, on_x[0])
    form = {"action": "pause", "scope": "matching", "platform": "x"}

    ask = await client.post("/ops/social-queue/bulk", data=form, headers=HTMX)
    assert "Pause 4 posts</strong>" in ask.text and "platform=x" in ask.text

    done = await client.post(
        "/ops/social-queue/bulk", data={**form, "confirm": "1"}, headers=HTMX
    )
    assert "Paused: 3 post(s). 1 left alone" in done.text
    assert [status_of(db, i) for i in on_x[1:]] == ["paused"] * 3
    assert status_of(db, on_li) == "queued"


async def test_bulk_retry_skips_posts_of_unknown_outcome(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    unknown, plain = insert_post(db), insert_post(db)
    unknown_outcome(db, unknown)
    fail(db, plain)

    done = await client.post(
        "/ops/social-queue/bulk",
        data={"action": "retry", "scope": "matching", "confirm": "1"},
        headers=HTMX,
    )

    assert "1 skipped: their outcome is unknown" in done.text
    assert status_of(db, unknown) == "failed" and status_of(db, plain) == "queued"


async def test_bulk_without_a_selection_says_so(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/ops/social-queue/bulk",
        data={"action": "cancel", "scope": "selected"},
        headers=HTMX,
    )
    assert response.status_code == 422 and "Select posts first." in response.text


async def test_a_platform_is_paused_and_resumed_from_the_top_bar(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    paused = await client.post("/ops/social-queue/platforms/x/pause", headers=HTMX)

    assert paused.status_code == 200
    assert re.search(r"X <em>paused</em>", paused.text)
    row = db.execute(
        "SELECT paused, paused_by FROM social_platforms WHERE platform = 'x'"
    ).fetchone()
    assert row == (True, "ops:ana")

    await client.post("/ops/social-queue/platforms/x/resume", headers=HTMX)
    assert db.execute(
        "SELECT paused FROM social_platforms WHERE platform = 'x'"
    ).fetchone() == (False,)


async def test_an_unknown_platform_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/ops/social-queue/platforms/myspace/pause")
    assert response.status_code == 404
