"""Credentials per (profile, platform): encrypted at rest, refreshed exactly once.

Tokens live in `social_accounts`, encrypted with a key derived from
SOCIAL_QUEUE_SECRET_KEY (Fernet: AES-128-CBC with an HMAC). A profile without
a stored token falls back to the single-account environment variables of the
original setup (`X_BEARER_TOKEN`, ...; tasks/environment.py). A refresh takes
the account row's lock, so when several workers find the token expired at
the same moment one of them calls the platform and the others read what it
stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tasks.adapters.base import Adapter, Credentials, ErrorKind, PublishError
from tasks.environment import EnvironmentAccounts
from tasks.tokens import (
    TokenCipher,
    expires_soon,
    expiry,
    request_grant,
    require_cipher,
)

logger = logging.getLogger(__name__)


class Accounts:
    """Finds and refreshes the credentials of accounts."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        cipher: TokenCipher | None,
        env: Mapping[str, str],
    ) -> None:
        self.pool = pool
        self.cipher = cipher
        self.environment = EnvironmentAccounts(pool, cipher, env)

    async def store(
        self,
        profile_id: str,
        platform: str,
        *,
        access_token: str,
        account_id: str | None = None,
        refresh_token: str | None = None,
        expires_at: datetime | None = None,
        refresh_expires_at: datetime | None = None,
        scopes: str | None = None,
    ) -> None:
        """Add or replace an account's credentials (a refresh token is kept when
        none is given)."""
        cipher = require_cipher(self.cipher)
        async with self.pool.connection() as conn:
            await conn.execute(
                """
                INSERT INTO social_accounts AS a
                    (profile_id, platform, account_id, access_token, refresh_token,
                     token_expires_at, refresh_expires_at, scopes)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (profile_id, platform) DO UPDATE SET
                    account_id = coalesce(excluded.account_id, a.account_id),
                    access_token = excluded.access_token,
                    refresh_token = coalesce(excluded.refresh_token, a.refresh_token),
                    token_expires_at = excluded.token_expires_at,
                    refresh_expires_at = coalesce(excluded.refresh_expires_at,
                                                  a.refresh_expires_at),
                    scopes = coalesce(excluded.scopes, a.scopes),
                    token_version = a.token_version + 1,
                    updated_at = now()
                """,
                (
                    profile_id,
                    platform,
                    account_id,
                    cipher.encrypt(access_token),
                    cipher.encrypt(refresh_token),
                    expires_at,
                    refresh_expires_at,
                    scopes,
                ),
            )

    async def credentials(
        self, profile_id: str, platform: str, adapter: Adapter
    ) -> Credentials:
        """The account's credentials, refreshed first if they are about to expire."""
        row = await self._row(profile_id, platform)
        if row is None or row["access_token"] is None:
            return await self.environment.credentials(platform, adapter)

        credentials = self._from_row(row, profile_id, platform, adapter)
        if expires_soon(row["token_expires_at"]) and row["refresh_token"] is not None:
            credentials = await self.refresh(
                profile_id, platform, adapter, row["token_version"]
            )
        return credentials

    async def refresh(
        self, profile_id: str, platform: str, adapter: Adapter, seen_version: int
    ) -> Credentials:
        """Refresh the access token once across all workers.

        `seen_version` is the token version the caller found stale; if the row
        has moved on by the time its lock is ours, another worker refreshed it
        and its result is used without calling the platform again.
        """
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT * FROM social_accounts WHERE profile_id = %s AND platform = %s "
                "FOR UPDATE",
                (profile_id, platform),
            )
            row = await cur.fetchone()
            if row is None or row["refresh_token"] is None:
                raise PublishError(
                    ErrorKind.AUTH,
                    f"{platform} rejected the token of profile {profile_id} and "
                    "there is no refresh token: re-authorise the account",
                )
            if row["token_version"] != seen_version:
                logger.info(
                    "event=token.reused profile=%s platform=%s", profile_id, platform
                )
                return self._from_row(row, profile_id, platform, adapter)

            cipher = require_cipher(self.cipher)
            grant = await request_grant(
                adapter,
                platform,
                cipher.decrypt(row["refresh_token"]),
                self.environment.client(platform),
            )

            await cur.execute(
                """
                UPDATE social_accounts SET
                    access_token = %s,
                    refresh_token = coalesce(%s, refresh_token),
                    token_expires_at = %s,
                    refresh_expires_at = coalesce(%s, refresh_expires_at),
                    token_version = token_version + 1,
                    updated_at = now()
                WHERE profile_id = %s AND platform = %s
                RETURNING *
                """,
                (
                    cipher.encrypt(grant.access_token),
                    cipher.encrypt(grant.refresh_token),
                    expiry(grant.expires_in),
                    expiry(grant.refresh_expires_in),
                    profile_id,
                    platform,
                ),
            )
            row = await cur.fetchone()
        logger.info(
            "event=token.refreshed profile=%s platform=%s", profile_id, platform
        )
        assert row is not None
        return self._from_row(row, profile_id, platform, adapter)

    async def _row(self, profile_id: str, platform: str) -> dict[str, Any] | None:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT * FROM social_accounts WHERE profile_id = %s AND platform = %s",
                (profile_id, platform),
            )
            return await cur.fetchone()

    def _from_row(
        self, row: dict[str, Any], profile_id: str, platform: str, adapter: Adapter
    ) -> Credentials:
        cipher = require_cipher(self.cipher)
        version = row["token_version"]

        async def refresh() -> Credentials:
            return await self.refresh(profile_id, platform, adapter, version)

        return Credentials(
            access_token=cipher.decrypt(row["access_token"]) or "",
            account_id=row["account_id"],
            refresh_token=None,
            expires_at=row["token_expires_at"],
            refresh=refresh if row["refresh_token"] is not None else None,
        )
