"""How Google's error answers to YouTube uploads are classified.

Google answers ``{"error": {"code", "message", "errors": [{"domain",
"reason", "message"}], "status"}}``; the first `reason` decides. The daily API
quota (`quotaExceeded`) resets at midnight Pacific time, the channel's upload
limit (`uploadLimitExceeded`) a day later at the soonest.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tasks.adapters.base import ErrorKind, PublishError, json_object, retry_after

PACIFIC = ZoneInfo("America/Los_Angeles")


def next_pacific_midnight(now: datetime) -> datetime:
    """When YouTube's daily quota resets: the next midnight in Pacific time."""
    local = now.astimezone(PACIFIC)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(), PACIFIC)
    return midnight.astimezone(UTC)


def classify(response: httpx.Response, doing: str) -> PublishError:
    """Classify a Google API error answer (nothing was created)."""
    status = response.status_code
    error = json_object(response).get("error")
    error = error if isinstance(error, dict) else {}
    details = error.get("errors") if isinstance(error.get("errors"), list) else []
    reason = str(details[0].get("reason", "")) if details else ""
    message = (
        f"YouTube answered HTTP {status} {reason or 'without a reason'} while {doing}"
        f": {str(error.get('message', ''))[:300]}"
    )
    now = datetime.now(UTC)

    def fail(kind: ErrorKind, advice: str, retry_at: datetime | None = None) -> Any:
        return PublishError(
            kind,
            f"{message}; {advice}",
            http_status=status,
            retry_at=retry_at,
            platform_code=reason or None,
        )

    if reason == "quotaExceeded":
        return fail(
            ErrorKind.RATE_LIMITED,
            "the daily API quota is spent: deferred to midnight Pacific",
            next_pacific_midnight(now),
        )
    if reason == "uploadLimitExceeded":
        return fail(
            ErrorKind.RATE_LIMITED,
            "the channel reached its daily upload limit: deferred 24 h",
            now + timedelta(hours=24),
        )
    if status == 429 or reason in ("rateLimitExceeded", "userRateLimitExceeded"):
        wait = retry_after(response, now) or now + timedelta(minutes=1)
        return fail(ErrorKind.RATE_LIMITED, "rate limited: deferred", wait)
    if status >= 500:
        return fail(ErrorKind.TRANSIENT, "a temporary YouTube failure: retrying")
    if status in (401, 403):
        return fail(
            ErrorKind.AUTH,
            "the token lacks the youtube.upload scope or the channel cannot "
            "upload: reconnect it",
        )
    return fail(ErrorKind.INVALID, "YouTube will not accept this video as it is")
