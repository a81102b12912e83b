"""How LinkedIn's error answers are classified.

LinkedIn answers errors as ``{"status", "message", "code"}``, sometimes with
the code inside ``errorDetails.inputErrors[]`` instead (as for
``DUPLICATE_POST``). It answers 426 (``NONEXISTENT_VERSION``) once the
`LinkedIn-Version` we send is retired, and 429 without any reset header: its
daily quotas reset at midnight UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tasks.adapters.base import ErrorKind, PublishError, json_object, retry_after


def message(response: httpx.Response) -> str:
    """LinkedIn's `message`, or the HTTP reason when there is none."""
    return str(json_object(response).get("message") or response.reason_phrase)


def error_code(response: httpx.Response) -> str | None:
    """LinkedIn's error code, top level or in `errorDetails.inputErrors`."""
    body = json_object(response)
    if isinstance(body.get("code"), str):
        return body["code"]
    for item in (body.get("errorDetails") or {}).get("inputErrors") or []:
        if isinstance(item, dict) and isinstance(item.get("code"), str):
            return item["code"]
    return None


def value_or_raise(
    response: httpx.Response, action: str, version: str
) -> dict[str, Any]:
    """The `value` object of an action's answer (`initializeUpload`)."""
    if response.is_error:
        raise classify(response, action, version)
    value = json_object(response).get("value")
    if not isinstance(value, dict):
        raise shape_error(response, action)
    return value


def shape_error(response: httpx.Response, action: str) -> PublishError:
    """A success answer that lacks what the documentation promises."""
    return PublishError(
        ErrorKind.TRANSIENT,
        f"LinkedIn answered {response.status_code} to {action} in an "
        "undocumented shape",
        http_status=response.status_code,
    )


def _next_midnight_utc(now: datetime) -> datetime:
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def classify(response: httpx.Response, action: str, version: str) -> PublishError:
    """Classify an error answer from LinkedIn; `version` is the one we sent."""
    status = response.status_code
    code = error_code(response)
    text = f"LinkedIn refused to {action} ({status} {code or ''}): "
    text += message(response)

    if status == 426 or code == "NONEXISTENT_VERSION":
        return PublishError(
            ErrorKind.CONFIG,
            f"LinkedIn no longer serves API version {version} ({status}); "
            "configure a current LinkedIn-Version",
            http_status=status,
            platform_code=code,
        )
    if status == 429:
        # Daily quotas reset at midnight UTC, and LinkedIn sends no reset header.
        now = datetime.now(UTC)
        when = retry_after(response, now) or _next_midnight_utc(now)
        return PublishError(
            ErrorKind.RATE_LIMITED,
            text,
            http_status=status,
            retry_at=when,
            platform_code=code,
        )
    if status >= 500:
        return PublishError(ErrorKind.TRANSIENT, text, http_status=status)
    if status in (401, 403):
        hint = "re-authorise the account" if status == 401 else "grant the permission"
        return PublishError(
            ErrorKind.AUTH, f"{text}; {hint}", http_status=status, platform_code=code
        )
    return PublishError(ErrorKind.INVALID, text, http_status=status, platform_code=code)
