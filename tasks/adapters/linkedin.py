"""LinkedIn (Posts API): `POST /rest/posts`, images and videos uploaded first.

Every call carries `LinkedIn-Version` (LinkedIn retires each monthly version
after about a year, answering 426) and `X-Restli-Protocol-Version: 2.0.0`.
Post text goes out in LinkedIn's "little" text format, where reserved
characters must be escaped or LinkedIn silently cuts the post at the first one.
Images and videos are uploaded first (see `linkedin_media`); the time the
create request was first sent is saved (`linkedin_sent_at`) for
reconciliation. Errors are classified in `linkedin_errors`.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from tasks.adapters.base import (
    SEARCH_LAG_SECONDS,
    Adapter,
    Credentials,
    ErrorKind,
    HandleStore,
    Post,
    Published,
    PublishError,
    RefreshOnce,
    TokenGrant,
    json_object,
    parse_time,
)
from tasks.adapters.linkedin_errors import classify, error_code, message
from tasks.adapters.linkedin_media import check_media_mix, upload_media
from tasks.adapters.media import content_type_from_url, media_kind

logger = logging.getLogger(__name__)

# Monthly versions stay active for about a year; operators can pin another.
DEFAULT_VERSION = "202610"
MAX_TEXT = 3000
CLOCK_SKEW = timedelta(minutes=2)
RECONCILE_PAGES = 5
_RESERVED = re.compile(r"([\\|{}@\[\]()<>#*_~])")
_POST_URN = re.compile(r"urn:li:(?:share|ugcPost):\d+")


def escape_little(text: str) -> str:
    r"""Escape the "little" format's reserved characters with a backslash.

    >>> escape_little("Q&A (live) #1")
    'Q&A \\(live\\) \\#1'
    """
    return _RESERVED.sub(r"\\\1", text)


class LinkedInAdapter(Adapter):
    """Publishes as `Credentials.account_id`, a person or organization URN."""

    platform = "linkedin"
    search_lag = SEARCH_LAG_SECONDS
    default_base_url = "https://api.linkedin.com"

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str | None = None,
        *,
        oauth_base_url: str | None = None,
        version: str = DEFAULT_VERSION,
        poll_interval: float = 5.0,
        max_processing_secs: float = 600.0,
    ) -> None:
        super().__init__(client, base_url)
        self.oauth_base_url = (oauth_base_url or "https://www.linkedin.com").rstrip("/")
        self.version = version
        self.poll_interval = poll_interval
        self.max_processing_secs = max_processing_secs

    def validate(self, post: Post) -> None:
        if not post.text.strip() and not post.media_urls:
            raise PublishError(ErrorKind.INVALID, "LinkedIn needs text or media")
        if len(post.text) > MAX_TEXT:
            raise PublishError(
                ErrorKind.INVALID,
                f"LinkedIn rejected the post: text is {len(post.text)} characters, "
                f"the limit is {MAX_TEXT}",
            )
        kinds = [media_kind(content_type_from_url(u) or "") for u in post.media_urls]
        check_media_mix(kinds)

    async def publish(
        self, post: Post, credentials: Credentials, handles: HandleStore
    ) -> Published:
        self.validate(post)
        author = _author(credentials)
        attempt = RefreshOnce(credentials)
        commentary = escape_little(post.text)

        body: dict[str, Any] = {
            "author": author,
            "commentary": commentary,
            "visibility": post.options.get("visibility", "PUBLIC"),
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        if content := await upload_media(self, post, author, attempt, handles):
            body["content"] = content

        # Saved before sending, so reconcile knows this post may exist.
        sent_before = "linkedin_sent_at" in post.handles
        if not sent_before:
            await handles.save("linkedin_sent_at", datetime.now(UTC).isoformat())

        response = await self.call(attempt, "POST", "/rest/posts", json=body)
        if response.status_code == 422 and error_code(response) == "DUPLICATE_POST":
            return await self._after_duplicate(
                response, post, author, attempt, sent_before
            )
        if response.is_error:
            raise classify(response, "create the post", self.version)

        urn = response.headers.get("x-restli-id", "")
        if not _POST_URN.fullmatch(urn):
            raise PublishError(
                ErrorKind.UNKNOWN_OUTCOME,
                f"LinkedIn answered {response.status_code} to POST /rest/posts "
                "without a post URN; the post may be live, check the account",
                http_status=response.status_code,
            )
        logger.info("event=linkedin.posted post=%s remote_id=%s", post.id, urn)
        return Published(urn, permalink(urn))

    async def _after_duplicate(
        self,
        response: httpx.Response,
        post: Post,
        author: str,
        attempt: RefreshOnce,
        sent_before: bool,
    ) -> Published:
        """Decide what a 422 DUPLICATE_POST means.

        The URN in LinkedIn's message alone does not prove the post is ours:
        LinkedIn compares against all of the author's recent posts (typed by
        hand, or from another tool), and it has been seen naming deleted
        posts. So it counts as this post only when an earlier attempt of this
        post sent its create request and the named post, read back, has our
        author and our exact commentary. With no earlier attempt the text is
        simply taken: INVALID. With one that cannot be confirmed: unknown.
        """
        match = _POST_URN.search(message(response))
        if not sent_before:
            existing = f" as {match.group(0)}" if match else ""
            raise PublishError(
                ErrorKind.INVALID,
                f"LinkedIn rejected the post as a duplicate: the author already "
                f"posted this text{existing}; change the text",
                http_status=422,
                platform_code="DUPLICATE_POST",
            )

        if match:
            urn = match.group(0)
            found = await self.call(attempt, "GET", f"/rest/posts/{quote(urn, '')}")
            existing = json_object(found)
            if (
                found.status_code == 200
                and existing.get("author") == author
                and existing.get("commentary") == escape_little(post.text)
            ):
                logger.info(
                    "event=linkedin.reconciled post=%s remote_id=%s", post.id, urn
                )
                return Published(urn, permalink(urn))
        raise PublishError(
            ErrorKind.UNKNOWN_OUTCOME,
            "LinkedIn says this text is a duplicate after an earlier attempt was "
            "sent, but the existing post could not be confirmed as this one; "
            "check the account before retrying",
            http_status=422,
            platform_code="DUPLICATE_POST",
        )

    async def reconcile(self, post: Post, credentials: Credentials) -> Published | None:
        """Search the author's posts created since the first attempt.

        Reading an author's posts needs the `r_member_social` (people) or
        `r_organization_social` (pages) permission; without it LinkedIn
        answers 403 and the outcome stays unknown.
        """
        sent_at = parse_time(post.handles.get("linkedin_sent_at"))
        if sent_at is None:
            return None  # the create request was never sent

        author = _author(credentials)
        attempt = RefreshOnce(credentials)
        since_ms = (sent_at - CLOCK_SKEW).timestamp() * 1000
        commentary = escape_little(post.text)
        count = 50

        for page in range(RECONCILE_PAGES):
            path = (
                f"/rest/posts?q=author&author={quote(author, '')}"
                f"&count={count}&start={page * count}&sortBy=CREATED"
            )
            response = await self.call(attempt, "GET", path)
            if response.is_error:
                error = classify(response, "look up the author's posts", self.version)
                raise PublishError(
                    ErrorKind.UNKNOWN_OUTCOME,
                    f"{error.message}; check the account before retrying",
                    http_status=error.http_status,
                )
            elements = json_object(response).get("elements") or []
            for element in elements:
                if (
                    isinstance(element, dict)
                    and element.get("commentary") == commentary
                    and element.get("author") == author
                    and isinstance(element.get("id"), str)
                ):
                    return Published(element["id"], permalink(element["id"]))
            oldest = min((e.get("createdAt", 0) for e in elements), default=0)
            if len(elements) < count or oldest < since_ms:
                return None

        raise PublishError(
            ErrorKind.UNKNOWN_OUTCOME,
            "too many posts since the attempt to search; check the account by hand",
        )

    async def refresh_token(
        self, refresh_token: str, client_id: str | None, client_secret: str | None
    ) -> TokenGrant:
        """Only approved partners get LinkedIn refresh tokens; the refresh
        token's own lifetime is not extended by using it."""
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id or "",
            "client_secret": client_secret or "",
        }
        response = await self.request(
            "POST", f"{self.oauth_base_url}/oauth/v2/accessToken", data=form
        )
        body = json_object(response)
        if response.status_code == 429 or response.status_code >= 500:
            raise classify(response, "refresh the access token", self.version)
        if response.is_error or not isinstance(body.get("access_token"), str):
            reason = body.get("error_description") or body.get("error") or "no token"
            raise PublishError(
                ErrorKind.AUTH,
                f"LinkedIn refused to refresh the token ({response.status_code}: "
                f"{reason}); re-authorise the account",
                http_status=response.status_code,
            )
        return TokenGrant(
            access_token=body["access_token"],
            refresh_token=body.get("refresh_token") or refresh_token,
            expires_in=body.get("expires_in"),
            refresh_expires_in=body.get("refresh_token_expires_in"),
        )

    async def call(
        self,
        attempt: RefreshOnce,
        method: str,
        path_or_url: str,
        *,
        authorise: bool = True,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One versioned Rest.li request; on a 401, refresh once and resend."""
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        # Only the create request can publish; uploads are invisible until used.
        creates = method == "POST" and path_or_url == "/rest/posts"
        while True:
            sent = {
                "LinkedIn-Version": self.version,
                "X-Restli-Protocol-Version": "2.0.0",
                **(headers or {}),
            }
            if authorise:
                sent["Authorization"] = attempt.authorization
            response = await self.request(
                method, url, creates=creates, headers=sent, **kwargs
            )
            if response.status_code != 401 or not await attempt.refresh():
                return response
            logger.info("event=linkedin.token_refreshed path=%s", httpx.URL(url).path)


def permalink(urn: str) -> str:
    return f"https://www.linkedin.com/feed/update/{urn}"


def _author(credentials: Credentials) -> str:
    author = credentials.account_id or ""
    if not re.fullmatch(r"urn:li:(person|organization):[\w-]+", author):
        raise PublishError(
            ErrorKind.CONFIG,
            "LinkedIn credentials need the author URN as account_id "
            f"(urn:li:person:… or urn:li:organization:…), got {author!r}",
        )
    return author
