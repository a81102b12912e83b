"""Forward-only migrations: procrastinate's schema, then ours from `sql/`.

Each applied file is recorded in `social_queue_migrations` with a checksum;
a file changed after it was applied stops the run, since migrations are
never edited once merged. One advisory lock serialises concurrent runs (two
release phases, or a release racing a developer), and each file is applied
in its own transaction, so a failure leaves the database at the last good
step.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg
from procrastinate.schema import SchemaManager

from app.exceptions import SocialQueueError

logger = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
# pg_advisory_lock key: "social q" in ASCII, so it is recognisable in pg_locks.
LOCK_KEY = 0x736F6369616C2071
MIGRATION_NAME = re.compile(r"^\d{4}_[a-z0-9_]+\.sql$")
PROCRASTINATE = "procrastinate/"


class MigrationError(SocialQueueError):
    """The migrations could not be applied."""


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def own_migrations(directory: Path = SQL_DIR) -> list[Migration]:
    """Our numbered migrations, in order."""
    files = sorted(directory.glob("*.sql"))
    if not files:
        # A non-editable install leaves sql/ behind: refuse rather than
        # report an empty database as up to date.
        raise MigrationError(
            f"no migrations in {directory}: run from a checkout of the "
            "repository (pip install -e .), where sql/ sits beside app/"
        )
    strays = [f.name for f in files if not MIGRATION_NAME.match(f.name)]
    if strays:
        raise MigrationError(f"not named NNNN_name.sql: {', '.join(strays)}")
    return [Migration(f.name, f.read_text(encoding="utf-8")) for f in files]


def procrastinate_migrations() -> list[Migration]:
    """procrastinate's own upgrade files, in the order it documents."""
    folder = resources.files("procrastinate.sql") / "migrations"
    names = sorted(e.name for e in folder.iterdir() if e.name.endswith(".sql"))
    return [
        Migration(PROCRASTINATE + name, (folder / name).read_text(encoding="utf-8"))
        for name in names
    ]


def migrate(conninfo: str) -> list[str]:
    """Bring the database up to date; returns the names of what was applied."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            conn.execute(
                """
                CREATE TABLE IF NOT EXISTS social_queue_migrations (
                    name text PRIMARY KEY,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            applied = dict(
                conn.execute("SELECT name, checksum FROM social_queue_migrations")
            )
            done = _migrate_procrastinate(conn, applied)
            done += _migrate_own(conn, applied)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return done


def expected() -> list[str]:
    """Every migration this code needs recorded: procrastinate's, then ours."""
    return [m.name for m in procrastinate_migrations()] + [
        m.name for m in own_migrations()
    ]


def pending(conninfo: str) -> list[str]:
    """Names of the migrations not applied yet (empty when up to date)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT to_regclass('social_queue_migrations') IS NOT NULL"
        ).fetchone()
        applied = (
            {row[0] for row in conn.execute("SELECT name FROM social_queue_migrations")}
            if exists and exists[0]
            else set()
        )
    return [name for name in expected() if name not in applied]


def _migrate_procrastinate(
    conn: psycopg.Connection, applied: dict[str, str]
) -> list[str]:
    upgrades = procrastinate_migrations()
    has_schema = conn.execute(
        "SELECT to_regclass('procrastinate_jobs') IS NOT NULL"
    ).fetchone()

    if not (has_schema and has_schema[0]):
        # A fresh database: the full schema equals every upgrade applied.
        with conn.transaction():
            conn.execute(SchemaManager.get_schema())
            _record(conn, [Migration(PROCRASTINATE + "schema.sql", ""), *upgrades])
        logger.info("event=migration.applied name=%sschema.sql", PROCRASTINATE)
        return [PROCRASTINATE + "schema.sql"]

    if not any(name.startswith(PROCRASTINATE) for name in applied):
        # procrastinate's schema was applied by its own CLI, at the version
        # installed then; assume it is current rather than re-running it.
        logger.warning(
            "event=migration.adopted detail=%s",
            "procrastinate schema found without a record; assuming it is current",
        )
        with conn.transaction():
            _record(conn, upgrades)
        return []

    done = []
    for migration in upgrades:
        if migration.name not in applied:
            _apply(conn, migration)
            done.append(migration.name)
    return done


def _migrate_own(conn: psycopg.Connection, applied: dict[str, str]) -> list[str]:
    done = []
    for migration in own_migrations():
        recorded = applied.get(migration.name)
        if recorded is None:
            _apply(conn, migration)
            done.append(migration.name)
        elif recorded != migration.checksum:
            raise MigrationError(
                f"sql/{migration.name} changed after it was applied; migrations "
                "are never edited once merged: add a new numbered file instead"
            )
    return done


def _apply(conn: psycopg.Connection, migration: Migration) -> None:
    try:
        with conn.transaction():
            conn.execute(migration.sql)
            _record(conn, [migration])
    except psycopg.Error as error:
        raise MigrationError(f"{migration.name} failed: {error}") from error
    logger.info("event=migration.applied name=%s", migration.name)


def _record(conn: psycopg.Connection, migrations: list[Migration]) -> None:
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO social_queue_migrations (name, checksum) VALUES (%s, %s)",
            [(m.name, m.checksum) for m in migrations],
        )
