"""LinkedIn (Posts API): `POST /rest/posts`, images and videos uploaded first.

Every call carries `LinkedIn-Version` (LinkedIn retires each monthly version
after about a year, answering 426) and `X-Restli-Protocol-Version: 2.0.0`.
Post text goes out in LinkedIn's "little" text format, where reserved
characters must be escaped or LinkedIn silently cuts the post at the first one.
Uploaded image and video URNs are saved as handles (`linkedin_images`,
`linkedin_video`) for reuse by a later attempt, and the time the create request
was first sent (`linkedin_sent_at`) for reconciliation.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from tasks.adapters.base import (
    Adapter,
    Credentials,
    ErrorKind,
    HandleStore,
    Post,
    Published,
    PublishError,
    TokenGrant,
    retry_after,
)
from tasks.adapters.media import Media, content_type_from_url, fetch_media, media_kind

logger = logging.getLogger(__name__)

# Monthly versions stay active for about a year; operators can pin another.
DEFAULT_VERSION = "202610"
MAX_TEXT = 3000
MAX_IMAGES = 20
IMAGE_MAX_BYTES = 5 * 1024 * 1024
VIDEO_MAX_BYTES = 500 * 1024 * 1024
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


class _Attempt:
    """The credentials of one publish attempt, refreshed at most once."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.refreshed = False

    async def refresh(self) -> bool:
        if self.refreshed or self.credentials.refresh is None:
            return False
        self.refreshed = True
        self.credentials = await self.credentials.refresh()
        return True


class LinkedInAdapter(Adapter):
    """Publishes as `Credentials.account_id`, a person or organization URN."""

    platform = "linkedin"
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
        _check_media_mix(kinds)

    async def publish(
        self, post: Post, credentials: Credentials, handles: HandleStore
    ) -> Published:
        self.validate(post)
        author = _author(credentials)
        attempt = _Attempt(credentials)
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
        if content := await self._upload_media(post, author, attempt, handles):
            body["content"] = content

        # Saved before sending, so reconcile knows this post may exist.
        sent_before = "linkedin_sent_at" in post.handles
        if not sent_before:
            await handles.save("linkedin_sent_at", datetime.now(UTC).isoformat())

        response = await self._call(attempt, "POST", "/rest/posts", json=body)
        if response.status_code == 422 and _code(response) == "DUPLICATE_POST":
            return await self._after_duplicate(
                response, post, author, attempt, sent_before
            )
        if response.is_error:
            raise _error(response, "create the post", self.version)

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
        attempt: _Attempt,
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
        match = _POST_URN.search(_message(response))
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
            found = await self._call(attempt, "GET", f"/rest/posts/{quote(urn, '')}")
            existing = _json(found)
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
        sent_at = _parse_time(post.handles.get("linkedin_sent_at"))
        if sent_at is None:
            return None  # the create request was never sent

        author = _author(credentials)
        attempt = _Attempt(credentials)
        since_ms = (sent_at - CLOCK_SKEW).timestamp() * 1000
        commentary = escape_little(post.text)
        count = 50

        for page in range(RECONCILE_PAGES):
            path = (
                f"/rest/posts?q=author&author={quote(author, '')}"
                f"&count={count}&start={page * count}&sortBy=CREATED"
            )
            response = await self._call(attempt, "GET", path)
            if response.is_error:
                error = _error(response, "look up the author's posts", self.version)
                raise PublishError(
                    ErrorKind.UNKNOWN_OUTCOME,
                    f"{error.message}; check the account before retrying",
                    http_status=error.http_status,
                )
            elements = _json(response).get("elements") or []
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
        body = _json(response)
        if response.status_code == 429 or response.status_code >= 500:
            raise _error(response, "refresh the access token", self.version)
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

    async def _call(
        self,
        attempt: _Attempt,
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
                sent["Authorization"] = f"Bearer {attempt.credentials.access_token}"
            response = await self.request(
                method, url, creates=creates, headers=sent, **kwargs
            )
            if response.status_code != 401 or not await attempt.refresh():
                return response
            logger.info("event=linkedin.token_refreshed path=%s", httpx.URL(url).path)

    async def _upload_media(
        self, post: Post, author: str, attempt: _Attempt, handles: HandleStore
    ) -> dict[str, Any] | None:
        """Upload the post's media; returns the post's `content` field."""
        if not post.media_urls:
            return None

        kinds = [media_kind(content_type_from_url(u) or "") for u in post.media_urls]
        if kinds == ["video"]:
            urn = await self._video(post, author, attempt, handles)
            return {"media": {"id": urn, "title": post.options.get("title", "")}}

        saved: dict[str, str] = dict(post.handles.get("linkedin_images") or {})
        for url in post.media_urls:
            if url not in saved:
                async with fetch_media(self.client, url, IMAGE_MAX_BYTES) as media:
                    saved[url] = await self._image(media, author, attempt)
                await handles.save("linkedin_images", saved)
        urns = [saved[url] for url in post.media_urls]
        if len(urns) == 1:
            return {"media": {"id": urns[0]}}
        return {"multiImage": {"images": [{"id": urn} for urn in urns]}}

    async def _image(self, media: Media, author: str, attempt: _Attempt) -> str:
        if media.kind not in ("image", "gif"):
            raise PublishError(
                ErrorKind.INVALID,
                f"LinkedIn cannot post {media.url} as an image: it is "
                f"{media.content_type}",
            )
        response = await self._call(
            attempt,
            "POST",
            "/rest/images?action=initializeUpload",
            json={"initializeUploadRequest": {"owner": author}},
        )
        value = _value(response, "start an image upload", self.version)
        upload_url, urn = value.get("uploadUrl"), value.get("image")
        if not isinstance(upload_url, str) or not isinstance(urn, str):
            raise _shape_error(response, "start an image upload")

        response = await self._call(
            attempt, "PUT", upload_url, content=media.file.read()
        )
        if response.is_error:
            raise _error(response, f"upload the image {media.url}", self.version)
        return urn

    async def _video(
        self, post: Post, author: str, attempt: _Attempt, handles: HandleStore
    ) -> str:
        """Upload (or resume) the post's video; returns its URN once AVAILABLE."""
        url = post.media_urls[0]
        saved = post.handles.get("linkedin_video") or {}
        if saved.get("url") == url and saved.get("state") == "finalized":
            urn = str(saved["urn"])
        else:
            async with fetch_media(self.client, url, VIDEO_MAX_BYTES) as media:
                urn = await self._upload_video(media, author, attempt)
            await handles.save(
                "linkedin_video", {"url": url, "urn": urn, "state": "finalized"}
            )
        await self._wait_available(urn, attempt)
        return urn

    async def _upload_video(self, media: Media, author: str, attempt: _Attempt) -> str:
        response = await self._call(
            attempt,
            "POST",
            "/rest/videos?action=initializeUpload",
            json={
                "initializeUploadRequest": {
                    "owner": author,
                    "fileSizeBytes": media.size,
                    "uploadCaptions": False,
                    "uploadThumbnail": False,
                }
            },
        )
        value = _value(response, "start a video upload", self.version)
        urn = value.get("video")
        instructions = value.get("uploadInstructions")
        if not isinstance(urn, str) or not isinstance(instructions, list):
            raise _shape_error(response, "start a video upload")

        etags = []
        for part in instructions:
            chunk = media.read_range(int(part["firstByte"]), int(part["lastByte"]))
            # Upload URLs are pre-signed: no token goes with them.
            response = await self._call(
                attempt,
                "PUT",
                part["uploadUrl"],
                authorise=False,
                content=chunk,
                headers={"Content-Type": "application/octet-stream"},
            )
            if response.is_error or "etag" not in response.headers:
                raise _error(response, f"upload part of {media.url}", self.version)
            etags.append(response.headers["etag"])

        response = await self._call(
            attempt,
            "POST",
            "/rest/videos?action=finalizeUpload",
            json={
                "finalizeUploadRequest": {
                    "video": urn,
                    "uploadToken": value.get("uploadToken", ""),
                    "uploadedPartIds": etags,
                }
            },
        )
        if response.is_error:
            raise _error(response, "finalize the video upload", self.version)
        return urn

    async def _wait_available(self, urn: str, attempt: _Attempt) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_processing_secs
        while True:
            response = await self._call(
                attempt, "GET", f"/rest/videos/{quote(urn, '')}"
            )
            if response.is_error:
                raise _error(response, "check the video's processing", self.version)
            status = _json(response).get("status")
            logger.debug("event=linkedin.video_status video=%s status=%s", urn, status)
            if status == "AVAILABLE":
                return
            if status == "PROCESSING_FAILED":
                reason = _json(response).get("processingFailureReason", "no reason")
                raise PublishError(
                    ErrorKind.INVALID, f"LinkedIn could not process {urn}: {reason}"
                )
            if loop.time() + self.poll_interval > deadline:
                raise PublishError(
                    ErrorKind.TRANSIENT,
                    f"LinkedIn was still processing {urn} after "
                    f"{self.max_processing_secs:.0f} s",
                )
            await asyncio.sleep(self.poll_interval)


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


def _check_media_mix(kinds: list[str]) -> None:
    if "video" in kinds and len(kinds) > 1:
        raise PublishError(
            ErrorKind.INVALID, "LinkedIn posts take one video alone, or images"
        )
    if len(kinds) > MAX_IMAGES:
        raise PublishError(
            ErrorKind.INVALID,
            f"LinkedIn allows at most {MAX_IMAGES} images, got {len(kinds)}",
        )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(response: httpx.Response) -> str:
    return str(_json(response).get("message") or response.reason_phrase)


def _code(response: httpx.Response) -> str | None:
    """LinkedIn's error code, top level or in `errorDetails.inputErrors`."""
    body = _json(response)
    if isinstance(body.get("code"), str):
        return body["code"]
    for item in (body.get("errorDetails") or {}).get("inputErrors") or []:
        if isinstance(item, dict) and isinstance(item.get("code"), str):
            return item["code"]
    return None


def _value(response: httpx.Response, action: str, version: str) -> dict[str, Any]:
    if response.is_error:
        raise _error(response, action, version)
    value = _json(response).get("value")
    if not isinstance(value, dict):
        raise _shape_error(response, action)
    return value


def _shape_error(response: httpx.Response, action: str) -> PublishError:
    return PublishError(
        ErrorKind.TRANSIENT,
        f"LinkedIn answered {response.status_code} to {action} in an "
        "undocumented shape",
        http_status=response.status_code,
    )


def _next_midnight_utc(now: datetime) -> datetime:
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def _error(response: httpx.Response, action: str, version: str) -> PublishError:
    """Classify an error answer from LinkedIn."""
    status = response.status_code
    code = _code(response)
    message = f"LinkedIn refused to {action} ({status} {code or ''}): "
    message += _message(response)

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
            message,
            http_status=status,
            retry_at=when,
            platform_code=code,
        )
    if status >= 500:
        return PublishError(ErrorKind.TRANSIENT, message, http_status=status)
    if status in (401, 403):
        hint = "re-authorise the account" if status == 401 else "grant the permission"
        return PublishError(
            ErrorKind.AUTH, f"{message}; {hint}", http_status=status, platform_code=code
        )
    return PublishError(
        ErrorKind.INVALID, message, http_status=status, platform_code=code
    )
