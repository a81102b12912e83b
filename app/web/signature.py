"""iCadence's webhook signature: HMAC-SHA256 over `"{timestamp}.{raw body}"`.

Sent as `X-ICadence-Signature: t=<unix seconds>,v1=<hex>`; several `v1`
values may come while iCadence rotates its secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from app.web.errors import ApiError
from app.web.settings import WebSettings

HEADER = "x-icadence-signature"
HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `v1` value iCadence sends: hex HMAC-SHA256 of `"{timestamp}.{body}"`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    header: str | None, body: bytes, settings: WebSettings, now: float | None = None
) -> None:
    """Check `X-ICadence-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`; raise 401.

    Any v1 matching any of our secrets passes, so both sides can rotate
    secrets without a window of refused deliveries.
    """
    if not settings.webhook_secrets:
        if settings.allow_unsigned_webhooks:
            return
        raise ApiError(
            503,
            "webhook_not_configured",
            "ICADENCE_WEBHOOK_SECRET is not set, so no delivery can be verified",
        )
    if not header:
        raise _unauthorized("signature_missing", "X-ICadence-Signature is missing")

    timestamp, signatures = _parse_signature(header)
    now = time.time() if now is None else now
    if abs(now - timestamp) > settings.webhook_tolerance_seconds:
        raise _unauthorized(
            "signature_expired",
            f"the signature's timestamp is more than "
            f"{settings.webhook_tolerance_seconds} s from our clock",
        )

    matched = False
    for secret in settings.webhook_secrets:
        expected = sign(secret, timestamp, body)
        for signature in signatures:
            # No early exit: the time taken does not depend on which matched.
            matched |= hmac.compare_digest(expected, signature)
    if not matched:
        raise _unauthorized("signature_mismatch", "the signature does not match")


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)


def _parse_signature(header: str) -> tuple[int, list[str]]:
    """`t=1700000000,v1=ab…,v1=cd…` as (1700000000, ["ab…", "cd…"])."""
    timestamp: int | None = None
    signatures = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        # ASCII only: "²".isdigit() is true, and int() refuses it.
        if key == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1" and HEX_SHA256.fullmatch(value):
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        raise _unauthorized(
            "signature_malformed",
            "X-ICadence-Signature must be t=<unix seconds>,v1=<hex HMAC-SHA256>",
        )
    return timestamp, signatures
