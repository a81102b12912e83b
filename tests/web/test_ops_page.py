"""The ops page as a browser without JavaScript sees it: the table, filters,
pagination, the post detail, escaping."""

from __future__ import annotations

import re

import httpx
import psycopg
import pytest

from tests.web.helpers import fail, insert_post, publish
from tests.web.ops_helpers import log_in


@pytest.fixture
async def client(ops: httpx.AsyncClient) -> httpx.AsyncClient:
    await log_in(ops)
    return ops


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr id="post-([0-9a-f-]{36})"', html)


async def test_the_table_shows_each_post_with_its_columns(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    post_id = insert_post(db, text="Launch day!", profile="acme", platform="x")

    page = await client.get("/ops/social-queue")

    assert page.status_code == 200
    assert row_ids(page.text) == [post_id]
    row = page.text[page.text.index(f'id="post-{post_id}"') :]
    row = row[: row.index("</tr>")]
    assert "Launch day!" in row and "acme" in row
    assert '<span class="badge st-queued">queued</span>' in row
    assert 'datetime="2030-01-01T09:00:00Z"' in row
    assert "2030-01-01 09:00 UTC" in row  # the text without JavaScript
    assert f'sse-swap="post-{post_id}"' in row
    assert ">pause</button>" in row and ">cancel</button>" in row


async def test_a_posted_row_links_to_the_post_on_its_platform(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    post_id = insert_post(db)
    publish(db, post_id)
    db.execute(
        "UPDATE social_queue SET remote_url = 'https://x.example/acme/status/1'"
        " WHERE id = %s",
        (post_id,),
    )

    page = await client.get("/ops/social-queue")

    assert 'href="https://x.example/acme/status/1"' in page.text
    assert "View on x" in page.text


async def test_post_text_and_errors_are_escaped(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    post_id = insert_post(db, text="<script>alert(1)</script>")
    fail(db, post_id, message='<img src=x onerror="alert(2)">')

    page = await client.get("/ops/social-queue")
    detail = await client.get(f"/ops/social-queue/posts/{post_id}")

    for html in (page.text, detail.text):
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<img src=x" not in html


async def test_the_counts_show_posts_per_status(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    insert_post(db)
    insert_post(db)
    fail(db, insert_post(db))

    page = await client.get("/ops/social-queue")

    assert re.search(r"queued <b>2</b>", page.text)
    assert re.search(r"failed <b>1</b>", page.text)
    assert re.search(r"all <b>3</b>", page.text)


async def test_filters_narrow_the_table(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    on_x = insert_post(db, platform="x", profile="acme", text="hello world")
    on_li = insert_post(db, platform="linkedin", profile="globex", text="jobs")
    failed = insert_post(db, platform="x", profile="acme", text="broken 50%_off")
    fail(db, failed)
    early = insert_post(db, at="2029-06-01T12:00:00Z", text="early")

    async def ids(query: str) -> set[str]:
        return set(row_ids((await client.get(f"/ops/social-queue?{query}")).text))

    assert await ids("platform=linkedin") == {on_li}
    assert await ids("profile=acme") == {on_x, failed}
    assert await ids("status=failed") == {failed}
    assert await ids("q=50%25_off") == {failed}
    assert await ids("q=HELLO") == {on_x}
    assert await ids("to=2029-06-01") == {early}
    assert await ids("from=2029-06-02") == {on_x, on_li, failed}
    assert await ids("status=nonsense") == {on_x, on_li, failed, early}
    # Dates no post can have filter nothing instead of failing the link.
    assert await ids("to=9999-12-31") == {on_x, on_li, failed, early}
    assert await ids("from=0001-01-01") == {on_x, on_li, failed, early}


async def test_an_htmx_filter_request_gets_only_the_table(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    insert_post(db)

    response = await client.get(
        "/ops/social-queue?status=queued",
        headers={"HX-Request": "true", "HX-Target": "posts"},
    )

    assert response.text.lstrip().startswith('<section id="posts"')
    assert "<html" not in response.text
    assert 'hx-get="/ops/social-queue?status=queued"' in response.text


async def test_pages_follow_one_another_by_cursor(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    for day in range(1, 61):
        insert_post(db, at=f"2030-01-{(day - 1) % 28 + 1:02d}T{day % 24:02d}:00:00Z")

    first = await client.get("/ops/social-queue?platform=x")
    older = re.search(r'href="([^"]+cursor=[^"]+)"', first.text)
    assert older is not None
    second = await client.get(older.group(1).replace("&amp;", "&"))

    first_ids, second_ids = row_ids(first.text), row_ids(second.text)
    assert len(first_ids) == 50 and len(second_ids) == 10
    assert not set(first_ids) & set(second_ids)
    assert "platform=x" in older.group(1)
    assert "« Newest" in second.text and "Older »" not in second.text


async def test_a_bad_cursor_shows_the_first_page(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    insert_post(db)
    page = await client.get("/ops/social-queue?cursor=garbage")
    assert page.status_code == 200 and len(row_ids(page.text)) == 1


async def test_the_detail_page_shows_content_media_attempts_and_events(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    post_id = insert_post(db, text="with a picture")
    db.execute(
        "UPDATE social_queue SET content = content || %s::jsonb WHERE id = %s",
        (
            '{"mediaUrls": ["https://cdn.example/a.jpg", "https://cdn.example/b.mp4"]}',
            post_id,
        ),
    )
    fail(db, post_id, message="text too long")

    page = await client.get(f"/ops/social-queue/posts/{post_id}")

    assert page.status_code == 200
    assert "with a picture" in page.text
    assert '<img src="https://cdn.example/a.jpg"' in page.text
    assert 'href="https://cdn.example/b.mp4"' in page.text
    assert '<img src="https://cdn.example/b.mp4"' not in page.text
    assert "text too long" in page.text and ">400<" in page.text  # attempt
    assert "w1" in page.text  # the worker
    assert "queued</span> → <span" in page.text  # an event's from → to


async def test_an_unknown_post_is_404(client: httpx.AsyncClient) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    assert (await client.get(f"/ops/social-queue/posts/{missing}")).status_code == 404
    assert (await client.get("/ops/social-queue/posts/nope")).status_code == 404


async def test_the_header_says_sandbox_when_adapters_point_at_this_machine(
    client: httpx.AsyncClient, ops_app: object, db: psycopg.Connection
) -> None:
    page = await client.get("/ops/social-queue")
    assert "SANDBOX" not in page.text

    ops_app.state.settings = type(ops_app.state.settings)(  # type: ignore[attr-defined]
        database_url=None, base_urls={"x": "http://127.0.0.1:8700/x"}
    )
    page = await client.get("/ops/social-queue")
    assert "SANDBOX" in page.text


async def test_static_files_are_served_without_a_login(ops: httpx.AsyncClient) -> None:
    for path in ("app.css", "app.js", "vendor/htmx.min.js", "vendor/sse.min.js"):
        assert (await ops.get(f"/static/{path}")).status_code == 200
