"""Every SQL function documents itself, so `\\df+ social_*` is the reference."""

from __future__ import annotations

from pathlib import Path

import psycopg


def test_every_function_is_documented_in_the_database(db: psycopg.Connection) -> None:
    undocumented = db.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p "
        "WHERE p.proname LIKE 'social%%' "
        "AND obj_description(p.oid, 'pg_proc') IS NULL ORDER BY 1"
    ).fetchall()
    assert undocumented == []


def test_every_public_function_is_in_the_reference(db: psycopg.Connection) -> None:
    reference = (Path(__file__).parents[2] / "docs" / "sql-api.md").read_text()
    public = {
        name
        for (name,) in db.execute(
            "SELECT DISTINCT p.proname FROM pg_proc p "
            "WHERE p.pronamespace = current_schema()::regnamespace "
            "AND p.proname LIKE 'social\\_%%' AND p.proname NOT LIKE '%%\\_\\_%%'"
        )
    }

    assert public, "no public function found"
    assert sorted(n for n in public if n not in reference) == []
