"""The live feed: one listener, rows rendered once, bounded queues."""

from __future__ import annotations

import asyncio

import psycopg
from starlette.applications import Starlette

from app.web.live import RELOAD, Changes, LiveFeed, Message, Subscription
from tests.web.helpers import insert_post


async def next_event(
    subscription: Subscription, name: str, containing: str = ""
) -> Message:
    """The next message of that name (and holding that text), skipping others:
    the INSERT's own notification may arrive after the page subscribed."""
    async with asyncio.timeout(5):
        while True:
            message = await subscription.next(5)
            if message and message.event == name and containing in message.data:
                return message


async def test_a_change_made_with_plain_sql_reaches_open_pages(
    ops_app: Starlette, db: psycopg.Connection
) -> None:
    feed: LiveFeed = ops_app.state.live_feed
    await asyncio.wait_for(feed.listening.wait(), 5)
    post_id = insert_post(db, text="watch me")

    async with feed.subscribe() as first, feed.subscribe() as second:
        await asyncio.to_thread(
            db.execute,
            "UPDATE social_queue SET status = 'paused', next_attempt_at = NULL"
            " WHERE id = %s",
            (post_id,),
        )
        row = await next_event(first, f"post-{post_id}", "st-paused")
        same = await next_event(second, f"post-{post_id}", "st-paused")
        counts = await next_event(first, "counts", "paused <b>1</b>")

    assert row is same  # rendered once, fanned out
    assert row.data.startswith(f'<tr id="post-{post_id}"')
    assert '<span class="badge st-paused">paused</span>' in row.data
    assert "paused <b>1</b>" in counts.data


async def test_a_burst_of_changes_to_one_post_is_rendered_once() -> None:
    renders: list[Changes] = []

    async def render(changes: Changes) -> list[Message]:
        renders.append(changes)
        return [Message(f"post-{i}", "row") for i in changes.post_ids]

    feed = LiveFeed("dbname=unused", render, row_interval=0.2)
    payload = '{"id": "6f1c9a52-52a4-4c2b-9d7e-3f9b1d2f0a11", "status": "posting"}'
    async with feed.subscribe() as subscription:
        task = asyncio.create_task(feed._publish())
        for _ in range(100):
            feed.note(payload)
        first = await subscription.next(2)
        task.cancel()

    assert first is not None and first.event.startswith("post-")
    assert len(renders) == 1 and len(renders[0].post_ids) == 1


def test_a_page_that_falls_behind_is_told_to_reload() -> None:
    subscription = Subscription(size=3)
    for n in range(5):
        subscription.offer(Message(f"post-{n}", "row"))

    # The backlog was dropped for one reload; what came after still counts.
    assert subscription.queue.get_nowait() == RELOAD
    assert subscription.queue.get_nowait() == Message("post-4", "row")
    assert subscription.queue.empty()


def test_messages_put_each_line_of_html_in_its_own_data_field() -> None:
    assert Message("counts", "<a>\n</a>").encode() == (
        "event: counts\ndata: <a>\ndata: </a>\n\n"
    )
