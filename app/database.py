"""Connections, and the one place where SQL errors become application errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import psycopg
from psycopg import errors

from app import embedded
from app.config import Settings
from app.exceptions import IllegalTransition, InvalidInput, PostNotFound

# SQLSTATEs raised by the SQL API (sql/0002_internals.sql).
SQLSTATE_ERRORS = {
    "SQ404": PostNotFound,
    "SQ409": IllegalTransition,
    "SQ422": InvalidInput,
}


def database_url(settings: Settings) -> str:
    """DATABASE_URL, or the embedded server's URL after starting it."""
    if settings.database_url:
        return settings.database_url
    server = embedded.start(settings.data_dir)
    return embedded.database_url(server)


def raise_for(error: psycopg.Error) -> NoReturn:
    """Re-raise an error of the SQL API as its application exception.

    Errors from elsewhere (a lost connection, a bug) pass through unchanged.
    """
    diag = error.diag
    kind = SQLSTATE_ERRORS.get(error.sqlstate or "")
    if kind is None:
        raise error
    context = {}
    if diag.message_detail:
        try:
            context = json.loads(diag.message_detail)
        except ValueError:
            context = {"detail": diag.message_detail}
    raise kind(diag.message_primary or str(error), **context) from error


@contextmanager
def sql_errors() -> Iterator[None]:
    """Translate SQL API errors raised inside the block."""
    try:
        yield
    except errors.Error as error:
        raise_for(error)
