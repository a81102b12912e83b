"""What stored and environment accounts share: tokens encrypted at rest, when
to refresh them, and how to ask a platform for a new grant."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import httpx
from cryptography.fernet import Fernet, InvalidToken

from tasks.adapters.base import Adapter, ErrorKind, PublishError, TokenGrant

# Refresh a token this long before it expires, so a publish never starts with
# a token that dies mid-upload.
REFRESH_MARGIN = timedelta(minutes=5)


def expiry(seconds: int | None) -> datetime | None:
    """When a grant's `expires_in` runs out; None when it did not say."""
    return datetime.now(UTC) + timedelta(seconds=seconds) if seconds else None


def expires_soon(expires_at: datetime | None) -> bool:
    return expires_at is not None and expires_at - REFRESH_MARGIN < datetime.now(UTC)


class TokenCipher:
    """Encrypts tokens for storage with a key derived from the secret key
    (Fernet: AES-128-CBC with an HMAC)."""

    def __init__(self, secret_key: str) -> None:
        if len(secret_key) < 16:
            raise ValueError("SOCIAL_QUEUE_SECRET_KEY must be at least 16 characters")
        digest = hashlib.sha256(b"social-queue tokens\0" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._mac_key = hashlib.sha256(
            b"social-queue fingerprints\0" + secret_key.encode()
        ).digest()

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

    def fingerprint(self, *parts: str) -> str:
        """A keyed digest that tells values apart without revealing them."""
        message = "\0".join(parts).encode()
        return hmac.new(self._mac_key, message, hashlib.sha256).hexdigest()


def require_cipher(cipher: TokenCipher | None) -> TokenCipher:
    if cipher is None:
        raise PublishError(
            ErrorKind.CONFIG,
            "stored account tokens need SOCIAL_QUEUE_SECRET_KEY to be set",
        )
    return cipher


async def request_grant(
    adapter: Adapter,
    platform: str,
    refresh_token: str | None,
    client: tuple[str | None, str | None],
) -> TokenGrant:
    """Ask the platform for a new access token with the app's client id and
    secret."""
    client_id, client_secret = client
    try:
        return await adapter.refresh_token(
            refresh_token or "", client_id, client_secret
        )
    except httpx.TransportError as error:
        # An outage is not a revoked grant: keep everything, try later.
        raise PublishError(
            ErrorKind.TRANSIENT,
            f"could not reach {platform} to refresh the token: {type(error).__name__}",
        ) from error
