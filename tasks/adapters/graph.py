"""Instagram's Graph API plumbing: error classification and a calling session.

The Graph API answers errors as ``{"error": {message, type, code,
error_subcode, is_transient, error_user_msg, fbtrace_id}}``. The codes that
matter for Instagram content publishing are listed here; the Facebook Pages
adapter keeps its own table, because the same code can mean different things
on the two products.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tasks.adapters.base import (
    Adapter,
    Credentials,
    ErrorKind,
    PublishError,
    retry_after,
)

# Meta's own processing failed or timed out fetching the media: try again.
TRANSIENT_SUBCODES = frozenset({2207001, 2207003, 2207032})
# The container expired or must be rebuilt (24: "media builder does not exist").
RECREATE_SUBCODES = frozenset({2207008, 2207020, 2207053})
# The content itself is refused: image too large, aspect ratio, caption.
INVALID_SUBCODES = frozenset({2207004, 2207009, 2207010})
# "Media ID is not available": publishing raced container processing.
NOT_READY_SUBCODE = 2207027
# The account reached its rolling 24 h publishing cap.
DAILY_CAP_SUBCODE = 2207042
# Application, user, page and API-specific call-rate limits.
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613})
# The token is invalid or expired.
TOKEN_CODE = 190
# Permission errors: the token lacks a scope, re-authorisation is needed.
PERMISSION_CODES = frozenset({10, *range(200, 300)})

# When the Graph API limits calls without saying for how long.
CALL_LIMIT_WAIT = timedelta(minutes=15)


@dataclass(frozen=True)
class GraphError:
    """The fields of a Graph error body that decide what to do."""

    status: int
    code: int | None
    subcode: int | None
    is_transient: bool
    message: str
    trace_id: str | None

    @property
    def label(self) -> str:
        """``code 190/463``: the code and subcode for messages and the database."""
        if self.subcode is None:
            return f"code {self.code}"
        return f"code {self.code}/{self.subcode}"


def parse_graph_error(response: httpx.Response) -> GraphError | None:
    """The Graph error in `response`, or None if the body is not one."""
    try:
        body: Any = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None

    def as_int(value: Any) -> int | None:
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    # error_user_msg is written for the account owner; prefer it when present.
    message = error.get("error_user_msg") or error.get("message") or "no message"
    return GraphError(
        status=response.status_code,
        code=as_int(error.get("code")),
        subcode=as_int(error.get("error_subcode")),
        is_transient=bool(error.get("is_transient")),
        message=str(message)[:500],
        trace_id=error.get("fbtrace_id"),
    )


def call_limit_reset(response: httpx.Response, now: datetime) -> datetime:
    """When a Graph call-rate limit lifts.

    `Retry-After` wins; otherwise the largest `estimated_time_to_regain_access`
    (minutes) in `X-Business-Use-Case-Usage`; otherwise `CALL_LIMIT_WAIT`.
    For example ``{"1234": [{"type": "instagram", "estimated_time_to_regain_access":
    7}]}`` gives ``now + 7 min``.
    """
    if (when := retry_after(response, now)) is not None:
        return when

    minutes = 0
    try:
        usage = json.loads(response.headers.get("x-business-use-case-usage", "{}"))
        for entries in usage.values():
            for entry in entries:
                minutes = max(
                    minutes, int(entry.get("estimated_time_to_regain_access"))
                )
    except (ValueError, TypeError, AttributeError):
        minutes = 0
    if minutes > 0:
        return now + timedelta(minutes=minutes)
    return now + CALL_LIMIT_WAIT


def classify(
    error: GraphError,
    response: httpx.Response,
    now: datetime,
    *,
    daily_cap_wait: timedelta,
) -> PublishError:
    """The `PublishError` for a Graph error that the caller does not handle itself.

    Token errors (190) come back as AUTH; a caller that can refresh does so
    before asking here. `RECREATE_SUBCODES` come back as TRANSIENT, since a new
    container on the next attempt fixes them.
    """
    where = f"Instagram refused the request ({error.label}, HTTP {error.status}"
    if error.trace_id:
        where += f", fbtrace_id {error.trace_id}"
    where += f"): {error.message}"
    code = error.label

    def fail(kind: ErrorKind, advice: str, retry_at: datetime | None = None) -> Any:
        return PublishError(
            kind,
            f"{where}; {advice}",
            http_status=error.status,
            retry_at=retry_at,
            platform_code=code,
        )

    if error.code == TOKEN_CODE:
        return fail(ErrorKind.AUTH, "the access token is invalid or expired: reconnect")
    if error.subcode == DAILY_CAP_SUBCODE:
        return fail(
            ErrorKind.RATE_LIMITED,
            "the account reached its 24 h publishing cap: deferred",
            now + daily_cap_wait,
        )
    if error.code in RATE_LIMIT_CODES or error.status == 429:
        return fail(
            ErrorKind.RATE_LIMITED,
            "call rate limited: deferred",
            call_limit_reset(response, now),
        )
    if (
        error.is_transient
        or error.subcode in TRANSIENT_SUBCODES
        or error.subcode == NOT_READY_SUBCODE
        or error.code in (1, 2)
        or error.status >= 500
    ):
        return fail(ErrorKind.TRANSIENT, "a temporary Instagram failure: retrying")
    if error.subcode in RECREATE_SUBCODES:
        return fail(ErrorKind.TRANSIENT, "the container expired: a new one is needed")
    if error.code in PERMISSION_CODES:
        return fail(
            ErrorKind.AUTH,
            "the token lacks a permission (instagram_content_publish?): reconnect",
        )
    if error.subcode in INVALID_SUBCODES:
        return fail(ErrorKind.INVALID, "fix the media or caption")
    return fail(ErrorKind.INVALID, "Instagram will not accept this post as it is")


class GraphFailure(PublishError):
    """A classified Graph error that still carries the parsed body."""

    def __init__(self, error: GraphError, classified: PublishError) -> None:
        super().__init__(
            classified.kind,
            classified.message,
            http_status=classified.http_status,
            retry_at=classified.retry_at,
            platform_code=classified.platform_code,
        )
        self.graph = error


class GraphSession:
    """Instagram Graph calls for one attempt, refreshing the token at most once.

    `root` is the versioned API root (``https://graph.facebook.com/v23.0``).
    The token goes in a Bearer header, never in the URL, so it stays out of
    httpx's request log.
    """

    def __init__(
        self,
        adapter: Adapter,
        root: str,
        credentials: Credentials,
        *,
        daily_cap_wait: timedelta,
    ) -> None:
        self.adapter = adapter
        self.root = root
        self.credentials = credentials
        self.daily_cap_wait = daily_cap_wait
        self.refreshed = False

    async def call(
        self,
        method: str,
        node: str,
        *,
        creates: bool = False,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send one Graph request; returns its JSON object or raises PublishError.

        Raises `GraphFailure` for a Graph error body, so callers can look at
        the code and subcode; plain `PublishError` for anything else.
        """
        url = f"{self.root}/{node}"
        while True:
            headers = {"Authorization": f"Bearer {self.credentials.access_token}"}
            response = await self.adapter.request(
                method, url, creates=creates, params=params, data=data, headers=headers
            )
            if response.is_success:
                return _json_object(response, method, node, creates=creates)

            error = parse_graph_error(response)
            if error is None:
                raise _unexpected(response, method, node)
            if (
                error.code == TOKEN_CODE
                and not self.refreshed
                and self.credentials.refresh is not None
            ):
                # Code 190 rejects the request before anything is created, so
                # sending it again with a fresh token cannot duplicate.
                self.refreshed = True
                self.credentials = await self.credentials.refresh()
                continue
            classified = classify(
                error, response, datetime.now(UTC), daily_cap_wait=self.daily_cap_wait
            )
            raise GraphFailure(error, classified)


def _json_object(
    response: httpx.Response, method: str, node: str, *, creates: bool
) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    kind = ErrorKind.UNKNOWN_OUTCOME if creates else ErrorKind.TRANSIENT
    raise PublishError(
        kind,
        f"Instagram answered {method} /{node} with HTTP {response.status_code} "
        "but no JSON object"
        + ("; it may have published: reconcile before retrying" if creates else ""),
        http_status=response.status_code,
    )


def _unexpected(response: httpx.Response, method: str, node: str) -> PublishError:
    """A non-Graph error answer (a proxy, a wrong base URL): nothing was created."""
    now = datetime.now(UTC)
    if response.status_code == 429:
        return PublishError(
            ErrorKind.RATE_LIMITED,
            f"Instagram answered {method} /{node} with HTTP 429",
            http_status=429,
            retry_at=call_limit_reset(response, now),
        )
    kind = ErrorKind.CONFIG if response.status_code == 404 else ErrorKind.TRANSIENT
    return PublishError(
        kind,
        f"Instagram answered {method} /{node} with HTTP {response.status_code} "
        "and no Graph error body; check INSTAGRAM_API_BASE_URL if this persists",
        http_status=response.status_code,
    )
