"""`social-queue account`: tokens from standard input, encrypted at rest."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg

from tests.conftest import Server

SECRET_KEY = "test-only-secret-key-0123456789"


def run_cli(
    args: list[str], database: str, stdin: str = ""
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "account", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "DATABASE_URL": database,
            "SOCIAL_QUEUE_SECRET_KEY": SECRET_KEY,
        },
        timeout=60,
    )


def test_set_stores_tokens_encrypted_and_list_never_shows_them(
    pg_server: Server, database_url: str
) -> None:
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    database = pg_server.database_url(str(dbname))

    stored = run_cli(
        [
            "set",
            "acme",
            "x",
            "--account-id",
            "1460000000000000001",
            "--expires-in",
            "7200",
        ],
        database,
        stdin="access-token-for-acme\nrefresh-token-for-acme\n",
    )
    listed = run_cli(["list"], database)

    assert stored.returncode == 0, stored.stderr
    assert "stored the x account of acme" in stored.stdout
    assert listed.returncode == 0, listed.stderr
    assert "acme" in listed.stdout and "1460000000000000001" in listed.stdout
    assert "access-token-for-acme" not in listed.stdout + listed.stderr + stored.stderr
    with psycopg.connect(database_url) as conn:
        access, refresh, expires = conn.execute(
            "SELECT access_token, refresh_token, token_expires_at FROM social_accounts"
        ).fetchone()
    assert b"access-token-for-acme" not in bytes(access)
    assert b"refresh-token-for-acme" not in bytes(refresh)
    assert expires is not None


def test_set_without_a_token_on_standard_input_is_refused(
    pg_server: Server, database_url: str
) -> None:
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    result = run_cli(
        ["set", "acme", "x"], pg_server.database_url(str(dbname)), stdin=""
    )

    assert result.returncode == 2
    assert "give the access token on standard input" in result.stderr
