"""The `social-queue` command."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from app import account_command, logs, migrations, send_event
from app.config import Settings
from app.database import database_url
from app.exceptions import SocialQueueError

logger = logging.getLogger(__name__)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    started = time.monotonic()
    applied = migrations.migrate(database_url(settings))
    logger.info(
        "event=migrate.done applied=%d ms=%d",
        len(applied),
        (time.monotonic() - started) * 1000,
    )
    print(f"{len(applied)} migration(s) applied; the database is up to date.")
    return 0


def cmd_web(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from app.web import create_app

    if not settings.database_url:
        # The embedded database has no release phase to migrate it.
        migrations.migrate(database_url(settings))
    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host,
        port=settings.port,
        # Our middleware logs each request in logfmt; uvicorn's own access
        # line would say it twice, and its log config would replace ours.
        access_log=False,
        log_config=None,
        # Heroku sends SIGTERM and kills 30 s later.
        timeout_graceful_shutdown=25,
    )
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio
    import os

    from tasks.worker import WorkerOptions, run

    conninfo = database_url(settings)
    if not settings.database_url:
        # The embedded database is ours to keep current; a hosted one is
        # migrated by the release phase.
        migrations.migrate(conninfo)
    options = WorkerOptions(
        conninfo=conninfo,
        concurrency=args.concurrency or settings.worker_concurrency,
        poll_seconds=settings.worker_poll_ms / 1000,
        grace_seconds=settings.worker_grace_seconds,
        name=args.name or "",
        base_urls=settings.base_urls,
    )
    asyncio.run(run(options, os.environ))
    return 0


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    from app import dev

    return dev.run(
        settings,
        demo=args.demo,
        sandbox_port=args.sandbox_port,
        failure_rate=args.failure_rate,
    )


def cmd_hash_password(settings: Settings, args: argparse.Namespace) -> int:
    """Print a hash for OPS_USERS; the password is read without echo on a
    terminal, or as one line of standard input."""
    import getpass

    from app.web.passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("social-queue: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 12:
        print("social-queue: use at least 12 characters", file=sys.stderr)
        return 2
    print(f"{args.user}:{hash_password(password)}")
    return 0


def cmd_database_url(settings: Settings, args: argparse.Namespace) -> int:
    print(database_url(settings))
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="social-queue",
        description="Publishes scheduled social media posts from PostgreSQL.",
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    migrate = commands.add_parser(
        "migrate", help="apply migrations (procrastinate's and ours); idempotent"
    )
    migrate.set_defaults(run=cmd_migrate)

    web = commands.add_parser(
        "web", help="serve the webhook and the JSON API with uvicorn on $PORT"
    )
    web.add_argument(
        "--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)"
    )
    web.set_defaults(run=cmd_web)

    worker = commands.add_parser(
        "worker", help="publish due posts (procrastinate worker, supervised)"
    )
    worker.add_argument(
        "--concurrency", type=int, default=0, help="posts published at once"
    )
    worker.add_argument("--name", default="", help="worker name in attempts and logs")
    worker.set_defaults(run=cmd_worker)

    dev = commands.add_parser(
        "dev",
        help="web, worker and the sandbox of fake platforms on the embedded database",
    )
    dev.add_argument("--demo", action="store_true", help="queue a minute of demo posts")
    dev.add_argument("--sandbox-port", type=int, default=8700)
    dev.add_argument(
        "--failure-rate",
        type=float,
        default=0.15,
        help="share of sandbox create requests that fail (5xx or 429), to see retries",
    )
    dev.set_defaults(run=cmd_dev)

    account_command.add_parser(commands)
    send_event.add_parser(commands)

    hashing = commands.add_parser(
        "hash-password",
        help="print `user:<hash>` for OPS_USERS (the ops page login)",
    )
    hashing.add_argument("user", nargs="?", default="ops", help="user name")
    hashing.set_defaults(run=cmd_hash_password)

    url = commands.add_parser(
        "database-url", help="print the database URL in use (starts the embedded one)"
    )
    url.set_defaults(run=cmd_database_url)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        logs.configure(settings.log_level)
        return args.run(settings, args)
    except SocialQueueError as error:
        print(f"social-queue: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
