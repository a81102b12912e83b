"""Facebook Pages (Graph API): posts to `/{page-id}/feed`, photos, videos.

Photos are uploaded unpublished (`/{page-id}/photos`, `published=false`) and
attached to one feed post with `attached_media`; their ids are saved as the
`facebook_photos` handle so a later attempt attaches them instead of uploading
again. A video is published by `/{page-id}/videos` from its URL. Facebook
fetches media from the URLs itself, so nothing is downloaded here.
The time the publishing request was first sent is saved
(`facebook_sent_at`), and reconciliation reads the page's recent posts.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tasks.adapters import graph
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
    json_object,
    parse_time,
)
from tasks.adapters.media import content_type_from_url, media_kind

logger = logging.getLogger(__name__)

# Graph versions live about two years; operators can pin another.
DEFAULT_API_VERSION = "v23.0"
MAX_TEXT = 63_206
POLICY_BLOCK_CODE = 368  # temporarily blocked for posting too much
POLICY_BLOCK_WAIT = timedelta(hours=1)
DUPLICATE_CODE = 506
FACEBOOK = graph.GraphProduct(
    name="Facebook",
    base_url_setting="FACEBOOK_API_BASE_URL",
    # 102: the API session expired; 190: the token is invalid or expired.
    token_codes=frozenset({102, 190}),
    # 341: the page reached its posting limit for now.
    rate_limit_codes=frozenset({4, 17, 32, 341, 613}),
    token_advice="the page token is invalid or expired, re-authorise the page",
    permission_advice=(
        "the token lacks a permission (pages_manage_posts, publish_video)"
    ),
    invalid_advice="Facebook will not accept this post as it is",
)
CLOCK_SKEW = timedelta(minutes=2)
RECONCILE_PAGES = 5


class FacebookAdapter(Adapter):
    """Publishes to the page `Credentials.account_id` with a Page token.

    Page tokens do not refresh through an endpoint (`refresh_token` keeps the
    base behaviour, AUTH); a `Credentials.refresh` callback, if the caller has
    one (say, re-deriving the Page token from a user token), is still tried
    once on an expired token.
    """

    platform = "facebook"
    search_lag = SEARCH_LAG_SECONDS
    default_base_url = "https://graph.facebook.com"

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str | None = None,
        *,
        api_version: str | None = DEFAULT_API_VERSION,
    ) -> None:
        super().__init__(client, base_url)
        self.api_version = api_version

    def node(self, path: str) -> str:
        """`path` under the pinned Graph version (`/v23.0/{page}/feed`)."""
        return f"/{self.api_version}/{path}" if self.api_version else f"/{path}"

    def validate(self, post: Post) -> None:
        if (
            not post.text.strip()
            and not post.media_urls
            and not post.options.get("link")
        ):
            raise PublishError(
                ErrorKind.INVALID, "Facebook needs text, a link or media"
            )
        if len(post.text) > MAX_TEXT:
            raise PublishError(
                ErrorKind.INVALID,
                f"Facebook rejected the post: text is {len(post.text)} characters, "
                f"the limit is {MAX_TEXT}",
            )
        kinds = _kinds(post)
        if "video" in kinds and len(kinds) > 1:
            raise PublishError(
                ErrorKind.INVALID, "Facebook posts take one video alone, or photos"
            )

    async def publish(
        self, post: Post, credentials: Credentials, handles: HandleStore
    ) -> Published:
        self.validate(post)
        page = _page(credentials)
        attempt = RefreshOnce(credentials)

        if _kinds(post) == ["video"]:
            edge = "videos"
            body: dict[str, Any] = {
                "file_url": post.media_urls[0],
                "description": post.text,
            }
            if title := post.options.get("title"):
                body["title"] = title
        else:
            edge = "feed"
            body = {"message": post.text} if post.text else {}
            if link := post.options.get("link"):
                body["link"] = link
            if photos := await self._upload_photos(post, page, attempt, handles):
                body["attached_media"] = [{"media_fbid": fbid} for fbid in photos]

        # Saved before sending, so reconcile knows this post may exist.
        sent_before = "facebook_sent_at" in post.handles
        if not sent_before:
            await handles.save("facebook_sent_at", datetime.now(UTC).isoformat())

        response = await self._call(
            attempt, "POST", f"{page}/{edge}", creates=True, json=body
        )
        if _graph_code(response) == DUPLICATE_CODE:
            return await self._after_duplicate(post, attempt.credentials, sent_before)
        if response.is_error:
            raise _error(response, f"publish to /{page}/{edge}")

        remote_id = json_object(response).get("id")
        if not isinstance(remote_id, str) or not remote_id:
            raise PublishError(
                ErrorKind.UNKNOWN_OUTCOME,
                f"Facebook answered {response.status_code} to POST /{page}/{edge} "
                "without an id; the post may be live, check the page",
                http_status=response.status_code,
            )
        logger.info("event=facebook.posted post=%s remote_id=%s", post.id, remote_id)
        return Published(remote_id, permalink(remote_id))

    async def _after_duplicate(
        self, post: Post, credentials: Credentials, sent_before: bool
    ) -> Published:
        """Code 506: the page already has this text. After an earlier attempt of
        this post was sent, that attempt most likely landed: look it up, and
        never post again. Otherwise the page has it from elsewhere."""
        if not sent_before:
            raise PublishError(
                ErrorKind.INVALID,
                "Facebook rejected the post as a duplicate (code 506): the page "
                "already has a post with this text; change the text",
                http_status=400,
                platform_code=str(DUPLICATE_CODE),
            )
        found = await self.reconcile(post, credentials)
        if found is not None:
            return found
        raise PublishError(
            ErrorKind.UNKNOWN_OUTCOME,
            "Facebook says this text is a duplicate after an earlier attempt was "
            "sent, but it is not among the page's recent posts; check the page "
            "before retrying",
            platform_code=str(DUPLICATE_CODE),
        )

    async def reconcile(self, post: Post, credentials: Credentials) -> Published | None:
        """Look for the post's text among the page's posts since the attempt."""
        sent_at = parse_time(post.handles.get("facebook_sent_at"))
        if sent_at is None:
            return None  # the publishing request was never sent
        if not post.text.strip():
            raise PublishError(
                ErrorKind.UNKNOWN_OUTCOME,
                "a post without text cannot be matched among the page's posts; "
                "check the page before retrying",
            )

        page = _page(credentials)
        attempt = RefreshOnce(credentials)
        video = _kinds(post) == ["video"]
        edge, field = (
            ("videos", "description") if video else ("published_posts", "message")
        )
        params: dict[str, Any] = {
            "fields": f"id,{field},created_time",
            "since": int((sent_at - CLOCK_SKEW).timestamp()),
            "limit": 100,
        }
        wanted = post.text.strip()

        for _ in range(RECONCILE_PAGES):
            response = await self._call(attempt, "GET", f"{page}/{edge}", params=params)
            if response.is_error:
                error = _error(response, f"read /{page}/{edge}")
                raise PublishError(
                    ErrorKind.UNKNOWN_OUTCOME,
                    f"{error.message}; check the page before retrying",
                    http_status=error.http_status,
                )
            body = json_object(response)
            for item in body.get("data") or []:
                if (
                    isinstance(item, dict)
                    and str(item.get(field, "")).strip() == wanted
                    and isinstance(item.get("id"), str)
                ):
                    logger.info(
                        "event=facebook.reconciled post=%s remote_id=%s",
                        post.id,
                        item["id"],
                    )
                    return Published(item["id"], permalink(item["id"]))
            after = ((body.get("paging") or {}).get("cursors") or {}).get("after")
            if not after or not body.get("data"):
                return None
            params["after"] = after

        raise PublishError(
            ErrorKind.UNKNOWN_OUTCOME,
            "too many posts since the attempt to search; check the page by hand",
        )

    async def _call(
        self,
        attempt: RefreshOnce,
        method: str,
        path: str,
        *,
        creates: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """One Graph request; on an expired token, refresh once and resend.

        The token goes in the Authorization header rather than the
        `access_token` parameter, so it never appears in a logged URL.
        """
        while True:
            headers = {"Authorization": attempt.authorization}
            response = await self.request(
                method,
                self.url(self.node(path)),
                creates=creates,
                headers=headers,
                **kwargs,
            )
            expired = (
                response.status_code == 401
                or _graph_code(response) in FACEBOOK.token_codes
            )
            if not expired or not await attempt.refresh():
                return response
            logger.info("event=facebook.token_refreshed path=%s", path)

    async def _upload_photos(
        self, post: Post, page: str, attempt: RefreshOnce, handles: HandleStore
    ) -> list[str]:
        """Upload each photo unpublished; returns their ids in post order."""
        saved: dict[str, str] = dict(post.handles.get("facebook_photos") or {})
        for url in post.media_urls:
            if url in saved:
                continue
            response = await self._call(
                attempt,
                "POST",
                f"{page}/photos",
                json={"url": url, "published": False},
            )
            if response.is_error:
                raise _error(response, f"upload the photo {url}")
            photo_id = json_object(response).get("id")
            if not isinstance(photo_id, str):
                raise PublishError(
                    ErrorKind.TRANSIENT,
                    f"Facebook answered {response.status_code} to a photo upload "
                    "without an id",
                )
            saved[url] = photo_id
            await handles.save("facebook_photos", saved)
        return [saved[url] for url in post.media_urls]


def permalink(remote_id: str) -> str:
    return f"https://www.facebook.com/{remote_id}"


def _kinds(post: Post) -> list[str]:
    # Facebook fetches the media itself, so the URL's extension is all there is
    # to go by; anything not recognisably a video is sent as a photo.
    return [
        "video" if media_kind(content_type_from_url(url) or "") == "video" else "photo"
        for url in post.media_urls
    ]


def _page(credentials: Credentials) -> str:
    if not credentials.account_id or not credentials.account_id.isdigit():
        raise PublishError(
            ErrorKind.CONFIG,
            "Facebook credentials need the page id as account_id, got "
            f"{credentials.account_id!r}",
        )
    return credentials.account_id


def _rules(error: graph.GraphError, now: datetime) -> graph.Verdict | None:
    """Facebook's own codes, asked before the ones every Graph product shares."""
    if error.code == POLICY_BLOCK_CODE:
        return graph.Verdict(
            ErrorKind.RATE_LIMITED,
            "the page is temporarily blocked from posting: deferred",
            now + POLICY_BLOCK_WAIT,
        )
    return None


def _graph_code(response: httpx.Response) -> int | None:
    error = graph.parse_graph_error(response)
    return error.code if error else None


def _error(response: httpx.Response, action: str) -> PublishError:
    """Classify an error answer from the Graph API."""
    error = graph.parse_graph_error(response)
    if error is None:
        return graph.non_graph_error(response, FACEBOOK, action)
    now = datetime.now(UTC)
    return graph.classify(
        error, response, now, FACEBOOK, action=action, verdict=_rules(error, now)
    )
