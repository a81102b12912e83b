"""Live updates for ops pages: one `LISTEN social_queue` per web process.

The database notifies channel `social_queue` on every status change of a
post (`{"id", "status", "platform", "profile_id"}`) and on every platform
pause or resume (`{"platform", "paused"}`). One `LiveFeed` per process holds
the only listening connection, gathers the notifications of a short window,
renders each changed row once, and hands the same HTML to every open page
through a bounded queue per page. So a hundred open pages cost the database
what one costs, and a burst of a thousand changes to one post costs one
render.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from uuid import UUID

import psycopg

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """One server-sent event: its name and its HTML."""

    event: str
    data: str

    def encode(self) -> str:
        """The event on the wire; every line of data gets its own `data:`.

        >>> Message("counts", "<a>\\n</a>").encode()
        'event: counts\\ndata: <a>\\ndata: </a>\\n\\n'
        """
        lines = "".join(f"data: {line}\n" for line in self.data.split("\n"))
        return f"event: {self.event}\n{lines}\n"


# Tells a page it missed updates (it fell behind, or the listener lost the
# database for a while): it re-fetches its table.
RELOAD = Message("reload", "reload")
_CLOSE = Message("close", "")


@dataclass
class Changes:
    """What changed since the last render."""

    post_ids: set[UUID] = field(default_factory=set)
    counts: bool = False
    platforms: bool = False


Renderer = Callable[[Changes], Awaitable[list[Message]]]


class Subscription:
    """One open page's queue of messages, bounded so a slow page cannot make
    the process hold an unbounded backlog for it."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Message] = asyncio.Queue(size)

    def offer(self, message: Message) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # What it would have seen is lost: drop the backlog, ask it to
            # reload instead, which costs one query rather than N messages.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RELOAD)

    async def next(self, quiet_seconds: float) -> Message | None:
        """The next message; None after `quiet_seconds` without one."""
        try:
            async with asyncio.timeout(quiet_seconds):
                return await self.queue.get()
        except TimeoutError:
            return None


class LiveFeed:
    """The process's listener on channel `social_queue` and its fan-out."""

    def __init__(
        self,
        conninfo: str,
        render: Renderer,
        *,
        row_interval: float = 0.25,
        counts_interval: float = 1.0,
        queue_size: int = 200,
    ) -> None:
        self.conninfo = conninfo
        self.render = render
        self.row_interval = row_interval
        self.counts_interval = counts_interval
        self.queue_size = queue_size
        self.listening = asyncio.Event()
        self._subscriptions: set[Subscription] = set()
        self._changes = Changes()
        self._dirty = asyncio.Event()
        self._counts_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen(), name="live-listen"),
            asyncio.create_task(self._publish(), name="live-publish"),
        ]

    async def stop(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.offer(_CLOSE)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        subscription = Subscription(self.queue_size)
        self._subscriptions.add(subscription)
        logger.debug("event=live.subscribed pages=%d", len(self._subscriptions))
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def note(self, payload: str) -> None:
        """Record one notification's change for the next render."""
        try:
            body = json.loads(payload)
            post_id = UUID(body["id"]) if "id" in body else None
        except (ValueError, TypeError, KeyError):
            logger.warning("event=live.bad_payload")
            return
        if post_id is not None:
            self._changes.post_ids.add(post_id)
            self._changes.counts = True
        if "paused" in body:
            self._changes.platforms = True
        self._dirty.set()

    def broadcast(self, message: Message) -> None:
        for subscription in list(self._subscriptions):
            subscription.offer(message)

    async def _listen(self) -> None:
        delay, connected_before = 0.5, False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True
                ) as conn:
                    await conn.execute("LISTEN social_queue")
                    logger.info("event=live.listening")
                    self.listening.set()
                    if connected_before:
                        # Notifications sent while we were away are gone.
                        self.broadcast(RELOAD)
                    connected_before, delay = True, 0.5
                    async for notify in conn.notifies():
                        self.note(notify.payload)
            except psycopg.Error as error:
                self.listening.clear()
                logger.warning(
                    "event=live.disconnected error=%s retry_in=%.1f",
                    type(error).__name__,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _publish(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if not self._subscriptions:
                # Nobody is watching: render nothing; a new page reads fresh.
                self._changes = Changes()
                continue

            changes, self._changes = self._changes, Changes()
            # Counts scan the table: at most once per counts_interval.
            wait = self._counts_at + self.counts_interval - time.monotonic()
            if changes.counts and wait > 0:
                self._changes.counts, changes.counts = True, False
                self._dirty.set()
            if changes.counts:
                self._counts_at = time.monotonic()

            try:
                messages = await self.render(changes)
            except (psycopg.Error, OSError) as error:
                logger.warning(
                    "event=live.render_failed error=%s", type(error).__name__
                )
                self._merge(changes)
                await asyncio.sleep(1.0)
                continue
            except Exception:
                # A bug in rendering: these changes would fail again, so they
                # are dropped (pages catch up on reload); the stream goes on.
                logger.exception("event=live.render_crashed")
                continue
            for message in messages:
                self.broadcast(message)
            # Whatever arrives meanwhile is rendered once, in the next batch.
            await asyncio.sleep(self.row_interval)

    def _merge(self, changes: Changes) -> None:
        self._changes.post_ids |= changes.post_ids
        self._changes.counts |= changes.counts
        self._changes.platforms |= changes.platforms
        self._dirty.set()
