"""How TikTok's answers are classified.

Every Content Posting API answer carries ``{"error": {"code", "message",
"log_id"}}``, with ``"ok"`` on success; the code, not the HTTP status, says
what went wrong. A post that TikTok accepted can still end `FAILED` later,
with a `fail_reason` in the status answer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tasks.adapters.base import ErrorKind, PublishError, retry_after

# Error codes that defer the post rather than fail it, with how long to wait
# when TikTok sends no Retry-After.
_RATE_LIMIT_WAITS = {
    "rate_limit_exceeded": timedelta(minutes=1),
    "spam_risk_too_many_posts": timedelta(hours=24),
    # At most 5 shares may wait in creators' inboxes per 24 h; they clear as
    # creators act on them, so look again hourly.
    "spam_risk_too_many_pending_share": timedelta(hours=1),
}
_AUTH_CODES = {
    "access_token_invalid": "the access token is invalid or expired",
    "scope_not_authorized": "the account did not grant the video.publish scope",
    "scope_permission_missed": "the account did not grant the video.publish scope",
    # A ban is about the account, not this post: another post fails the same.
    "spam_risk_user_banned_from_posting": "TikTok banned this account from posting",
}
_CONFIG_CODES = {
    # Neither the post nor the token: the app's verified URL prefixes are.
    "url_ownership_unverified": "verify the media domain in the TikTok developer "
    "portal, or use FILE_UPLOAD",
}


def classify(
    code: str, error: dict[str, Any], response: httpx.Response, now: datetime
) -> PublishError:
    """The `PublishError` for a TikTok `error.code` and its HTTP status."""
    status = response.status_code
    detail = str(error.get("message") or "")[:300]
    log_id = error.get("log_id")
    message = f"TikTok refused the request ({code}, HTTP {status}"
    message += f", log_id {log_id}): {detail}" if log_id else f"): {detail}"

    def fail(kind: ErrorKind, advice: str, retry_at: datetime | None = None) -> Any:
        return PublishError(
            kind,
            f"{message}; {advice}",
            http_status=status,
            retry_at=retry_at,
            platform_code=code,
        )

    if code in _RATE_LIMIT_WAITS or status == 429:
        wait = _RATE_LIMIT_WAITS.get(code, timedelta(minutes=1))
        return fail(
            ErrorKind.RATE_LIMITED, "deferred", retry_after(response, now) or now + wait
        )
    if code in _AUTH_CODES:
        return fail(ErrorKind.AUTH, f"{_AUTH_CODES[code]}: reconnect the account")
    if code in _CONFIG_CODES:
        return fail(ErrorKind.CONFIG, _CONFIG_CODES[code])
    if code == "internal_error" or status >= 500:
        return fail(ErrorKind.TRANSIENT, "a temporary TikTok failure: retrying")
    # invalid_params, invalid_file_upload, privacy_level_option_mismatch,
    # unaudited_client_can_only_post_to_private_accounts (choose SELF_ONLY)...
    return fail(ErrorKind.INVALID, "TikTok will not accept this post as it is")


def unexpected(response: httpx.Response, path: str, *, creates: bool) -> PublishError:
    """An answer without TikTok's `error` object (a proxy, a wrong base URL)."""
    status = response.status_code
    if response.is_success:
        kind = ErrorKind.UNKNOWN_OUTCOME if creates else ErrorKind.TRANSIENT
    elif status == 429:
        return PublishError(
            ErrorKind.RATE_LIMITED,
            f"TikTok answered {path} with HTTP 429",
            http_status=429,
            retry_at=retry_after(response, datetime.now(UTC))
            or datetime.now(UTC) + timedelta(minutes=1),
        )
    else:
        kind = ErrorKind.CONFIG if status == 404 else ErrorKind.TRANSIENT
    advice = (
        "it may have posted: reconcile before retrying"
        if kind is ErrorKind.UNKNOWN_OUTCOME
        else "check TIKTOK_API_BASE_URL if this persists"
    )
    return PublishError(
        kind,
        f"TikTok answered {path} with HTTP {status} and no error object; {advice}",
        http_status=status,
    )


def publish_failed(publish_id: str, reason: str) -> PublishError:
    """The error for a post TikTok reports FAILED (nothing went out)."""
    kind = ErrorKind.INVALID
    retry_at = None
    if reason in ("internal", "video_pull_failed", "photo_pull_failed"):
        kind = ErrorKind.TRANSIENT
    elif reason == "auth_removed":
        kind = ErrorKind.AUTH
    elif reason == "spam_risk_too_many_posts":
        kind = ErrorKind.RATE_LIMITED
        retry_at = datetime.now(UTC) + timedelta(hours=24)
    return PublishError(
        kind,
        f"TikTok failed publish_id {publish_id}: {reason}",
        retry_at=retry_at,
        platform_code=reason,
    )
