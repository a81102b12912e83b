"""Credentials per (profile, platform): encrypted at rest, refreshed exactly once.

Tokens live in `social_accounts`, encrypted with a key derived from
SOCIAL_QUEUE_SECRET_KEY (Fernet: AES-128-CBC with an HMAC). A profile without
a stored token falls back to the single-account environment variables of the
original setup (`X_BEARER_TOKEN`, ...). A refresh takes the account row's lock,
so when several workers find the token expired at the same moment one of them
calls the platform and the others read what it stored.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography.fernet import Fernet, InvalidToken
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tasks.adapters.base import (
    Adapter,
    Credentials,
    ErrorKind,
    PublishError,
    TokenGrant,
)

logger = logging.getLogger(__name__)

# Refresh a token this long before it expires, so a publish never starts with
# a token that dies mid-upload.
REFRESH_MARGIN = timedelta(minutes=5)


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
class _EnvGrant:
    """What the last refresh of an environment account gave this process."""

    access_token: str
    refresh_token: str | None
    expires_at: datetime | None

    def __repr__(self) -> str:
        return f"_EnvGrant(expires_at={self.expires_at!r})"


class TokenCipher:
    """Encrypts tokens for storage with a key derived from the secret key."""

    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < 16:
            raise ValueError("SOCIAL_QUEUE_SECRET_KEY must be at least 16 characters")
        digest = hashlib.sha256(b"social-queue tokens\0" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def encrypt(self, token: str | None) -> bytes | None:
        return self._fernet.encrypt(token.encode()) if token else None

    def decrypt(self, stored: bytes | None) -> str | None:
        if stored is None:
            return None
        try:
            return self._fernet.decrypt(bytes(stored)).decode()
        except InvalidToken:
            raise PublishError(
                ErrorKind.CONFIG,
                "a stored token cannot be decrypted: SOCIAL_QUEUE_SECRET_KEY is not "
                "the key it was stored with",
            ) from None


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
        self.env = env
        # The environment accounts' refreshed tokens, per platform, for this
        # process, and a lock per platform so its tasks refresh once.
        self._env_grants: dict[str, _EnvGrant] = {}
        self._env_locks: dict[str, asyncio.Lock] = {}

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
        cipher = self._require_cipher()
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
            return self._from_env(platform, adapter)

        credentials = self._from_row(row, profile_id, platform, adapter)
        expires = row["token_expires_at"]
        if (
            expires is not None
            and expires - REFRESH_MARGIN < datetime.now(UTC)
            and row["refresh_token"] is not None
        ):
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

            cipher = self._require_cipher()
            grant = await self._grant(
                adapter, platform, cipher.decrypt(row["refresh_token"])
            )

            now = datetime.now(UTC)
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
                    now + timedelta(seconds=grant.expires_in)
                    if grant.expires_in
                    else None,
                    now + timedelta(seconds=grant.refresh_expires_in)
                    if grant.refresh_expires_in
                    else None,
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
        cipher = self._require_cipher()
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

    def _from_env(self, platform: str, adapter: Adapter) -> Credentials:
        env = ENV_ACCOUNTS[platform]
        token = self._env(env.token)
        if not token:
            raise PublishError(
                ErrorKind.CONFIG,
                f"no {platform} credentials: store the account with "
                f"`social-queue account set` or set {env.token}",
            )
        seen = self._env_grants.get(platform)
        refresh_token = seen.refresh_token if seen else self._env(env.refresh_token)

        async def refresh() -> Credentials:
            return await self._refresh_env(platform, adapter, seen)

        credentials = self._env_credentials(
            platform, seen or _EnvGrant(token, refresh_token, None)
        )
        credentials.refresh = refresh if refresh_token else None
        return credentials

    async def _refresh_env(
        self, platform: str, adapter: Adapter, seen: _EnvGrant | None
    ) -> Credentials:
        """Refresh an environment account once per process, keeping the
        rotated refresh token (TikTok's old one stops working) for the next.

        TODO: several worker processes sharing one environment account each
        refresh on their own, and where refresh tokens rotate (TikTok) the
        second one's refresh is refused as a revoked grant; such accounts
        belong in social_accounts (`social-queue account set`), whose refresh
        takes a database lock.
        """
        env = ENV_ACCOUNTS[platform]
        lock = self._env_locks.setdefault(platform, asyncio.Lock())
        async with lock:
            current = self._env_grants.get(platform)
            if current is not None and current is not seen:
                # Another task of this process refreshed while we waited.
                return self._env_credentials(platform, current)
            refresh_token = (
                current.refresh_token if current else self._env(env.refresh_token)
            )
            grant = await self._grant(adapter, platform, refresh_token)
            expires_at = (
                datetime.now(UTC) + timedelta(seconds=grant.expires_in)
                if grant.expires_in
                else None
            )
            current = self._env_grants[platform] = _EnvGrant(
                grant.access_token, grant.refresh_token or refresh_token, expires_at
            )
            logger.info(
                "event=token.refreshed platform=%s account=environment", platform
            )
            return self._env_credentials(platform, current)

    def _env_credentials(self, platform: str, grant: _EnvGrant) -> Credentials:
        """An environment account's credentials with this access token."""
        return Credentials(
            access_token=grant.access_token,
            account_id=self._env(ENV_ACCOUNTS[platform].account_id),
            expires_at=grant.expires_at,
        )

    async def _grant(
        self, adapter: Adapter, platform: str, refresh_token: str | None
    ) -> TokenGrant:
        """Ask the platform for a new access token with the app's client
        credentials from the environment."""
        env = ENV_ACCOUNTS[platform]
        try:
            return await adapter.refresh_token(
                refresh_token or "",
                self._env(env.client_id),
                self._env(env.client_secret),
            )
        except httpx.TransportError as error:
            # An outage is not a revoked grant: keep everything, try later.
            raise PublishError(
                ErrorKind.TRANSIENT,
                f"could not reach {platform} to refresh the token: "
                f"{type(error).__name__}",
            ) from error

    def _env(self, name: str | None) -> str | None:
        return (self.env.get(name) or None) if name else None

    def _require_cipher(self) -> TokenCipher:
        if self.cipher is None:
            raise PublishError(
                ErrorKind.CONFIG,
                "stored account tokens need SOCIAL_QUEUE_SECRET_KEY to be set",
            )
        return self.cipher
