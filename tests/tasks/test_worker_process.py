"""The worker as it runs in production: real processes, signals, outages."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from app import embedded, migrations
from sandbox.core import Fault
from tests.conftest import Server, server_from_url
from tests.sql.helpers import enqueue, rows
from tests.tasks.conftest import Sandbox

pytestmark = pytest.mark.slow


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_worker(
    pg_server: Server, database_url: str, sandbox: Sandbox, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    started: list[WorkerProcess] = []

    def start(name: str = "w1", **env: str) -> WorkerProcess:
        log = tmp_path / f"{name}-{len(started)}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "app.cli",
                    "worker",
                    "--name",
                    name,
                    "--concurrency",
                    "10",
                ],
                env={
                    **os.environ,
                    **sandbox.env(),
                    "DATABASE_URL": pg_server.database_url(str(dbname)),
                    "SOCIAL_WORKER_POLL_MS": "1000",
                    **env,
                },
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(proc, log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.kill()
        worker.proc.wait(10)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def statuses(db: psycopg.Connection) -> dict[str, int]:
    return dict(
        db.execute(
            "SELECT status::text, count(*) FROM social_queue GROUP BY 1"
        ).fetchall()
    )


def all_posted(db: psycopg.Connection, total: int) -> Callable[[], bool]:
    return lambda: statuses(db).get("posted", 0) == total


def test_a_running_worker_publishes_posts_inserted_with_sql(
    db: psycopg.Connection, start_worker: Callable[..., WorkerProcess], sandbox: Sandbox
) -> None:
    worker = start_worker()
    for platform in ("x", "linkedin", "facebook"):
        db.execute(
            "INSERT INTO social_queue (profile_id, platform, content, scheduled_at) "
            "VALUES ('acme', %s, '{\"text\": \"plain sql\"}', now())",
            (platform,),
        )

    wait_for(all_posted(db, 3), 30, "three posts to be posted")

    attempts = rows(db, "SELECT outcome, worker FROM social_queue_attempts")
    assert [(a["outcome"], a["worker"]) for a in attempts] == [("published", "w1")] * 3
    log = worker.output()
    assert log.count("event=post.posted") == 3
    for secret in ("sandbox-x-token", "sandbox-li-token", "sandbox-fb-token"):
        assert secret not in log


def test_two_workers_publish_every_post_exactly_once(
    db: psycopg.Connection, start_worker: Callable[..., WorkerProcess], sandbox: Sandbox
) -> None:
    start_worker("w1")
    start_worker("w2")
    platforms = ["x"] * 80 + ["linkedin"] * 100 + ["facebook"] * 120
    with db.transaction():
        for n, platform in enumerate(platforms):
            enqueue(db, platform=platform, content={"text": f"post number {n}"})

    wait_for(all_posted(db, len(platforms)), 120, "all posts to be posted")

    published = [
        item
        for platform in ("x", "linkedin", "facebook")
        for item in sandbox.state.published_on(platform)
    ]
    assert len(published) == len(platforms)
    assert db.execute("SELECT max(attempts) FROM social_queue").fetchone()[0] == 1
    workers = {
        r["worker"] for r in rows(db, "SELECT worker FROM social_queue_attempts")
    }
    assert workers == {"w1", "w2"}


def test_a_worker_killed_mid_call_leaves_its_post_recoverable_not_doubled(
    db: psycopg.Connection, start_worker: Callable[..., WorkerProcess], sandbox: Sandbox
) -> None:
    db.execute("UPDATE social_queue_settings SET lease_duration = '10 seconds'")
    # X creates the post but the answer never arrives before the kill.
    sandbox.state.add_fault(
        Fault(platform="x", path="^/2/tweets$", method="POST", delay=60, after=True)
    )
    doomed = start_worker("doomed")
    post_id = enqueue(db, content={"text": "mid-call"})
    wait_for(lambda: sandbox.creates("x") == 1, 20, "the create to reach X")

    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(5)
    start_worker("rescuer")

    def status() -> str:
        return rows(db, "SELECT status FROM social_queue WHERE id = %s", post_id)[0][
            "status"
        ]

    # Reaped as an unknown outcome first, then reconciled: X can be searched,
    # so the reaper proves the post went out.
    wait_for(lambda: status() == "posted", 60, "the lost lease to be reconciled")
    row = rows(db, "SELECT * FROM social_queue WHERE id = %s", post_id)[0]
    events = rows(
        db,
        "SELECT action, to_status::text FROM social_queue_events WHERE post_id = %s "
        "ORDER BY id",
        post_id,
    )
    assert [(e["action"], e["to_status"]) for e in events][-2:] == [
        ("reap", "failed"),
        ("mark_posted", "posted"),
    ]
    assert row["remote_id"] == sandbox.state.published_on("x")[0]["id"]
    assert sandbox.creates("x") == 1
    outcomes = [
        r["outcome"] for r in rows(db, "SELECT outcome FROM social_queue_attempts")
    ]
    assert outcomes == ["lease_expired"]


def test_sigterm_lets_the_call_in_flight_finish(
    db: psycopg.Connection, start_worker: Callable[..., WorkerProcess], sandbox: Sandbox
) -> None:
    sandbox.state.add_fault(Fault(platform="linkedin", path="/rest/posts$", delay=3))
    worker = start_worker()
    post_id = enqueue(db, platform="linkedin", content={"text": "finish me"})
    wait_for(
        lambda: (
            len(sandbox.state.requests_for("linkedin", "POST", "/rest/posts$")) == 1
        ),
        20,
        "the create to reach LinkedIn",
    )

    stopped_at = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(30) == 0
    took = time.monotonic() - stopped_at

    assert took < 25
    row = rows(db, "SELECT status FROM social_queue WHERE id = %s", post_id)[0]
    assert row["status"] == "posted"
    assert "event=worker.stopped" in worker.output()


def test_a_worker_survives_its_connections_being_cut(
    db: psycopg.Connection, start_worker: Callable[..., WorkerProcess], sandbox: Sandbox
) -> None:
    start_worker()
    enqueue(db, content={"text": "before"})
    wait_for(all_posted(db, 1), 30, "the first post")

    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    for n in range(5):
        enqueue(db, platform="facebook", content={"text": f"after {n}"})

    wait_for(all_posted(db, 6), 60, "posts enqueued after the cut")


@pytest.fixture
def restartable_server() -> Iterator[Server]:
    """An embedded PostgreSQL of this test's own, which it may restart
    whichever server the rest of the suite runs on."""
    root = Path(tempfile.mkdtemp(prefix="sq-restart-", dir="/tmp"))
    root.chmod(0o755)
    server = embedded.start(root)
    try:
        url = embedded.database_url(server)
        migrations.migrate(url)
        yield server_from_url(url, pgdata=root / "pgdata")
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def test_a_worker_carries_on_after_postgresql_restarts(
    restartable_server: Server,
    start_worker: Callable[..., WorkerProcess],
    sandbox: Sandbox,
) -> None:
    database = restartable_server.database_url("postgres")
    worker = start_worker(DATABASE_URL=database)
    with psycopg.connect(database, autocommit=True) as db:
        enqueue(db, content={"text": "before restart"})
        wait_for(all_posted(db, 1), 30, "the first post")

    restartable_server.restart()

    with psycopg.connect(database, autocommit=True) as db:
        for n in range(5):
            enqueue(db, platform="facebook", content={"text": f"after restart {n}"})
        wait_for(all_posted(db, 6), 60, "posts enqueued after the restart")
    assert worker.proc.poll() is None
    assert "event=worker.restarting" in worker.output()


def test_posts_are_claimed_on_time_without_polling(
    db: psycopg.Connection, start_worker: Callable[..., WorkerProcess], sandbox: Sandbox
) -> None:
    # A 60 s poll: only the timekeeper can make these punctual.
    start_worker(SOCIAL_WORKER_POLL_MS="60000")
    time.sleep(1.5)
    for delay in (2, 3, 4):
        db.execute(
            "SELECT social_queue_enqueue('acme', 'facebook', %s, "
            "now() + make_interval(secs => %s))",
            (psycopg.types.json.Jsonb({"text": f"in {delay} s"}), delay),
        )

    wait_for(all_posted(db, 3), 30, "the scheduled posts")
    lateness = [
        r["late"]
        for r in rows(
            db,
            "SELECT extract(epoch FROM a.started_at - q.scheduled_at)::float AS late "
            "FROM social_queue_attempts a JOIN social_queue q ON q.id = a.post_id",
        )
    ]
    assert all(0 <= late < 1.0 for late in lateness), lateness
