"""How X's error answers are classified.

X answers errors as problem JSON (`title`, `detail`, `type`, `errors[]`) and
signals rate limits with `x-rate-limit-reset` (the 15-minute window) or, for
the 24-hour usage cap, `x-user-limit-24hour-reset` and
`x-app-limit-24hour-reset`, all in Unix seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tasks.adapters.base import ErrorKind, PublishError, json_object, retry_after


def problem_detail(body: dict[str, Any]) -> str:
    """The most specific message of a problem body (`detail`, `errors[]`)."""
    parts = [str(body["detail"])] if body.get("detail") else []
    for item in body.get("errors") or []:
        if isinstance(item, dict) and item.get("message"):
            parts.append(str(item["message"]))
    return "; ".join(parts) or str(body.get("title", ""))


def is_duplicate(response: httpx.Response) -> bool:
    """Whether a 403 says the account already has a post with this text."""
    return "duplicate" in problem_detail(json_object(response)).lower()


def data_or_raise(response: httpx.Response, action: str) -> dict[str, Any]:
    """The `data` object of a media answer, which must carry an `id`."""
    if response.is_error:
        raise classify(response, action)
    data = json_object(response).get("data")
    if not isinstance(data, dict) or not data.get("id"):
        raise PublishError(
            ErrorKind.TRANSIENT,
            f"X answered {response.status_code} but no media id when asked to {action}",
            http_status=response.status_code,
        )
    return data


def _reset_at(response: httpx.Response, header: str) -> datetime | None:
    value = response.headers.get(header, "")
    return datetime.fromtimestamp(int(value), UTC) if value.isdigit() else None


def classify(response: httpx.Response, action: str) -> PublishError:
    """Classify an error answer from X."""
    status = response.status_code
    body = json_object(response)
    detail = problem_detail(body) or response.reason_phrase
    problem = str(body.get("type", ""))
    message = f"X refused to {action} ({status}): {detail}"

    if status == 429:
        now = datetime.now(UTC)
        if problem.endswith("usage-capped"):
            # A 24-hour cap, not the 15-minute window: wait for the later reset.
            resets = [
                _reset_at(response, "x-user-limit-24hour-reset"),
                _reset_at(response, "x-app-limit-24hour-reset"),
            ]
            known = [reset for reset in resets if reset]
            when = max(known) if known else now + timedelta(hours=24)
        else:
            when = (
                _reset_at(response, "x-rate-limit-reset")
                or retry_after(response, now)
                or now + timedelta(minutes=15)
            )
        return PublishError(
            ErrorKind.RATE_LIMITED, message, http_status=status, retry_at=when
        )
    if status >= 500:
        return PublishError(ErrorKind.TRANSIENT, message, http_status=status)
    if status == 401:
        return PublishError(
            ErrorKind.AUTH,
            f"{message}; the token is invalid or expired, re-authorise the account",
            http_status=status,
        )
    if status == 403 and problem.endswith(("client-forbidden", "unsupported-auth")):
        return PublishError(
            ErrorKind.CONFIG,
            f"{message}; the X app is not set up for this endpoint",
            http_status=status,
            platform_code=problem,
        )
    if status == 403:
        # Missing scope, suspended or locked account: a person must act.
        return PublishError(ErrorKind.AUTH, message, http_status=status)
    return PublishError(
        ErrorKind.INVALID, message, http_status=status, platform_code=problem or None
    )


def token_error(response: httpx.Response) -> PublishError:
    """Classify a refused refresh: an outage is not a revoked grant."""
    status = response.status_code
    body = json_object(response)
    reason = body.get("error_description") or body.get("error") or status
    if status == 429 or status >= 500:
        return classify(response, "refresh the access token")
    return PublishError(
        ErrorKind.AUTH,
        f"X refused to refresh the token ({status}: {reason}); re-authorise the "
        "account",
        http_status=status,
    )
