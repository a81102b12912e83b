"""The procrastinate app and its tasks.

Jobs are wake-ups, not the record: the post in `social_queue` is. The
database defers one `publish_post` job per due-able post (see
sql/0002_internals.sql, social_queue__defer_publish), so a post written by any
system is published without Python on the writer's side, and a job that finds
nothing to do (the post was paused, cancelled or already claimed) just ends.
"""

from __future__ import annotations

import logging
from uuid import UUID

import procrastinate

from tasks.maintenance import prune, reap_and_reconcile, sweep
from tasks.publish import Publisher

logger = logging.getLogger(__name__)

# Opened with the worker's own pool (App.open_async(pool=...)).
app = procrastinate.App(connector=procrastinate.PsycopgConnector())


def publisher_of(context: procrastinate.JobContext) -> Publisher:
    publisher = (context.additional_context or {}).get("publisher")
    if not isinstance(publisher, Publisher):
        raise RuntimeError("the worker was started without a publisher")
    return publisher


@app.task(name="publish_post", queue="publish", pass_context=True)
async def publish_post(context: procrastinate.JobContext, post_id: str) -> str:
    """Publish one post if it may be published now (the job's only argument)."""
    return await publisher_of(context).publish(UUID(post_id))


@app.periodic(cron="* * * * * */15", periodic_id="reaper")
@app.task(name="reap_expired_leases", queue="maintenance", pass_context=True)
async def reap_expired_leases(context: procrastinate.JobContext, timestamp: int) -> int:
    """Settle posts whose worker was lost mid-attempt (every 15 s)."""
    return await reap_and_reconcile(publisher_of(context))


@app.periodic(cron="* * * * *", periodic_id="sweeper")
@app.task(name="sweep_lost_wakeups", queue="maintenance", pass_context=True)
async def sweep_lost_wakeups(context: procrastinate.JobContext, timestamp: int) -> int:
    """Re-defer jobs for due posts that lost theirs (every minute)."""
    return await sweep(publisher_of(context))


@app.periodic(cron="17 * * * *", periodic_id="pruner")
@app.task(name="prune_finished", queue="maintenance", pass_context=True)
async def prune_finished(context: procrastinate.JobContext, timestamp: int) -> int:
    """Delete posts and jobs past social_queue_settings.retention (hourly)."""
    return await prune(publisher_of(context))
