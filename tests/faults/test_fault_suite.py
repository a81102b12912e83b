"""The fault suite: thousands of posts published while everything goes wrong.

Two real worker processes publish 2,000 posts (some enqueued with SQL, some
delivered as signed iCadence webhooks through the real web app, duplicated
and out of order) to the sandbox's six fake platforms, while the suite
SIGKILLs workers at random moments (starting a new one each time), restarts
PostgreSQL (or cuts every connection on a server that is not ours), and
makes the platforms answer with 5xx storms, 429 bursts and answers that come
after the client's timeout, some after the post was created. Then it checks
the promises of the design: no post lost, none published twice, none stuck
in `posting`, and every post's state agrees with its events, its attempts and
what the fake platforms actually published.

Runs in the normal test run; deselect with `-m "not faults"`. Bounded to a
few minutes on two cores: a 10 s lease and a 1 to 5 s backoff let lost
claims and retries settle quickly.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from app.config import Settings
from app.web import create_app
from app.web.settings import WebSettings, parse_api_tokens
from app.web.signature import sign
from sandbox.app import ALL_FAKES
from sandbox.core import FakePlatform, Fault, SandboxState, serve_in_thread
from sandbox.core import create_app as sandbox_app
from tests.conftest import Server
from tests.tasks.conftest import Sandbox

pytestmark = [pytest.mark.faults, pytest.mark.slow]

SEED = int(os.environ.get("SOCIAL_QUEUE_FAULT_SEED", "7"))
SECRET = "whsec_faults_0123456789abcdef"
# How many posts go to each platform, and how many of them come by webhook.
MIX = {
    "x": 500,
    "linkedin": 450,
    "facebook": 550,
    "instagram": 200,
    "tiktok": 100,
    "youtube": 200,
}
WEBHOOK_POSTS = 300
PROFILES = 25
CHAOS_SECONDS = 45.0
SETTLE_SECONDS = 300.0
# The fakes' quotas, lifted: the suite is about faults, not daily limits.
UNLIMITED = {
    "tweet_limit": 10**9,
    "daily_post_limit": 10**9,
    "calls_per_hour": 10**9,
    "quota_total": 10**9,
    "init_limit_per_minute": 10**9,
    "daily_uploads": 10**9,
}
CREATE_PATHS = {
    "x": "^/2/tweets$",
    "linkedin": "/rest/posts$",
    "facebook": "/feed$",
}


def unlimited(fake: type[FakePlatform]) -> type[FakePlatform]:
    limits = {key: value for key, value in UNLIMITED.items() if hasattr(fake, key)}
    return type(fake.__name__, (fake,), limits)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    # A little background noise on every create request: each fake answers
    # its own platform's 5xx or 429 (see sandbox/core.py, failure_rate).
    state = SandboxState(failure_rate=0.02, seed=SEED)
    fakes = [unlimited(fake) for fake in ALL_FAKES]
    with serve_in_thread(sandbox_app(fakes, state)) as url:
        yield Sandbox(url, state)


@dataclass
class Workers:
    """Real `social-queue worker` processes, killed and replaced at will."""

    env: dict[str, str]
    logs: Path
    live: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: int = 0
    killed: int = 0

    def start(self) -> None:
        self.started += 1
        name = f"fw{self.started}"
        with (self.logs / f"{name}.log").open("wb") as sink:
            self.live.append(
                subprocess.Popen(
                    [sys.executable, "-m", "app.cli", "worker", "--name", name],
                    env=self.env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            )

    def kill_one(self, rng: random.Random) -> None:
        victim = self.live.pop(rng.randrange(len(self.live)))
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        self.killed += 1
        self.start()

    def stop(self) -> None:
        for proc in self.live:
            proc.send_signal(signal.SIGTERM)
        for proc in self.live:
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.live.clear()


@pytest.fixture
def workers(
    pg_server: Server, database_url: str, sandbox: Sandbox, tmp_path: Path
) -> Iterator[Workers]:
    dbname = str(psycopg.conninfo.conninfo_to_dict(database_url)["dbname"])
    env = {
        **os.environ,
        **sandbox.env(),
        "DATABASE_URL": pg_server.database_url(dbname),
        "SOCIAL_WORKER_POLL_MS": "1000",
        "SOCIAL_WORKER_CONCURRENCY": "20",
        "LOG_LEVEL": "WARNING",
    }
    pool = Workers(env, tmp_path)
    try:
        yield pool
    finally:
        for proc in pool.live:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture
async def web(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The real web app in this process, as iCadence reaches it."""
    settings = WebSettings(
        webhook_secrets=(SECRET,),
        api_tokens=parse_api_tokens("faults:faults-token-0123456789"),
        webhook_max_body_bytes=64 * 1024,
        pool_max_size=8,
    )
    app = create_app(Settings(database_url=database_url), settings, environ={})
    async with app.router.lifespan_context(app):
        # A failing request (the database restarting) is a 500, as uvicorn
        # would answer, not an exception in the sender.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://sq") as c:
            yield c


@dataclass
class Planned:
    """One post the suite sends, identified by a token in its text."""

    token: str
    platform: str
    profile: str
    content: dict[str, Any]
    at: datetime


def plan(run: str, root: str, rng: random.Random) -> list[Planned]:
    start = datetime.now(UTC) + timedelta(seconds=3)
    posts = []
    for platform, count in MIX.items():
        for _ in range(count):
            token = f"fs{run}x{len(posts)}"
            content: dict[str, Any] = {"text": f"{token} fault suite on {platform}"}
            if platform == "instagram":
                content["mediaUrls"] = [f"{root}/media/{token}.jpg?bytes=4096"]
            elif platform in ("tiktok", "youtube"):
                content["mediaUrls"] = [f"{root}/media/{token}.mp4?bytes=65536"]
            at = start + timedelta(seconds=rng.uniform(0, CHAOS_SECONDS - 10))
            profile = f"profile-{rng.randrange(PROFILES)}"
            posts.append(Planned(token, platform, profile, content, at))
    rng.shuffle(posts)
    return posts


def enqueue_with_sql(url: str, posts: list[Planned]) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        return [
            str(
                conn.execute(
                    "SELECT social_queue_enqueue(%s, %s, %s, %s)",
                    (p.profile, p.platform, Jsonb(p.content), p.at),
                ).fetchone()[0]  # type: ignore[index]
            )
            for p in posts
        ]


def deliveries(posts: list[Planned], rng: random.Random) -> list[dict[str, Any]]:
    """Each post's schedule.posted, plus duplicates and events out of order."""
    events: list[dict[str, Any]] = []
    for n, p in enumerate(posts):
        data = {
            "scheduleId": f"sch_{p.token}",
            "profileId": p.profile,
            "platform": p.platform,
            "scheduledAt": p.at.isoformat(),
            "content": p.content,
        }
        posted = {"id": f"evt_{p.token}", "type": "schedule.posted", "data": data}
        ref = {"scheduleId": data["scheduleId"], "profileId": p.profile}
        if n % 10 == 0:
            # An update that overtakes the post it updates: nothing to do.
            later = (p.at + timedelta(seconds=1)).isoformat()
            events.append(
                {
                    "id": f"evt_{p.token}_early_update",
                    "type": "schedule.updated",
                    "data": {**ref, "scheduledAt": later},
                }
            )
        events.append(posted)
        if n % 5 == 0:
            events.append(posted)  # the same delivery again: replayed answer
        if n % 7 == 0:
            events.append({**posted, "id": f"evt_{p.token}_again"})  # new event id
        if n % 15 == 0:
            events.append(
                {
                    "id": f"evt_{p.token}_deleted",
                    "type": "schedule.deleted",
                    "data": {**ref, "scheduledAt": p.at.isoformat()},
                }
            )
    # Deliveries run concurrently, so neighbours also race each other.
    rng.shuffle(events)
    return events


async def deliver_all(
    client: httpx.AsyncClient, events: list[dict[str, Any]]
) -> dict[str, Any]:
    """Send every event as iCadence does: signed, retried until answered 2xx."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for event in events:
        queue.put_nowait(event)
    answers: list[tuple[dict[str, Any], dict[str, Any]]] = []
    retries = 0
    senders = 8
    pace = senders * (CHAOS_SECONDS - 10) / max(len(events), 1)

    async def sender() -> None:
        nonlocal retries
        while not queue.empty():
            event = queue.get_nowait()
            body = json.dumps(event).encode()
            for _ in range(60):
                t = int(time.time())
                try:
                    response = await client.post(
                        "/webhooks/icadence",
                        content=body,
                        headers={
                            "X-ICadence-Signature": f"t={t},v1={sign(SECRET, t, body)}",
                            "Content-Type": "application/json",
                        },
                    )
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code == 200:
                    answers.append((event, response.json()))
                    # Paced so that deliveries span the faults, the database
                    # restart included.
                    await asyncio.sleep(pace)
                    break
                assert response is None or response.status_code >= 500, response.text
                retries += 1
                await asyncio.sleep(0.5)
            else:
                raise AssertionError(f"event {event['id']} was never accepted")

    await asyncio.gather(*(sender() for _ in range(senders)))
    return {"answers": answers, "retries": retries}


async def chaos(
    workers: Workers,
    sandbox: Sandbox,
    pg_server: Server,
    database_url: str,
    rng: random.Random,
) -> list[str]:
    """The faults, on a timeline over CHAOS_SECONDS; returns what was done."""
    done: list[str] = []
    started = time.monotonic()

    async def at(second: float) -> None:
        await asyncio.sleep(max(0.0, started + second - time.monotonic()))

    async def kills() -> None:
        elapsed = 4.0
        while elapsed < CHAOS_SECONDS - 5:
            await at(elapsed)
            workers.kill_one(rng)
            done.append(f"{time.monotonic() - started:5.1f}s SIGKILL a worker")
            elapsed += rng.uniform(4.0, 8.0)

    async def platforms() -> None:
        await at(6)
        for platform, path in CREATE_PATHS.items():
            sandbox.state.add_fault(
                Fault(platform=platform, path=path, method="POST", status=503, times=40)
            )
        done.append(" 6.0s 5xx storm: 40 x 503 on x, linkedin, facebook")

        await at(12)
        reset = str(int(time.time()) + 2)
        sandbox.state.add_fault(
            Fault(
                platform="x",
                path=CREATE_PATHS["x"],
                method="POST",
                status=429,
                body={"title": "Too Many Requests", "status": 429},
                headers={"x-rate-limit-remaining": "0", "x-rate-limit-reset": reset},
                times=30,
            )
        )
        done.append("12.0s 429 burst: 30 x 429 on x")

        await at(16)
        # Created, then answered after the worker's 30 s read timeout: the
        # outcome is unknown and only reconciliation may settle it.
        for platform in ("x", "facebook"):
            sandbox.state.add_fault(
                Fault(
                    platform=platform,
                    path=CREATE_PATHS[platform],
                    method="POST",
                    delay=32,
                    after=True,
                    times=3,
                )
            )
        # Not created, and answered too late as well.
        sandbox.state.add_fault(
            Fault(
                platform="linkedin",
                path=CREATE_PATHS["linkedin"],
                method="POST",
                delay=32,
                times=2,
            )
        )
        done.append("16.0s slow answers past the timeout: x, facebook (after), li")

    async def database() -> None:
        await at(22)
        if pg_server.embedded_pgdata is not None:
            await asyncio.to_thread(pg_server.restart)
            done.append("22.0s PostgreSQL restarted")
        else:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            done.append("22.0s every connection cut (server not ours to restart)")

    await asyncio.gather(kills(), platforms(), database())
    return done


def unsettled(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM social_queue "
                "WHERE status IN ('queued', 'retrying', 'posting')"
            ).fetchone()
    except psycopg.OperationalError:
        return -1
    return int(row[0]) if row else -1


def publishes_by_token(state: SandboxState, run: str) -> collections.Counter[str]:
    """How many times each post went out, counted at the fakes."""
    pattern = re.compile(rf"fs{run}x\d+")
    counts: collections.Counter[str] = collections.Counter()
    for platform in MIX:
        for item in state.published_on(platform):
            counts.update(set(pattern.findall(json.dumps(item))))
    return counts


def history_problems(
    post: dict[str, Any],
    events: list[dict[str, Any]],
    attempts: list[dict[str, Any]],
    published: int,
) -> list[str]:
    """What in one post's record contradicts another part of it."""
    problems = []
    if published > 1:
        problems.append(f"published {published} times")
    if not events or events[0]["from_status"] is not None:
        problems.append("no creation event")
    for before, after in itertools.pairwise(events):
        if after["from_status"] != before["to_status"]:
            problems.append(f"event chain broken at {after['action']}")
    if events and events[-1]["to_status"] != post["status"]:
        problems.append(f"last event says {events[-1]['to_status']}")
    if [a["number"] for a in attempts] != list(range(1, post["attempts"] + 1)):
        problems.append("attempt rows do not match the attempt count")
    claims = sum(1 for e in events if e["action"] == "claim")
    if claims != post["attempts"]:
        problems.append(f"{claims} claims for {post['attempts']} attempts")
    if any(a["outcome"] is None for a in attempts):
        problems.append("an attempt never finished")
    wins = sum(1 for a in attempts if a["outcome"] == "published")
    unknown = any(a["error_kind"] == "unknown_outcome" for a in attempts)

    status = post["status"]
    if status == "posted":
        if published != 1:
            problems.append(f"posted but published {published} times")
        reconciled = any(e["action"] == "mark_posted" for e in events)
        if wins != 1 and not (unknown and reconciled):
            problems.append("posted without a published attempt or reconciliation")
    elif wins:
        problems.append(f"{status} with a published attempt")
    elif published and not unknown:
        problems.append(f"{status} but live at the platform, with no unknown outcome")
    if status == "failed" and post["error_kind"] == "unknown_outcome" and not unknown:
        problems.append("unknown outcome without such an attempt")
    return problems


async def test_no_post_is_lost_or_doubled_under_faults(
    pg_server: Server,
    database_url: str,
    sandbox: Sandbox,
    workers: Workers,
    web: httpx.AsyncClient,
) -> None:
    rng = random.Random(SEED)
    run = uuid.uuid4().hex[:6]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE social_queue_settings SET lease_duration = '10 seconds', "
            "backoff_base = '1 second', backoff_cap = '5 seconds'"
        )
    posts = plan(run, sandbox.url, rng)
    by_webhook = [p for p in posts if p.platform in CREATE_PATHS][:WEBHOOK_POSTS]
    webhook_tokens = {p.token for p in by_webhook}
    by_sql = [p for p in posts if p.token not in webhook_tokens]

    workers.start()
    workers.start()
    accepted = set(enqueue_with_sql(database_url, by_sql))
    started = time.monotonic()
    delivered, done = await asyncio.gather(
        deliver_all(web, deliveries(by_webhook, rng)),
        chaos(workers, sandbox, pg_server, database_url, rng),
    )
    for event, answer in delivered["answers"]:
        if event["type"] == "schedule.posted":
            accepted.add(answer["post"]["id"])

    deadline = time.monotonic() + SETTLE_SECONDS
    while (left := await asyncio.to_thread(unsettled, database_url)) != 0:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    settled_after = time.monotonic() - started
    await asyncio.to_thread(workers.stop)

    with (
        psycopg.connect(database_url) as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        rows = cur.execute("SELECT * FROM social_queue").fetchall()
        events = collections.defaultdict(list)
        for e in cur.execute(
            "SELECT post_id, action, from_status::text, to_status::text "
            "FROM social_queue_events ORDER BY id"
        ):
            events[e["post_id"]].append(e)
        attempts = collections.defaultdict(list)
        for a in cur.execute(
            "SELECT post_id, number, outcome, error_kind::text "
            "FROM social_queue_attempts ORDER BY number"
        ):
            attempts[a["post_id"]].append(a)
        receipts = cur.execute(
            "SELECT count(*) AS n FROM social_queue_webhook_events "
            "WHERE response_status = 200"
        ).fetchone()

    counts = publishes_by_token(sandbox.state, run)
    token_of = re.compile(rf"fs{run}x\d+")
    existing = {str(r["id"]) for r in rows}
    statuses = collections.Counter(str(r["status"]) for r in rows)
    kinds = collections.Counter(
        str(r["error_kind"]) for r in rows if r["status"] == "failed"
    )
    problems: dict[str, list[str]] = {}
    for r in rows:
        match = token_of.search(r["content"]["text"])
        assert match, r["content"]
        found = history_problems(
            r, events[r["id"]], attempts[r["id"]], counts[match.group()]
        )
        if found:
            problems[match.group()] = found
    lost = accepted - existing
    twice = [t for t, n in counts.items() if n > 1]
    stuck = statuses.get("posting", 0)
    waiting = statuses.get("queued", 0) + statuses.get("retrying", 0)
    distinct_events = {e["id"] for e, _ in delivered["answers"]}

    print()
    print(f"fault suite, seed {SEED}, run {run}: {len(posts)} posts")
    for line in done:
        print(f"  {line}")
    print(
        f"  workers started {workers.started}, killed {workers.killed}; "
        f"webhook deliveries {len(delivered['answers'])} "
        f"({len(distinct_events)} distinct events, {delivered['retries']} retried)"
    )
    print(f"  settled after {settled_after:.0f} s; statuses {dict(statuses)}")
    print(f"  failed by kind {dict(kinds)}")
    print(f"  posts lost: {len(lost)}")
    print(f"  posts published twice: {len(twice)}")
    print(f"  posts stuck in posting: {stuck}")
    print(f"  posts still waiting: {waiting}")
    print(f"  posts whose state contradicts their history: {len(problems)}")
    for token, found in list(problems.items())[:10]:
        print(f"    {token}: {'; '.join(found)}")

    assert len(rows) == len(posts), "a post was created twice or not at all"
    assert not lost
    assert not twice
    assert stuck == 0
    assert waiting == 0, f"{left} posts had not settled after {SETTLE_SECONDS} s"
    assert not problems
    assert receipts is not None and receipts["n"] == len(distinct_events)
    # Enough went out that the faults were survived, not merely avoided.
    assert statuses["posted"] > len(posts) * 0.9
