"""Configuration from the environment, Heroku style.

Every variable is listed in `.env.example` with its default and meaning.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.exceptions import ConfigurationError


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(
            f"{name} must be a whole number, not {raw!r}"
        ) from None


def normalise_database_url(url: str) -> str:
    """Heroku's `postgres://` scheme as the `postgresql://` libpq documents.

    >>> normalise_database_url("postgres://u:p@host:5432/db")
    'postgresql://u:p@host:5432/db'
    """
    if url.startswith("postgres://"):
        return "postgresql://" + url[len("postgres://") :]
    if not url.startswith("postgresql://"):
        raise ConfigurationError(
            "DATABASE_URL must start with postgres:// or postgresql://"
        )
    return url


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    data_dir: Path | None = None
    port: int = 8000
    log_level: str = "INFO"
    worker_poll_ms: int = 5000
    worker_concurrency: int = 20
    worker_grace_seconds: int = 25
    base_urls: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        url = env.get("DATABASE_URL", "").strip()
        data_dir = env.get("SOCIAL_QUEUE_DATA_DIR", "").strip()
        return cls(
            database_url=normalise_database_url(url) if url else None,
            data_dir=Path(data_dir).expanduser() if data_dir else None,
            port=_int(env, "PORT", 8000),
            log_level=env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO",
            worker_poll_ms=_int(env, "SOCIAL_WORKER_POLL_MS", 5000),
            worker_concurrency=_int(env, "SOCIAL_WORKER_CONCURRENCY", 20),
            worker_grace_seconds=_int(env, "SOCIAL_WORKER_GRACE_SECONDS", 25),
            base_urls={
                platform: env[f"{platform.upper()}_API_BASE_URL"].rstrip("/")
                for platform in PLATFORMS
                if env.get(f"{platform.upper()}_API_BASE_URL", "").strip()
            },
        )


PLATFORMS = ("x", "instagram", "linkedin", "facebook", "tiktok", "youtube")
