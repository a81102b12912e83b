"""Wakes the workers when the next post falls due.

procrastinate wakes its workers when a job is inserted, but a job deferred
for later is only found by polling. Polling every second would query the
database 86,400 times a day per worker to find nothing. Instead one process,
the timekeeper, knows the next due time (an index lookup), sleeps until then
or until a change on channel `social_queue` may have moved it, and at the due
moment sends procrastinate's own wake-up notification, which every worker
listens for. The timekeeper is elected with an advisory lock: each worker
runs one, all but one wait on the lock (a blocked query, not a poll), and
when the holder's connection ends the next one takes over.
"""

from __future__ import annotations

import json
import logging

import psycopg

logger = logging.getLogger(__name__)

# pg_advisory_lock key, distinct from the migration lock.
LOCK_KEY = 0x736F6369616C2074
WAKE_CHANNELS = ("procrastinate_any_queue_v1", "procrastinate_queue_v1#publish")
WAKE_PAYLOAD = json.dumps({"type": "job_inserted", "job_id": 0})
# Re-check at least this often, in case a change escaped the notifications
# (a row edited with session_replication_role = replica, say).
LONGEST_SLEEP = 60.0
# notifies(timeout=0) would wait without end; the shortest sleep is 1 ms.
SHORTEST_SLEEP = 0.001
WAITING_STATUSES = {"queued", "retrying"}


async def run(conninfo: str) -> None:
    """Be the timekeeper (once elected) until cancelled or disconnected."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        logger.info("event=timekeeper.elected")
        await conn.execute("LISTEN social_queue")

        while True:
            wait = await _seconds_to_next_due(conn)
            woken_by_change = False
            # Never wake early: a job not due yet by the database's clock is
            # not fetched, and the wake-up would be wasted.
            async for notice in conn.notifies(timeout=max(wait, SHORTEST_SLEEP)):
                if _may_move_due_time(notice.payload):
                    woken_by_change = True
                    break
            if woken_by_change:
                # A burst of changes needs one recomputation, not one each.
                async for _ in conn.notifies(timeout=SHORTEST_SLEEP):
                    pass
                continue
            if wait <= LONGEST_SLEEP:
                for channel in WAKE_CHANNELS:
                    await conn.execute(
                        "SELECT pg_notify(%s, %s)", (channel, WAKE_PAYLOAD)
                    )
                logger.debug("event=timekeeper.wake")


async def _seconds_to_next_due(conn: psycopg.AsyncConnection) -> float:
    """Seconds until the earliest future due time, by the database's clock."""
    cur = await conn.execute(
        """
        SELECT extract(epoch FROM min(next_attempt_at) - clock_timestamp())
          FROM social_queue
         WHERE status IN ('queued', 'retrying') AND next_attempt_at > clock_timestamp()
        """
    )
    row = await cur.fetchone()
    if row is None or row[0] is None:
        return LONGEST_SLEEP + 1
    return min(float(row[0]), LONGEST_SLEEP + 1)


def _may_move_due_time(payload: str) -> bool:
    """Whether a `social_queue` notification can change the next due time."""
    try:
        message = json.loads(payload)
    except ValueError:
        return True
    return message.get("status") in WAITING_STATUSES or "paused" in message
