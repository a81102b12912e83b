"""`social-queue migrate`: complete, idempotent, safe to race, forward-only."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from app import migrations
from tests.conftest import Server


@pytest.fixture
def empty_database(pg_server: Server) -> Iterator[str]:
    name = f"sq_empty_{uuid.uuid4().hex[:12]}"
    janitor = pg_server.janitor(name)
    janitor.init()
    try:
        yield pg_server.url(name)
    finally:
        janitor.drop()


def applied(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM social_queue_migrations")]


def test_one_command_prepares_an_empty_database_completely(empty_database: str) -> None:
    done = migrations.migrate(empty_database)

    assert done[0] == "procrastinate/schema.sql"
    assert done[1:] == [m.name for m in migrations.own_migrations()]
    with psycopg.connect(empty_database) as conn:
        for table in ("social_queue", "procrastinate_jobs", "social_queue_events"):
            assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]
    assert migrations.pending(empty_database) == []


def test_running_it_again_changes_nothing(empty_database: str) -> None:
    migrations.migrate(empty_database)
    before = applied(empty_database)

    assert migrations.migrate(empty_database) == []
    assert applied(empty_database) == before


def test_concurrent_runs_apply_each_migration_once(empty_database: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        try:
            results.append(migrations.migrate(empty_database))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(len(r) for r in results)[:3] == [0, 0, 0]
    names = applied(empty_database)
    assert len(names) == len(set(names))


def test_a_migration_edited_after_it_was_applied_stops_the_run(
    empty_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrations.migrate(empty_database)
    for migration in migrations.own_migrations():
        (tmp_path / migration.name).write_text(migration.sql)
    first = migrations.own_migrations()[0].name
    (tmp_path / first).write_text(migrations.own_migrations()[0].sql + "\n-- edited")
    monkeypatch.setattr(
        migrations, "own_migrations", lambda directory=tmp_path: _read(directory)
    )

    with pytest.raises(migrations.MigrationError, match=f"sql/{first} changed"):
        migrations.migrate(empty_database)


def test_a_failing_migration_leaves_the_last_good_state(
    empty_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrations.migrate(empty_database)
    for migration in migrations.own_migrations():
        (tmp_path / migration.name).write_text(migration.sql)
    (tmp_path / "9998_good.sql").write_text("CREATE TABLE sq_good (id int);")
    (tmp_path / "9999_bad.sql").write_text(
        "CREATE TABLE sq_half (id int); SELECT no_such_function();"
    )
    monkeypatch.setattr(
        migrations, "own_migrations", lambda directory=tmp_path: _read(directory)
    )

    with pytest.raises(migrations.MigrationError, match=r"9999_bad\.sql failed"):
        migrations.migrate(empty_database)

    with psycopg.connect(empty_database) as conn:
        assert conn.execute("SELECT to_regclass('sq_good')").fetchone()[0]
        assert conn.execute("SELECT to_regclass('sq_half')").fetchone()[0] is None
    assert "9999_bad.sql" not in applied(empty_database)


def test_migration_files_are_numbered() -> None:
    names = [m.name for m in migrations.own_migrations()]
    assert names == sorted(names)
    assert all(migrations.MIGRATION_NAME.match(n) for n in names)


def _read(directory: Path) -> list[migrations.Migration]:
    return [
        migrations.Migration(f.name, f.read_text())
        for f in sorted(directory.glob("*.sql"))
    ]


def test_an_install_without_the_sql_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(migrations.MigrationError, match="no migrations in"):
        migrations.own_migrations(tmp_path)
