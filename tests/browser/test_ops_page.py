"""The ops page in Chromium, against a running web app and worker."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect
from psycopg.types.json import Jsonb

from tests.browser.conftest import SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FUTURE = "2030-01-01T09:00:00Z"


def insert(
    sql: psycopg.Connection,
    text: str,
    *,
    platform: str = "x",
    profile: str = "browser",
    at: datetime | str = FUTURE,
) -> str:
    row = sql.execute(
        "INSERT INTO social_queue (profile_id, platform, content, scheduled_at)"
        " VALUES (%s, %s, %s, %s) RETURNING id::text",
        (profile, platform, Jsonb({"text": text}), at),
    ).fetchone()
    assert row is not None
    return row[0]


def badge(page: Page, post_id: str) -> object:
    return page.locator(f"#post-{post_id} .badge")


def open_queue(page: Page, query: str = "") -> None:
    page.goto(f"/ops/social-queue{query}")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")


def test_the_page_without_login_redirects_to_login(
    browser: Browser, base_url: str
) -> None:
    context = browser.new_context(
        base_url=base_url, viewport={"width": 1366, "height": 768}
    )
    page = context.new_page()

    page.goto("/ops/social-queue?status=failed")

    expect(page).to_have_url(re.compile(r"/ops/login\?next="))
    expect(
        page.get_by_role("heading", name="Log in to the ops console")
    ).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "login.png")
    context.close()


def test_filters_narrow_the_table_and_live_in_the_url(
    page: Page, sql: psycopg.Connection
) -> None:
    on_x = insert(sql, "filter me on x", profile="filters")
    on_li = insert(sql, "filter me on linkedin", platform="linkedin", profile="filters")
    open_queue(page, "?profile=filters")

    page.select_option("#f-platform", "linkedin")

    expect(page.locator(f"#post-{on_x}")).to_have_count(0)
    expect(page.locator(f"#post-{on_li}")).to_be_visible()
    expect(page).to_have_url(re.compile(r"platform=linkedin"))
    page.reload()
    expect(page.locator(f"#post-{on_li}")).to_be_visible()
    expect(page.locator("#f-platform")).to_have_value("linkedin")


def test_pause_resume_retry_and_cancel_a_row(
    page: Page, sql: psycopg.Connection
) -> None:
    post_id = insert(sql, "steer me", platform="facebook", profile="steer")
    open_queue(page, "?profile=steer")
    row = page.locator(f"#post-{post_id}")
    # Retry makes the post due now: with Facebook paused, the running worker
    # leaves it alone and the row stays ours to cancel.
    page.get_by_role("button", name="Pause Facebook").click()
    expect(page.locator("#platforms")).to_contain_text("Facebook paused")

    row.get_by_role("button", name="pause").click()
    expect(badge(page, post_id)).to_have_text("paused")
    row.get_by_role("button", name="resume").click()
    expect(badge(page, post_id)).to_have_text("queued")
    row.get_by_role("button", name="pause").click()
    expect(badge(page, post_id)).to_have_text("paused")
    row.get_by_role("button", name="retry").click()
    expect(badge(page, post_id)).to_have_text("queued")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="cancel").click()
    expect(badge(page, post_id)).to_have_text("cancelled")
    page.get_by_role("button", name="Resume Facebook").click()
    expect(page.locator("#platforms")).not_to_contain_text("paused")

    actors = sql.execute(
        "SELECT DISTINCT actor FROM social_queue_events"
        " WHERE post_id = %s AND from_status IS NOT NULL",
        (post_id,),
    ).fetchall()
    assert actors == [("ops:ops",)]


def test_a_row_goes_from_queued_to_posted_while_the_worker_publishes(
    page: Page, sql: psycopg.Connection
) -> None:
    post_id = insert(
        sql,
        "published while you watch",
        profile="watch",
        at=datetime.now(UTC) + timedelta(seconds=3),
    )
    open_queue(page, "?profile=watch")
    page.evaluate("window.__notReloaded = true")
    expect(badge(page, post_id)).to_have_text("queued")

    expect(badge(page, post_id)).to_have_text("posted", timeout=20_000)

    assert page.evaluate("window.__notReloaded") is True
    expect(
        page.locator(f"#post-{post_id}").get_by_role("link", name="View on x ↗")
    ).to_be_visible()


def test_a_change_made_with_sql_by_another_system_shows_up(
    page: Page, sql: psycopg.Connection
) -> None:
    post_id = insert(sql, "changed behind your back", profile="othersystem")
    open_queue(page, "?profile=othersystem")
    expect(badge(page, post_id)).to_have_text("queued")

    sql.execute(
        "UPDATE social_queue SET status = 'paused', next_attempt_at = NULL"
        " WHERE id = %s",
        (post_id,),
    )

    expect(badge(page, post_id)).to_have_text("paused")


def test_updates_can_be_paused(page: Page, sql: psycopg.Connection) -> None:
    post_id = insert(sql, "hold still", profile="holdstill")
    open_queue(page, "?profile=holdstill")
    page.get_by_role("button", name="Pause updates").click()

    sql.execute("SELECT social_queue_pause(%s::uuid)", (post_id,))
    expect(page.locator("#live-status")).to_contain_text("1 update waiting")
    expect(badge(page, post_id)).to_have_text("queued")

    page.get_by_role("button", name="Resume updates").click()
    expect(badge(page, post_id)).to_have_text("paused")


def test_bulk_cancel_shows_the_count_before_confirming(
    page: Page, sql: psycopg.Connection
) -> None:
    ids = [insert(sql, f"bulk {n}", profile="bulk") for n in range(3)]
    open_queue(page, "?profile=bulk")

    page.check("#select-all")
    page.select_option("#bulk-action", "cancel")
    page.get_by_role("button", name="Apply to selected (3)").click()
    expect(page.locator("#bulk-panel")).to_contain_text("Cancel 3 posts selected?")
    assert all(badge(page, i).inner_text() == "queued" for i in ids)
    page.get_by_role("button", name="Yes, cancel 3").click()

    expect(page.locator("#bulk-panel")).to_contain_text("Cancelled: 3 post(s).")
    for post_id in ids:
        expect(badge(page, post_id)).to_have_text("cancelled")


def test_bulk_sends_the_selection_a_live_update_just_re_rendered(
    page: Page, sql: psycopg.Connection
) -> None:
    ids = [insert(sql, f"swap {n}", profile="swapped") for n in range(2)]
    open_queue(page, "?profile=swapped")
    page.check("#select-all")

    # What a live update leaves for a moment: the row replaced by a fresh
    # copy whose box htmx has not re-checked yet.
    page.evaluate(
        """(id) => {
            const row = document.getElementById("post-" + id);
            const copy = row.cloneNode(true);
            copy.querySelector('input[name="ids"]').checked = false;
            row.replaceWith(copy);
        }""",
        ids[0],
    )
    page.select_option("#bulk-action", "pause")
    page.get_by_role("button", name="Apply to selected (2)").click()

    expect(page.locator("#bulk-panel")).to_contain_text("Pause 2 posts selected?")


def test_a_script_in_post_text_shows_as_text(
    page: Page, sql: psycopg.Connection
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    post_id = insert(sql, "<script>alert(1)</script>", profile="xss")

    open_queue(page, "?profile=xss")

    expect(page.locator(f"#post-{post_id} .c-text a")).to_have_text(
        "<script>alert(1)</script>"
    )
    page.goto(f"/ops/social-queue/posts/{post_id}")
    expect(page.locator(".post-text")).to_have_text("<script>alert(1)</script>")
    assert dialogs == []


def test_a_post_without_csrf_token_is_refused(
    page: Page, sql: psycopg.Connection
) -> None:
    post_id = insert(sql, "do not cancel me", profile="csrf")

    response = page.request.post(f"/ops/social-queue/posts/{post_id}/cancel")

    assert response.status == 403
    status = sql.execute(
        "SELECT status::text FROM social_queue WHERE id = %s", (post_id,)
    ).fetchone()
    assert status == ("queued",)


def test_screenshots_of_the_main_states(page: Page, sql: psycopg.Connection) -> None:
    """The README's pictures: live data, a post, an unknown outcome."""
    now = datetime.now(UTC)
    samples = [
        ("acme", "x", "We're live! Read the launch notes https://acme.example/launch"),
        ("acme", "linkedin", "Hiring (remote): backend engineers who like Postgres"),
        ("globex", "facebook", "Doors open at 9 tomorrow — see you there."),
        ("globex", "x", "Maintenance window tonight 22:00-23:00 UTC."),
        ("initech", "linkedin", "Q4 results are out: thank you, customers."),
    ]
    for n, (profile, platform, text) in enumerate(samples):
        insert(
            sql,
            text,
            platform=platform,
            profile=profile,
            at=now + timedelta(seconds=1 + n),
        )
    for n, (profile, platform, text) in enumerate(samples[:3]):
        insert(
            sql,
            text,
            platform=platform,
            profile=profile,
            at=now + timedelta(hours=2 + n),
        )
    unknown = insert(
        sql,
        "Behind the scenes of launch day",
        platform="linkedin",
        profile="acme",
        at=now - timedelta(minutes=7),
    )
    retrying = insert(
        sql,
        "Thanks for 10k followers!",
        platform="facebook",
        profile="globex",
        at=now - timedelta(minutes=3),
    )
    with sql.transaction():
        # Inside one transaction the running worker never sees them due.
        sql.execute(
            "UPDATE social_queue SET next_attempt_at = now() - interval '1 second'"
            " WHERE id = ANY(%s::uuid[])",
            ([unknown, retrying],),
        )
        for post_id in (unknown, retrying):
            sql.execute("SELECT social_queue_claim(%s, 'web-1.worker')", (post_id,))
        sql.execute(
            "SELECT social_queue_fail(%s, 1, 'unknown_outcome',"
            " 'read timeout after the request was sent')",
            (unknown,),
        )
        sql.execute(
            "SELECT social_queue_fail(%s, 1, 'transient', 'HTTP 503 from the platform',"
            " 503, now() + interval '20 minutes')",
            (retrying,),
        )
    # The earlier tests' posts (all in 2030) would fill the first screen.
    sql.execute("DELETE FROM social_queue WHERE scheduled_at = %s", (FUTURE,))
    page.set_viewport_size({"width": 1366, "height": 768})
    open_queue(page)
    expect(page.locator(".badge.st-posted").first).to_be_visible(timeout=20_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=SCREENSHOTS / "queue.png")

    page.goto(f"/ops/social-queue/posts/{unknown}?confirm=retry")
    expect(
        page.get_by_role("heading", name=re.compile("may have published"))
    ).to_be_visible()
    page.screenshot(path=SCREENSHOTS / "unknown-outcome.png")

    posted = sql.execute(
        "SELECT id::text FROM social_queue WHERE status = 'posted'"
        " ORDER BY posted_at LIMIT 1"
    ).fetchone()
    assert posted is not None
    page.goto(f"/ops/social-queue/posts/{posted[0]}")
    page.screenshot(path=SCREENSHOTS / "post.png", full_page=True)
