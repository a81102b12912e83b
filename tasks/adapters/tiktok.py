"""TikTok: the Content Posting API's Direct Post flow.

Every post starts with `creator_info/query/` (the privacy levels this creator
may use, the longest video allowed). A video is then initialised with
`video/init/`; photos with `content/init/` (`media_type: PHOTO`, pulled from
their URLs). The `publish_id` is saved through the `HandleStore` the moment it
exists, and `status/fetch/` is polled until `PUBLISH_COMPLETE` or `FAILED`.
TikTok has no idempotency key, so a later attempt (and `reconcile`) polls the
saved `publish_id` instead of initialising a second post.

Videos are sent with `FILE_UPLOAD` by default: the worker downloads the file
and `PUT`s it in chunks. `PULL_FROM_URL` (option ``source``) is lighter but
only works for URL prefixes verified in the TikTok developer portal, which
customer-supplied media URLs usually are not.

Options read from `post.options`: ``privacy_level`` (default ``SELF_ONLY``,
the one level every account and unaudited app allows; TikTok forbids picking a
public default for the user), ``disable_comment``, ``disable_duet``,
``disable_stitch``, ``video_cover_timestamp_ms``, ``source``
(``FILE_UPLOAD`` or ``PULL_FROM_URL``), ``video_duration_sec`` (checked against
the creator's maximum when given), ``title`` (photo posts, ≤ 90 characters),
``photo_cover_index``, ``auto_add_music``.

When TikTok reports `PUBLISH_COMPLETE` without `publicaly_available_post_id`
(private posts, or moderation still running), the `publish_id` is returned as
the remote id and the URL is None.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import httpx

from tasks.adapters.base import (
    Adapter,
    Credentials,
    ErrorKind,
    HandleStore,
    Post,
    Published,
    PublishError,
    RefreshOnce,
    TokenGrant,
)
from tasks.adapters.media import content_type_from_url, media_kind
from tasks.adapters.tiktok_errors import classify, unexpected
from tasks.adapters.tiktok_status import (
    DONE_STATES,
    PUBLISH_HANDLE,
    fetch_status,
    published_result,
    save_publish,
    still_counts,
    wait_published,
)
from tasks.adapters.tiktok_upload import upload_video

logger = logging.getLogger(__name__)

MAX_TITLE_UTF16 = 2200
MAX_PHOTO_TITLE = 90
MAX_PHOTO_DESCRIPTION_UTF16 = 4000
MAX_PHOTOS = 35
PRIVACY_DEFAULT = "SELF_ONLY"


def utf16_length(text: str) -> int:
    """Length as TikTok counts it: ``utf16_length("😀") == 2``."""
    return len(text.encode("utf-16-le")) // 2


class TikTokSession:
    """TikTok calls for one attempt, refreshing an invalid token at most once."""

    def __init__(self, adapter: TikTokAdapter, credentials: Credentials) -> None:
        self.adapter = adapter
        self.attempt = RefreshOnce(credentials)

    async def call(
        self, path: str, body: dict[str, Any] | None = None, *, creates: bool = False
    ) -> dict[str, Any]:
        """POST one API call; returns its `data` object or raises PublishError."""
        url = self.adapter.url(path)
        while True:
            headers = {
                "Authorization": self.attempt.authorization,
                "Content-Type": "application/json; charset=UTF-8",
            }
            response = await self.adapter.request(
                "POST", url, creates=creates, json=body or {}, headers=headers
            )
            try:
                payload = response.json()
            except ValueError:
                payload = None
            error = payload.get("error") if isinstance(payload, dict) else None
            code = error.get("code") if isinstance(error, dict) else None

            if response.is_success and code == "ok":
                data = payload.get("data") if isinstance(payload, dict) else None
                return data if isinstance(data, dict) else {}
            if code is None:
                raise unexpected(response, path, creates=creates)
            # TikTok rejected the token before doing anything: resending with
            # a fresh one cannot create a second post.
            if code == "access_token_invalid" and await self.attempt.refresh():
                continue
            raise classify(str(code), error, response, datetime.now(UTC))


class TikTokAdapter(Adapter):
    """Publishes videos and photo posts to a TikTok creator account."""

    platform = "tiktok"
    default_base_url = "https://open.tiktokapis.com"

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str | None = None,
        *,
        poll_interval: float = 5.0,
        poll_timeout: float = 120.0,
        chunk_size: int = 10_000_000,
    ) -> None:
        super().__init__(client, base_url)
        # Status fetches are limited to 30 a minute per token: stay well under.
        self.poll_interval = poll_interval
        self.poll_timeout = poll_timeout
        self.chunk_size = chunk_size

    def validate(self, post: Post) -> None:
        def invalid(message: str) -> PublishError:
            return PublishError(ErrorKind.INVALID, f"TikTok: {message}")

        kinds = [_url_kind(url) for url in post.media_urls]
        if not kinds:
            raise invalid("a post needs a video or photos; text-only is impossible")
        for name in ("video_cover_timestamp_ms", "photo_cover_index"):
            value = post.options.get(name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 0
            ):
                raise invalid(f"options.{name} must be a whole number, not {value!r}")
        duration = post.options.get("video_duration_sec")
        if duration is not None and (
            not isinstance(duration, int | float) or isinstance(duration, bool)
        ):
            raise invalid(
                f"options.video_duration_sec must be a number, not {duration!r}"
            )
        if post.options.get("photo_cover_index", 0) >= max(len(kinds), 1):
            raise invalid("options.photo_cover_index is past the last photo")
        if "video" in kinds:
            if len(kinds) > 1:
                raise invalid("a video post holds exactly one video and no photos")
            if utf16_length(post.text) > MAX_TITLE_UTF16:
                raise invalid(
                    f"the caption is {utf16_length(post.text)} UTF-16 units long, "
                    f"the limit is {MAX_TITLE_UTF16}"
                )
            return
        if len(kinds) > MAX_PHOTOS:
            raise invalid(f"a photo post holds at most {MAX_PHOTOS} photos")
        if len(str(post.options.get("title", ""))) > MAX_PHOTO_TITLE:
            raise invalid(f"a photo post title is at most {MAX_PHOTO_TITLE} characters")
        if utf16_length(post.text) > MAX_PHOTO_DESCRIPTION_UTF16:
            raise invalid(
                f"a photo description is at most {MAX_PHOTO_DESCRIPTION_UTF16} "
                "UTF-16 units"
            )

    async def publish(
        self, post: Post, credentials: Credentials, handles: HandleStore
    ) -> Published:
        self.validate(post)
        session = TikTokSession(self, credentials)

        saved = post.handles.get(PUBLISH_HANDLE)
        if isinstance(saved, dict) and saved.get("publish_id"):
            status = await fetch_status(session, saved["publish_id"])
            if still_counts(status, saved):
                # Never initialise again while TikTok holds this post.
                return await wait_published(
                    session,
                    post,
                    saved,
                    status,
                    poll_interval=self.poll_interval,
                    poll_timeout=self.poll_timeout,
                )
            logger.info(
                "event=tiktok.reinit post=%s old_publish_id=%s status=%s",
                post.id,
                saved["publish_id"],
                status.get("status"),
            )

        creator = await session.call("/v2/post/publish/creator_info/query/")
        privacy = self._check_creator(post, creator)
        # Kept with the publish_id so that a later attempt can build the URL.
        username = creator.get("creator_username")
        if _url_kind(post.media_urls[0]) != "video":
            saved = await self._init_photos(session, post, privacy, handles, username)
        elif post.options.get("source") == "PULL_FROM_URL":
            saved = await self._init_video_pull(
                session, post, privacy, handles, username
            )
        else:
            saved = await upload_video(
                self, session, post, self._post_info(post, privacy), handles, username
            )

        status = await fetch_status(session, saved["publish_id"])
        return await wait_published(
            session,
            post,
            saved,
            status,
            poll_interval=self.poll_interval,
            poll_timeout=self.poll_timeout,
        )

    async def reconcile(self, post: Post, credentials: Credentials) -> Published | None:
        """Poll the saved `publish_id` once.

        Complete → live; FAILED or an upload that never finished → not live;
        still processing → UNKNOWN_OUTCOME (it may yet appear). Without a
        saved `publish_id`, a FILE_UPLOAD video never sent a byte, so it is
        not live; a pulled post may be, and TikTok offers no way to look it up.
        """
        saved = post.handles.get(PUBLISH_HANDLE)
        if not (isinstance(saved, dict) and saved.get("publish_id")):
            pulled = (
                _url_kind(post.media_urls[0]) != "video" if post.media_urls else True
            )
            if not (pulled or post.options.get("source") == "PULL_FROM_URL"):
                return None
            raise PublishError(
                ErrorKind.UNKNOWN_OUTCOME,
                "TikTok returned no publish_id before the connection broke; "
                "check the account's profile before retrying",
            )
        session = TikTokSession(self, credentials)
        status = await fetch_status(session, saved["publish_id"])
        if status.get("status") in DONE_STATES:
            return published_result(saved, status)
        if not still_counts(status, saved):
            return None
        raise PublishError(
            ErrorKind.UNKNOWN_OUTCOME,
            f"TikTok is still processing publish_id {saved['publish_id']} "
            f"({status.get('status')}); look again later",
        )

    async def refresh_token(
        self, refresh_token: str, client_id: str | None, client_secret: str | None
    ) -> TokenGrant:
        """Exchange a refresh token; TikTok rotates it, so store the new one at once."""
        if not (client_id and client_secret):
            raise PublishError(
                ErrorKind.CONFIG, "TikTok refresh needs the app's client key and secret"
            )
        form = {
            "client_key": client_id,
            "client_secret": client_secret,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }
        response = await self.request("POST", self.url("/v2/oauth/token/"), data=form)
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.is_success and isinstance(body, dict) and body.get("access_token"):
            return TokenGrant(
                access_token=str(body["access_token"]),
                refresh_token=body.get("refresh_token") or refresh_token,
                expires_in=body.get("expires_in"),
                refresh_expires_in=body.get("refresh_expires_in"),
            )
        if response.status_code >= 500 or response.status_code == 429:
            raise PublishError(
                ErrorKind.TRANSIENT,
                f"TikTok token endpoint answered HTTP {response.status_code}",
                http_status=response.status_code,
            )
        reason = body.get("error", "unknown") if isinstance(body, dict) else "unknown"
        raise PublishError(
            ErrorKind.AUTH,
            f"TikTok refused the refresh token ({reason}): reconnect the account",
            http_status=response.status_code,
            platform_code=str(reason),
        )

    def _check_creator(self, post: Post, creator: dict[str, Any]) -> str:
        """The requested privacy level, if this creator may use it."""
        privacy = str(post.options.get("privacy_level") or PRIVACY_DEFAULT)
        allowed = creator.get("privacy_level_options") or []
        if privacy not in allowed:
            raise PublishError(
                ErrorKind.INVALID,
                f"TikTok: this creator cannot post with privacy_level {privacy}; "
                f"allowed: {', '.join(map(str, allowed)) or 'none'}",
                platform_code="privacy_level_option_mismatch",
            )
        duration = post.options.get("video_duration_sec")
        longest = creator.get("max_video_post_duration_sec")
        if duration is not None and longest is not None and duration > longest:
            raise PublishError(
                ErrorKind.INVALID,
                f"TikTok: the video lasts {duration} s, this creator may post "
                f"at most {longest} s",
            )
        return privacy

    def _post_info(self, post: Post, privacy: str) -> dict[str, Any]:
        options = post.options
        info: dict[str, Any] = {
            "title": post.text,
            "privacy_level": privacy,
            "disable_comment": bool(options.get("disable_comment", False)),
            "disable_duet": bool(options.get("disable_duet", False)),
            "disable_stitch": bool(options.get("disable_stitch", False)),
        }
        if "video_cover_timestamp_ms" in options:
            info["video_cover_timestamp_ms"] = int(options["video_cover_timestamp_ms"])
        return info

    async def _init_video_pull(
        self,
        session: TikTokSession,
        post: Post,
        privacy: str,
        handles: HandleStore,
        username: str | None,
    ) -> dict[str, Any]:
        body = {
            "post_info": self._post_info(post, privacy),
            "source_info": {"source": "PULL_FROM_URL", "video_url": post.media_urls[0]},
        }
        # TikTok starts pulling and posting at once: a lost answer is unknown.
        data = await session.call("/v2/post/publish/video/init/", body, creates=True)
        extra = {"source": "PULL_FROM_URL", "media_type": "VIDEO", "username": username}
        return await save_publish(handles, post, data, extra)

    async def _init_photos(
        self,
        session: TikTokSession,
        post: Post,
        privacy: str,
        handles: HandleStore,
        username: str | None,
    ) -> dict[str, Any]:
        options = post.options
        body = {
            "media_type": "PHOTO",
            "post_mode": "DIRECT_POST",
            "post_info": {
                "title": str(options.get("title", "")),
                "description": post.text,
                "privacy_level": privacy,
                "disable_comment": bool(options.get("disable_comment", False)),
                "auto_add_music": bool(options.get("auto_add_music", False)),
            },
            "source_info": {
                "source": "PULL_FROM_URL",
                "photo_images": list(post.media_urls),
                "photo_cover_index": int(options.get("photo_cover_index", 0)),
            },
        }
        data = await session.call("/v2/post/publish/content/init/", body, creates=True)
        extra = {"source": "PULL_FROM_URL", "media_type": "PHOTO", "username": username}
        return await save_publish(handles, post, data, extra)


def _url_kind(url: str) -> str:
    """`"video"` or `"image"` by the URL's extension; unknown counts as video."""
    kind = media_kind(content_type_from_url(url) or "")
    return "image" if kind in ("image", "gif") else "video"
