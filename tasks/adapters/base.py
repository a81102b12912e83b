"""The interface every platform adapter implements.

An adapter turns one post into the platform's documented HTTP calls and turns
the platform's answers into either a `Published` result or a `PublishError`
whose `kind` tells the queue what to do next. Adapters never touch the
database directly: intermediate handles go through a `HandleStore`, and token
refresh goes through the `Credentials.refresh` callback, both provided by the
caller (the worker, or a test).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from uuid import UUID

import httpx


class ErrorKind(enum.StrEnum):
    """How a failed attempt is classified; the values match SQL `social_error_kind`."""

    # Certainly not published (connection refused, 5xx, a platform error that
    # says nothing was created): retry with backoff, spending an attempt.
    TRANSIENT = "transient"
    # The platform said "not now": wait until `retry_at`, attempt not spent.
    RATE_LIMITED = "rate_limited"
    # The token is revoked, expired beyond refresh, or lacks a scope.
    AUTH = "auth"
    # The platform will never accept this content as it is.
    INVALID = "invalid"
    # Our side is misconfigured (no credentials, an API version retired).
    CONFIG = "config"
    # The request may have published: never retried blindly.
    UNKNOWN_OUTCOME = "unknown_outcome"


class PublishError(Exception):
    """The platform did not confirm the post."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        http_status: int | None = None,
        retry_at: datetime | None = None,
        platform_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.http_status = http_status
        self.retry_at = retry_at
        self.platform_code = platform_code

    def __repr__(self) -> str:
        return (
            f"PublishError(kind={self.kind.value!r}, message={self.message!r}, "
            f"http_status={self.http_status!r}, retry_at={self.retry_at!r})"
        )


@dataclass(frozen=True)
class Post:
    """What an adapter needs to know about one post.

    `options` holds the per-platform settings from `content.options`
    (a YouTube title, a TikTok privacy level, ...). `handles` holds what an
    earlier attempt saved through the `HandleStore` (a container id, an
    upload session URI), so that `reconcile` and a resumed upload can use it.
    """

    id: UUID
    profile_id: str
    platform: str
    text: str = ""
    media_urls: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    attempt: int = 1
    handles: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Published:
    """The platform confirmed the post."""

    remote_id: str
    url: str | None = None


@dataclass
class Credentials:
    """One account's credentials for one platform.

    `account_id` is the platform's id of the publishing identity: the X user
    id, the Instagram user id, the Facebook page id, the LinkedIn author URN.
    `refresh`, when set, obtains a fresh access token (exactly once across
    workers; the store takes a database lock) and returns the new credentials.
    Adapters call it at most once per attempt, on a 401 or an expired token.
    """

    access_token: str
    account_id: str | None = None
    refresh_token: str | None = None
    expires_at: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    refresh: Callable[[], Awaitable[Credentials]] | None = None

    def __repr__(self) -> str:
        # Never let a token reach a log line or a traceback.
        return (
            f"Credentials(account_id={self.account_id!r}, "
            f"expires_at={self.expires_at!r})"
        )


@dataclass(frozen=True)
class TokenGrant:
    """What a platform's token endpoint answered to a refresh."""

    access_token: str
    refresh_token: str | None
    expires_in: int | None
    refresh_expires_in: int | None = None

    def __repr__(self) -> str:
        return f"TokenGrant(expires_in={self.expires_in!r})"


class RefreshOnce:
    """The credentials of one attempt, refreshed at most once.

    Every adapter sends its requests with `credentials`; on a 401 (or the
    platform's expired-token code) it calls `refresh()` and, if that returns
    True, sends the request again with the new token. A second 401 in the same
    attempt is then an answer, not a reason to refresh again.
    """

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.refreshed = False

    @property
    def authorization(self) -> str:
        """The `Authorization` header value for the current token."""
        return f"Bearer {self.credentials.access_token}"

    async def refresh(self) -> bool:
        """Get new credentials once per attempt; False if that is not possible."""
        if self.refreshed or self.credentials.refresh is None:
            return False
        self.refreshed = True
        self.credentials = await self.credentials.refresh()
        return True


class HandleStore(Protocol):
    """Persists intermediate handles before the adapter's next call."""

    async def save(self, name: str, value: Any) -> None: ...


# How long a platform's list of recent posts may take to show a post just
# created. Timelines are eventually consistent: X, Facebook and LinkedIn can
# answer a search without a post made moments before.
SEARCH_LAG_SECONDS = 30.0


# The create requests (calls that may publish) sent during the current
# attempt. A list shared by reference, so the tasks an adapter starts add to
# the attempt's own.
_CREATES_SENT: ContextVar[list[str] | None] = ContextVar(
    "social_queue_creates_sent", default=None
)


@contextmanager
def tracking_creates() -> Iterator[list[str]]:
    """Collect, as `METHOD path`, the create requests sent inside the block."""
    sent: list[str] = []
    token = _CREATES_SENT.set(sent)
    try:
        yield sent
    finally:
        _CREATES_SENT.reset(token)


class Adapter(abc.ABC):
    """Publishes posts to one platform through its HTTP API."""

    platform: str
    default_base_url: str
    # Seconds after an attempt starts before `reconcile` answering "not
    # there" can be believed. 0 where the lookup asks the platform about the
    # very object the attempt made (a container, an upload session, a
    # publish id); SEARCH_LAG_SECONDS where it searches recent posts.
    search_lag: float = 0.0

    def __init__(self, client: httpx.AsyncClient, base_url: str | None = None) -> None:
        self.client = client
        self.base_url = (base_url or self.default_base_url).rstrip("/")

    def url(self, path: str) -> str:
        """The documented `path` on this adapter's base URL."""
        return f"{self.base_url}{path}"

    async def request(
        self, method: str, url: str, *, creates: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """Send one request, translating transport errors into `PublishError`.

        `creates` marks a call that may publish (or create something visible):
        if the connection breaks after the request went out, the outcome is
        unknown and must not be retried blindly. A failure to connect is always
        transient, since nothing reached the platform.
        """
        sent = _CREATES_SENT.get()
        if creates and sent is not None:
            sent.append(f"{method} {httpx.URL(url).path}")
        try:
            return await self.client.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise PublishError(
                ErrorKind.TRANSIENT, f"could not reach {self.platform}: {exc!r}"
            ) from exc
        except httpx.TransportError as exc:
            if creates:
                raise PublishError(
                    ErrorKind.UNKNOWN_OUTCOME,
                    f"{self.platform} did not answer {method} {httpx.URL(url).path} "
                    f"after it was sent ({type(exc).__name__}); it may have published",
                ) from exc
            raise PublishError(
                ErrorKind.TRANSIENT,
                f"{self.platform} request {method} {httpx.URL(url).path} failed: "
                f"{type(exc).__name__}",
            ) from exc

    @abc.abstractmethod
    def validate(self, post: Post) -> None:
        """Raise `PublishError(INVALID)` if the platform can never accept the post.

        Runs before any request, so an invalid post costs no API call.
        """

    @abc.abstractmethod
    async def publish(
        self, post: Post, credentials: Credentials, handles: HandleStore
    ) -> Published:
        """Publish `post`; raise `PublishError` with a classified kind on failure."""

    async def reconcile(self, post: Post, credentials: Credentials) -> Published | None:
        """Find out whether an attempt with an unknown outcome went out.

        Returns the post if it is live, None if it certainly is not. Raises
        `PublishError(UNKNOWN_OUTCOME)` when the platform cannot tell, which
        is also the default for platforms with nothing to look up.
        """
        raise PublishError(
            ErrorKind.UNKNOWN_OUTCOME,
            f"{self.platform} offers no way to look this post up; check the "
            "account before retrying",
        )

    async def refresh_token(
        self, refresh_token: str, client_id: str | None, client_secret: str | None
    ) -> TokenGrant:
        """Exchange a refresh token at the platform's token endpoint."""
        raise PublishError(
            ErrorKind.AUTH,
            f"{self.platform} tokens cannot be refreshed here; "
            "re-authorise the account",
        )


def retry_after(response: httpx.Response, now: datetime) -> datetime | None:
    """When the platform asks to be called again, from a `Retry-After` header.

    Accepts both forms of the header: ``"120"`` gives ``now + 120 s``;
    ``"Wed, 21 Oct 2026 07:28:00 GMT"`` gives that instant. Anything else,
    or no header, gives None.
    """
    value = response.headers.get("retry-after")
    if not value:
        return None

    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON body if it is an object, else an empty dict."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time saved in a handle, as an aware datetime; None if not one.

    A time without a zone is taken as UTC: ``"2026-01-02T03:04:05"`` gives
    ``2026-01-02 03:04:05+00:00``.
    """
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
