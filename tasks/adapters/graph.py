"""Graph API plumbing shared by Facebook Pages and Instagram.

The Graph API answers errors as ``{"error": {message, type, code,
error_subcode, is_transient, error_user_msg, fbtrace_id}}`` and reports call
budgets in usage headers. This module parses both and classifies the codes
that mean the same on every Graph product; each product passes a `GraphProduct`
with its own token and rate-limit codes, and decides its own codes first
(Instagram's 2207xxx subcodes, Facebook's 368 block) as a `Verdict`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tasks.adapters.base import (
    Adapter,
    ErrorKind,
    PublishError,
    RefreshOnce,
    retry_after,
)

# A temporary failure on Meta's side ("unknown error", "service").
TRANSIENT_CODES = frozenset({1, 2})
# Permission errors: the token lacks a scope, re-authorisation is needed.
PERMISSION_CODES = frozenset({10, *range(200, 300)})
# When a limit says nothing about how long it lasts. Call-rate limits are
# rolling one-hour windows.
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
    type: str | None = None

    @property
    def label(self) -> str:
        """``code 190/463``: the code and subcode for messages and the database."""
        if self.subcode is None:
            return f"code {self.code}"
        return f"code {self.code}/{self.subcode}"


@dataclass(frozen=True)
class Verdict:
    """A product's own decision about one Graph error."""

    kind: ErrorKind
    advice: str
    retry_at: datetime | None = None


@dataclass(frozen=True)
class GraphProduct:
    """What differs between the Graph products this module serves."""

    name: str
    # The setting that points the adapter at the API, named in CONFIG errors.
    base_url_setting: str
    token_codes: frozenset[int]
    rate_limit_codes: frozenset[int]
    token_advice: str
    permission_advice: str
    invalid_advice: str


# The product's own rules, asked right after the token check.
Rules = Callable[[GraphError, datetime], Verdict | None]


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
    kind = error.get("type")
    return GraphError(
        status=response.status_code,
        code=as_int(error.get("code")),
        subcode=as_int(error.get("error_subcode")),
        is_transient=error.get("is_transient") is True,
        message=str(message)[:500],
        trace_id=error.get("fbtrace_id"),
        type=str(kind) if kind else None,
    )


def regain_access_at(response: httpx.Response, now: datetime) -> datetime | None:
    """When the usage headers say calls are allowed again, if they say.

    `X-Business-Use-Case-Usage` (and `X-Ad-Account-Usage`) map business ids to
    lists of usage entries, each possibly with `estimated_time_to_regain_access`
    in minutes: ``{"123": [{"type": "pages", "call_count": 100,
    "estimated_time_to_regain_access": 7}]}`` gives ``now + 7 min``.
    `X-App-Usage` carries only percentages: at 100 it means "wait", not how long.
    """
    minutes = []
    for header in ("x-business-use-case-usage", "x-ad-account-usage"):
        try:
            usage = json.loads(response.headers.get(header, "{}"))
        except ValueError:
            continue
        groups = usage.values() if isinstance(usage, dict) else []
        for entry in (e for group in groups if isinstance(group, list) for e in group):
            wait = (
                entry.get("estimated_time_to_regain_access")
                if isinstance(entry, dict)
                else None
            )
            if isinstance(wait, int | float) and wait > 0:
                minutes.append(wait)
    return now + timedelta(minutes=max(minutes)) if minutes else None


def call_limit_reset(response: httpx.Response, now: datetime) -> datetime:
    """When a Graph call-rate limit lifts.

    The later of `Retry-After` and the usage headers' estimate, since a post
    must never be retried earlier than the platform asked; with neither,
    `CALL_LIMIT_WAIT`.
    """
    known = [
        when
        for when in (retry_after(response, now), regain_access_at(response, now))
        if when is not None
    ]
    return max(known) if known else now + CALL_LIMIT_WAIT


def classify(
    error: GraphError,
    response: httpx.Response,
    now: datetime,
    product: GraphProduct,
    *,
    action: str,
    verdict: Verdict | None = None,
) -> PublishError:
    """The `PublishError` for a Graph error.

    `verdict` is the product's own decision, if its rules had one; it wins over
    everything but an invalid token (a caller that can refresh does so before
    asking here).
    """
    where = f"{product.name} refused to {action} ({error.label}, HTTP {error.status}"
    if error.trace_id:
        where += f", fbtrace_id {error.trace_id}"
    where += f"): {error.message}"

    def fail(kind: ErrorKind, advice: str, retry_at: datetime | None = None) -> Any:
        return PublishError(
            kind,
            f"{where}; {advice}",
            http_status=error.status,
            retry_at=retry_at,
            platform_code=error.label,
        )

    if error.code in product.token_codes:
        return fail(ErrorKind.AUTH, product.token_advice)
    if verdict is not None:
        return fail(verdict.kind, verdict.advice, verdict.retry_at)
    if error.code in product.rate_limit_codes or error.status == 429:
        return fail(
            ErrorKind.RATE_LIMITED,
            "call rate limited: deferred",
            call_limit_reset(response, now),
        )
    if error.is_transient or error.code in TRANSIENT_CODES or error.status >= 500:
        return fail(ErrorKind.TRANSIENT, f"a temporary {product.name} failure")
    if error.code in PERMISSION_CODES:
        return fail(ErrorKind.AUTH, product.permission_advice)
    if error.type == "OAuthException" and error.code is None and error.subcode is None:
        return fail(ErrorKind.AUTH, product.token_advice)
    return fail(ErrorKind.INVALID, product.invalid_advice)


def non_graph_error(
    response: httpx.Response, product: GraphProduct, action: str
) -> PublishError:
    """An error answer without a Graph error body (a proxy, a wrong base URL).

    Graph itself always answers errors with a body, so nothing was created.
    """
    status = response.status_code
    text = f"{product.name} answered HTTP {status} to {action} with no Graph error"
    if status == 429:
        return PublishError(
            ErrorKind.RATE_LIMITED,
            text,
            http_status=status,
            retry_at=call_limit_reset(response, datetime.now(UTC)),
        )
    kind = ErrorKind.CONFIG if status == 404 else ErrorKind.TRANSIENT
    return PublishError(
        kind,
        f"{text}; check {product.base_url_setting} if this persists",
        http_status=status,
    )


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
    """Graph calls for one attempt, refreshing the token at most once.

    `root` is the versioned API root (``https://graph.facebook.com/v23.0``).
    The token goes in a Bearer header, never in the URL, so it stays out of
    httpx's request log.
    """

    def __init__(
        self,
        adapter: Adapter,
        root: str,
        attempt: RefreshOnce,
        product: GraphProduct,
        rules: Rules,
    ) -> None:
        self.adapter = adapter
        self.root = root
        self.attempt = attempt
        self.product = product
        self.rules = rules

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
        action = f"{method} /{node}"
        while True:
            headers = {"Authorization": self.attempt.authorization}
            response = await self.adapter.request(
                method, url, creates=creates, params=params, data=data, headers=headers
            )
            if response.is_success:
                return self._json_object(response, action, creates=creates)

            error = parse_graph_error(response)
            if error is None:
                raise non_graph_error(response, self.product, action)
            # A token error rejects the request before anything is created,
            # so sending it again with a fresh token cannot duplicate.
            if error.code in self.product.token_codes and await self.attempt.refresh():
                continue
            now = datetime.now(UTC)
            classified = classify(
                error,
                response,
                now,
                self.product,
                action=action,
                verdict=self.rules(error, now),
            )
            raise GraphFailure(error, classified)

    def _json_object(
        self, response: httpx.Response, action: str, *, creates: bool
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
            f"{self.product.name} answered {action} with HTTP "
            f"{response.status_code} but no JSON object"
            + ("; it may have published: reconcile before retrying" if creates else ""),
            http_status=response.status_code,
        )
