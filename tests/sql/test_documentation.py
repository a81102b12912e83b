"""Every SQL function documents itself, so `\\df+ social_*` is the reference."""

from __future__ import annotations

import psycopg


def test_every_function_is_documented_in_the_database(db: psycopg.Connection) -> None:
    undocumented = db.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p "
        "WHERE p.proname LIKE 'social%%' "
        "AND obj_description(p.oid, 'pg_proc') IS NULL ORDER BY 1"
    ).fetchall()
    assert undocumented == []
