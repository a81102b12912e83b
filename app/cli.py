"""The `social-queue` command."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from app import logs, migrations
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
