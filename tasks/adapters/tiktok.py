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

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
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
    TokenGrant,
    retry_after,
)
from tasks.adapters.media import Media, content_type_from_url, fetch_media, media_kind

logger = logging.getLogger(__name__)

PUBLISH_HANDLE = "tiktok_publish"
MAX_TITLE_UTF16 = 2200
MAX_PHOTO_TITLE = 90
MAX_PHOTO_DESCRIPTION_UTF16 = 4000
MAX_PHOTOS = 35
MAX_VIDEO_BYTES = 4 * 1024**3
# Chunk rules: at least 5 MB (binary, the stricter reading), at most 64 MB
# (decimal, the stricter reading); the last chunk absorbs the remainder.
MIN_CHUNK = 5 * 1024 * 1024
MAX_CHUNK = 64 * 1000 * 1000
MAX_CHUNKS = 1000
PRIVACY_DEFAULT = "SELF_ONLY"
DONE_STATES = ("PUBLISH_COMPLETE", "SEND_TO_USER_INBOX")


def utf16_length(text: str) -> int:
    """Length as TikTok counts it: ``utf16_length("😀") == 2``."""
    return len(text.encode("utf-16-le")) // 2


def chunk_plan(size: int, preferred: int) -> tuple[int, int]:
    """`(chunk_size, total_chunk_count)` for a file of `size` bytes.

    Under 5 MB the file is one chunk; otherwise chunks of `preferred` (kept
    within the limits) with the remainder added to the last one, as TikTok
    counts them: ``chunk_plan(11 MiB, 5 MiB) == (5 MiB, 2)``.
    """
    if size < MIN_CHUNK:
        return size, 1
    chunk = min(max(preferred, MIN_CHUNK), MAX_CHUNK, size)
    count = size // chunk
    if count > MAX_CHUNKS:
        chunk = -(-size // MAX_CHUNKS)
        count = size // chunk
    return chunk, count


class _Session:
    """TikTok calls for one attempt, refreshing an invalid token at most once."""

    def __init__(self, adapter: TikTokAdapter, credentials: Credentials) -> None:
        self.adapter = adapter
        self.credentials = credentials
        self.refreshed = False

    async def call(
        self, path: str, body: dict[str, Any] | None = None, *, creates: bool = False
    ) -> dict[str, Any]:
        """POST one API call; returns its `data` object or raises PublishError."""
        url = self.adapter.url(path)
        while True:
            headers = {
                "Authorization": f"Bearer {self.credentials.access_token}",
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
            if (
                code == "access_token_invalid"
                and not self.refreshed
                and self.credentials.refresh is not None
            ):
                # TikTok rejected the token before doing anything: resending
                # with a fresh one cannot create a second post.
                self.refreshed = True
                self.credentials = await self.credentials.refresh()
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
        session = _Session(self, credentials)

        saved = post.handles.get(PUBLISH_HANDLE)
        if isinstance(saved, dict) and saved.get("publish_id"):
            status = await self._fetch_status(session, saved["publish_id"])
            if _still_counts(status, saved):
                # Never initialise again while TikTok holds this post.
                return await self._wait(session, post, saved, status)
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
            saved = await self._upload_video(session, post, privacy, handles, username)

        status = await self._fetch_status(session, saved["publish_id"])
        return await self._wait(session, post, saved, status)

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
        session = _Session(self, credentials)
        status = await self._fetch_status(session, saved["publish_id"])
        if status.get("status") in DONE_STATES:
            return _published(saved, status)
        if not _still_counts(status, saved):
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
        session: _Session,
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
        return await _save(handles, post, data, extra)

    async def _init_photos(
        self,
        session: _Session,
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
        return await _save(handles, post, data, extra)

    async def _upload_video(
        self,
        session: _Session,
        post: Post,
        privacy: str,
        handles: HandleStore,
        username: str | None,
    ) -> dict[str, Any]:
        async with fetch_media(
            self.client, post.media_urls[0], MAX_VIDEO_BYTES
        ) as media:
            if media.kind != "video":
                raise PublishError(
                    ErrorKind.INVALID,
                    f"TikTok: {media.url} is {media.content_type}, not a video",
                )
            chunk, count = chunk_plan(media.size, self.chunk_size)
            body = {
                "post_info": self._post_info(post, privacy),
                "source_info": {
                    "source": "FILE_UPLOAD",
                    "video_size": media.size,
                    "chunk_size": chunk,
                    "total_chunk_count": count,
                },
            }
            # Nothing is posted before the bytes arrive, so a lost answer to
            # init is a plain retry.
            data = await session.call("/v2/post/publish/video/init/", body)
            upload_url = data.get("upload_url")
            extra = {
                "source": "FILE_UPLOAD",
                "media_type": "VIDEO",
                "video_size": media.size,
                "username": username,
            }
            saved = await _save(handles, post, data, extra)
            if not upload_url:
                raise PublishError(
                    ErrorKind.TRANSIENT,
                    "TikTok initialised a FILE_UPLOAD without an upload_url; retrying",
                )
            await self._put_chunks(str(upload_url), media, chunk, count)
        return saved

    async def _put_chunks(
        self, upload_url: str, media: Media, chunk: int, count: int
    ) -> None:
        """PUT the file in order; every chunk but the last answers 206."""
        for index in range(count):
            first = index * chunk
            last = media.size - 1 if index == count - 1 else first + chunk - 1
            final = index == count - 1
            headers = {
                "Content-Type": media.content_type,
                "Content-Range": f"bytes {first}-{last}/{media.size}",
            }
            # The last chunk completes the upload and starts the post.
            response = await self.request(
                "PUT",
                upload_url,
                creates=final,
                content=media.read_range(first, last),
                headers=headers,
            )
            expected = (200, 201) if final else (206,)
            if response.status_code not in expected:
                kind = (
                    ErrorKind.TRANSIENT
                    if response.status_code >= 500 or response.status_code == 429
                    else ErrorKind.INVALID
                )
                raise PublishError(
                    kind,
                    f"TikTok refused video chunk {index + 1}/{count} "
                    f"(bytes {first}-{last}) with HTTP {response.status_code}",
                    http_status=response.status_code,
                    platform_code="invalid_file_upload",
                )

    async def _fetch_status(self, session: _Session, publish_id: str) -> dict[str, Any]:
        return await session.call(
            "/v2/post/publish/status/fetch/", {"publish_id": publish_id}
        )

    async def _wait(
        self,
        session: _Session,
        post: Post,
        saved: dict[str, Any],
        status: dict[str, Any],
    ) -> Published:
        """Poll the post's status until TikTok completes or fails it."""
        publish_id = str(saved["publish_id"])
        deadline = time.monotonic() + self.poll_timeout
        while True:
            state = status.get("status")
            logger.debug("tiktok publish_id=%s status=%s", publish_id, state)
            if state in DONE_STATES:
                published = _published(saved, status)
                logger.info(
                    "event=tiktok.published post=%s publish_id=%s remote_id=%s",
                    post.id,
                    publish_id,
                    published.remote_id,
                )
                return published
            if state == "FAILED":
                raise _failed(publish_id, str(status.get("fail_reason") or "unknown"))
            if time.monotonic() >= deadline:
                raise PublishError(
                    ErrorKind.TRANSIENT,
                    f"TikTok is still processing publish_id {publish_id} ({state}) "
                    f"after {self.poll_timeout:.0f} s; the next attempt polls it "
                    "again instead of posting anew",
                )
            await asyncio.sleep(self.poll_interval)
            status = await self._fetch_status(session, publish_id)


async def _save(
    handles: HandleStore, post: Post, data: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    publish_id = data.get("publish_id")
    if not publish_id:
        raise PublishError(
            ErrorKind.UNKNOWN_OUTCOME
            if extra["source"] == "PULL_FROM_URL"
            else ErrorKind.TRANSIENT,
            "TikTok accepted the post without returning a publish_id; "
            "check the account before retrying",
        )
    saved = {"publish_id": str(publish_id), **extra}
    await handles.save(PUBLISH_HANDLE, saved)
    logger.info("event=tiktok.initialised post=%s publish_id=%s", post.id, publish_id)
    return saved


def _still_counts(status: dict[str, Any], saved: dict[str, Any]) -> bool:
    """Whether a saved post may still go out (so no new init is allowed).

    FAILED never goes out. A FILE_UPLOAD whose bytes never all arrived cannot
    either: TikTok discards it when its upload URL expires.
    """
    state = status.get("status")
    if state == "FAILED":
        return False
    if state == "PROCESSING_UPLOAD" and saved.get("source") == "FILE_UPLOAD":
        uploaded = status.get("uploaded_bytes")
        size = saved.get("video_size")
        if isinstance(uploaded, int) and isinstance(size, int) and uploaded < size:
            return False
    return True


def _published(saved: dict[str, Any], status: dict[str, Any]) -> Published:
    # The API's own spelling; the list stays empty for private posts and
    # until moderation ends.
    post_ids = status.get("publicaly_available_post_id") or []
    if not post_ids:
        return Published(str(saved["publish_id"]), None)
    post_id = str(post_ids[0])
    username = saved.get("username")
    kind = "photo" if saved.get("media_type") == "PHOTO" else "video"
    url = f"https://www.tiktok.com/@{username}/{kind}/{post_id}" if username else None
    return Published(post_id, url)


def _failed(publish_id: str, reason: str) -> PublishError:
    """The error for a post TikTok reports FAILED (nothing went out)."""
    kind = ErrorKind.INVALID
    retry_at = None
    if reason in ("internal", "video_pull_failed", "photo_pull_failed"):
        kind = ErrorKind.TRANSIENT
    elif reason == "auth_removed":
        kind = ErrorKind.AUTH
    elif reason == "spam_risk_too_many_posts":
        kind = ErrorKind.RATE_LIMITED
        retry_at = datetime.now(UTC) + timedelta(hours=24)
    return PublishError(
        kind,
        f"TikTok failed publish_id {publish_id}: {reason}",
        retry_at=retry_at,
        platform_code=reason,
    )


def _url_kind(url: str) -> str:
    """`"video"` or `"image"` by the URL's extension; unknown counts as video."""
    kind = media_kind(content_type_from_url(url) or "")
    return "image" if kind in ("image", "gif") else "video"


# Error codes that defer the post rather than fail it, with how long to wait
# when TikTok sends no Retry-After.
_RATE_LIMIT_WAITS = {
    "rate_limit_exceeded": timedelta(minutes=1),
    "spam_risk_too_many_posts": timedelta(hours=24),
    # At most 5 shares may wait in creators' inboxes per 24 h; they clear as
    # creators act on them, so look again hourly.
    "spam_risk_too_many_pending_share": timedelta(hours=1),
}
_AUTH_CODES = {
    "access_token_invalid": "the access token is invalid or expired",
    "scope_not_authorized": "the account did not grant the video.publish scope",
    "scope_permission_missed": "the account did not grant the video.publish scope",
    # A ban is about the account, not this post: another post fails the same.
    "spam_risk_user_banned_from_posting": "TikTok banned this account from posting",
}
_CONFIG_CODES = {
    # Neither the post nor the token: the app's verified URL prefixes are.
    "url_ownership_unverified": "verify the media domain in the TikTok developer "
    "portal, or use FILE_UPLOAD",
}


def classify(
    code: str, error: dict[str, Any], response: httpx.Response, now: datetime
) -> PublishError:
    """The `PublishError` for a TikTok `error.code` and its HTTP status."""
    status = response.status_code
    detail = str(error.get("message") or "")[:300]
    log_id = error.get("log_id")
    message = f"TikTok refused the request ({code}, HTTP {status}"
    message += f", log_id {log_id}): {detail}" if log_id else f"): {detail}"

    def fail(kind: ErrorKind, advice: str, retry_at: datetime | None = None) -> Any:
        return PublishError(
            kind,
            f"{message}; {advice}",
            http_status=status,
            retry_at=retry_at,
            platform_code=code,
        )

    if code in _RATE_LIMIT_WAITS or status == 429:
        wait = _RATE_LIMIT_WAITS.get(code, timedelta(minutes=1))
        return fail(
            ErrorKind.RATE_LIMITED, "deferred", retry_after(response, now) or now + wait
        )
    if code in _AUTH_CODES:
        return fail(ErrorKind.AUTH, f"{_AUTH_CODES[code]}: reconnect the account")
    if code in _CONFIG_CODES:
        return fail(ErrorKind.CONFIG, _CONFIG_CODES[code])
    if code == "internal_error" or status >= 500:
        return fail(ErrorKind.TRANSIENT, "a temporary TikTok failure: retrying")
    # invalid_params, invalid_file_upload, privacy_level_option_mismatch,
    # unaudited_client_can_only_post_to_private_accounts (choose SELF_ONLY)...
    return fail(ErrorKind.INVALID, "TikTok will not accept this post as it is")


def unexpected(response: httpx.Response, path: str, *, creates: bool) -> PublishError:
    """An answer without TikTok's `error` object (a proxy, a wrong base URL)."""
    status = response.status_code
    if response.is_success:
        kind = ErrorKind.UNKNOWN_OUTCOME if creates else ErrorKind.TRANSIENT
    elif status == 429:
        return PublishError(
            ErrorKind.RATE_LIMITED,
            f"TikTok answered {path} with HTTP 429",
            http_status=429,
            retry_at=retry_after(response, datetime.now(UTC))
            or datetime.now(UTC) + timedelta(minutes=1),
        )
    else:
        kind = ErrorKind.CONFIG if status == 404 else ErrorKind.TRANSIENT
    advice = (
        "it may have posted: reconcile before retrying"
        if kind is ErrorKind.UNKNOWN_OUTCOME
        else "check TIKTOK_API_BASE_URL if this persists"
    )
    return PublishError(
        kind,
        f"TikTok answered {path} with HTTP {status} and no error object; {advice}",
        http_status=status,
    )
