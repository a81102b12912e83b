"""The environment's single account per platform, and its refreshed grants.

The original setup configured one account per platform through environment
variables (`X_BEARER_TOKEN`, ...); a profile without a stored account
publishes with it. Where its refresh tokens rotate (TikTok, X), a refresh
spends the token it used, so every worker process must go on from the same
grant: with SOCIAL_QUEUE_SECRET_KEY set, the latest grant is kept encrypted
in `social_environment_grants`, and a refresh holds an advisory lock so one
process calls the platform and the others use what it stored. Without the
key, a process can only keep its grant to itself, which is right for one
worker process per such account.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tasks.adapters.base import Adapter, Credentials, ErrorKind, PublishError
from tasks.tokens import (
    TokenCipher,
    expires_soon,
    expiry,
    request_grant,
    require_cipher,
)

logger = logging.getLogger(__name__)

# Class of the advisory lock a refresh holds, with hashtext(platform) as the
# object ("sqen" in ASCII).
GRANT_LOCK = 0x7371656E


@dataclass(frozen=True)
class EnvAccount:
    """Names of one platform's single-account environment variables."""

    token: str
    account_id: str | None = None
    refresh_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None


ENV_ACCOUNTS = {
    "x": EnvAccount(
        "X_BEARER_TOKEN",
        "X_USER_ID",
        "X_REFRESH_TOKEN",
        "X_CLIENT_ID",
        "X_CLIENT_SECRET",
    ),
    "instagram": EnvAccount(
        "INSTAGRAM_ACCESS_TOKEN",
        "INSTAGRAM_USER_ID",
        None,
        "INSTAGRAM_APP_ID",
        "INSTAGRAM_APP_SECRET",
    ),
    "linkedin": EnvAccount(
        "LINKEDIN_ACCESS_TOKEN",
        "LINKEDIN_AUTHOR_URN",
        "LINKEDIN_REFRESH_TOKEN",
        "LINKEDIN_CLIENT_ID",
        "LINKEDIN_CLIENT_SECRET",
    ),
    "facebook": EnvAccount("FACEBOOK_PAGE_TOKEN", "FACEBOOK_PAGE_ID"),
    "tiktok": EnvAccount(
        "TIKTOK_ACCESS_TOKEN",
        None,
        "TIKTOK_REFRESH_TOKEN",
        "TIKTOK_CLIENT_KEY",
        "TIKTOK_CLIENT_SECRET",
    ),
    "youtube": EnvAccount(
        "YOUTUBE_ACCESS_TOKEN",
        "YOUTUBE_CHANNEL_ID",
        "YOUTUBE_REFRESH_TOKEN",
        "YOUTUBE_CLIENT_ID",
        "YOUTUBE_CLIENT_SECRET",
    ),
}


@dataclass(frozen=True)
class _Grant:
    """An environment account's current grant; version 0 is the environment's
    own tokens, and each refresh adds one."""

    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    version: int

    def __repr__(self) -> str:
        return f"_Grant(version={self.version}, expires_at={self.expires_at!r})"


class EnvironmentAccounts:
    """Credentials of the environment's accounts, refreshed once for all
    worker processes."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        cipher: TokenCipher | None,
        env: Mapping[str, str],
    ) -> None:
        self.pool = pool
        self.cipher = cipher
        self.env = env
        # Without a cipher, the grants are kept here, for this process. A lock
        # per platform lets one task of the process refresh at a time.
        self._grants: dict[str, _Grant] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def client(self, platform: str) -> tuple[str | None, str | None]:
        """The app's client id and secret for `platform`'s token endpoint."""
        names = ENV_ACCOUNTS[platform]
        return self._env(names.client_id), self._env(names.client_secret)

    async def credentials(self, platform: str, adapter: Adapter) -> Credentials:
        """The account's credentials, refreshed first if they are about to expire."""
        names = ENV_ACCOUNTS[platform]
        if not self._env(names.token):
            raise PublishError(
                ErrorKind.CONFIG,
                f"no {platform} credentials: store the account with "
                f"`social-queue account set` or set {names.token}",
            )
        grant = self._seed(platform)
        if grant.refresh_token is None:
            return self._credentials(platform, grant)
        if self.cipher is None:
            grant = self._grants.get(platform, grant)
        else:
            async with self.pool.connection() as conn:
                grant = await self._stored(conn, platform)
        if expires_soon(grant.expires_at):
            return await self.refresh(platform, adapter, grant.version)

        version = grant.version

        async def refresh() -> Credentials:
            return await self.refresh(platform, adapter, version)

        credentials = self._credentials(platform, grant)
        credentials.refresh = refresh
        return credentials

    async def refresh(
        self, platform: str, adapter: Adapter, seen_version: int
    ) -> Credentials:
        """Refresh once across all processes: a caller that finds the grant
        past `seen_version` uses it without calling the platform."""
        async with self._locks.setdefault(platform, asyncio.Lock()):
            if self.cipher is None:
                current = self._grants.get(platform, self._seed(platform))
                grant = await self._renew(platform, adapter, current, seen_version)
                self._grants[platform] = grant
                return self._credentials(platform, grant)
            async with self.pool.connection() as conn, conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                    (GRANT_LOCK, platform),
                )
                current = await self._stored(conn, platform)
                grant = await self._renew(platform, adapter, current, seen_version)
                if grant is not current:
                    await self._store(conn, platform, grant)
            return self._credentials(platform, grant)

    async def _renew(
        self, platform: str, adapter: Adapter, current: _Grant, seen_version: int
    ) -> _Grant:
        if current.version != seen_version:
            logger.info("event=token.reused platform=%s account=environment", platform)
            return current
        grant = await request_grant(
            adapter, platform, current.refresh_token, self.client(platform)
        )
        logger.info("event=token.refreshed platform=%s account=environment", platform)
        return _Grant(
            grant.access_token,
            grant.refresh_token or current.refresh_token,
            expiry(grant.expires_in),
            current.version + 1,
        )

    def _seed(self, platform: str) -> _Grant:
        """The grant the environment's own variables give."""
        names = ENV_ACCOUNTS[platform]
        token = self._env(names.token) or ""
        return _Grant(token, self._env(names.refresh_token), None, 0)

    def _seed_digest(self, platform: str) -> str:
        seed = self._seed(platform)
        return require_cipher(self.cipher).fingerprint(
            seed.access_token, seed.refresh_token or ""
        )

    async def _stored(self, conn: AsyncConnection[Any], platform: str) -> _Grant:
        """The stored grant of the chain that started from the environment's
        current tokens (an operator who sets new ones starts a new chain); the
        environment's own if there is none."""
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            "SELECT * FROM social_environment_grants WHERE platform = %s AND seed = %s",
            (platform, self._seed_digest(platform)),
        )
        row = await cur.fetchone()
        if row is None:
            return self._seed(platform)
        cipher = require_cipher(self.cipher)
        return _Grant(
            cipher.decrypt(row["access_token"]) or "",
            cipher.decrypt(row["refresh_token"]),
            row["token_expires_at"],
            row["token_version"],
        )

    async def _store(
        self, conn: AsyncConnection[Any], platform: str, grant: _Grant
    ) -> None:
        cipher = require_cipher(self.cipher)
        await conn.execute(
            """
            INSERT INTO social_environment_grants
                (platform, seed, access_token, refresh_token, token_expires_at,
                 token_version)
            VALUES (%s, %s, %s, %s, %s, %s)
            ON CONFLICT (platform) DO UPDATE SET
                seed = excluded.seed,
                access_token = excluded.access_token,
                refresh_token = excluded.refresh_token,
                token_expires_at = excluded.token_expires_at,
                token_version = excluded.token_version,
                updated_at = now()
            """,
            (
                platform,
                self._seed_digest(platform),
                cipher.encrypt(grant.access_token),
                cipher.encrypt(grant.refresh_token),
                grant.expires_at,
                grant.version,
            ),
        )

    def _credentials(self, platform: str, grant: _Grant) -> Credentials:
        return Credentials(
            access_token=grant.access_token,
            account_id=self._env(ENV_ACCOUNTS[platform].account_id),
            expires_at=grant.expires_at,
        )

    def _env(self, name: str | None) -> str | None:
        return (self.env.get(name) or None) if name else None
