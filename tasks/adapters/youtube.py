"""YouTube: `videos.insert` through the resumable upload protocol (Data API v3).

`POST /upload/youtube/v3/videos?uploadType=resumable&part=snippet,status`
opens an upload session and answers its URI in `Location`. The URI is saved
through the `HandleStore` before the first byte is sent, because a new
session for the same post would create a second video. The file then goes up
in `PUT` chunks with `Content-Range`; each answers 308 with the `Range`
received so far, the last one 200/201 with the video resource.

After an interruption, `PUT` with ``Content-Range: bytes */TOTAL`` and no body
asks the session where it stands: 308 means resume from `Range`, 200/201
means the video exists. `reconcile` and every later attempt do that before
anything else; only an expired session (404/410) lets a new one start.

Options read from `post.options`: ``title`` (default: the text's first line),
``description`` (default: the text), ``tags``, ``category_id`` (default
``22``), ``privacy_status`` (``private``, ``unlisted`` or ``public``;
default ``private``, the only status unaudited API projects may use),
``made_for_kids``.
"""

from __future__ import annotations

import logging
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
    json_object,
)
from tasks.adapters.media import Media, content_type_from_url, fetch_media, media_kind
from tasks.adapters.youtube_errors import classify

logger = logging.getLogger(__name__)

SESSION_HANDLE = "youtube_upload_session"
MAX_TITLE = 100
MAX_DESCRIPTION_BYTES = 5000
MAX_VIDEO_BYTES = 256 * 1024**3
PRIVACY_STATUSES = ("private", "unlisted", "public")
# Google requires every chunk but the last to be a multiple of 256 KiB.
CHUNK_UNIT = 256 * 1024


def video_metadata(post: Post) -> dict[str, Any]:
    """The `snippet` and `status` parts of the video resource for `post`."""
    options = post.options
    lines = post.text.strip().splitlines()
    title = str(options.get("title") or (lines[0].strip() if lines else ""))
    snippet: dict[str, Any] = {
        "title": title,
        "description": str(options.get("description", post.text)),
        "categoryId": str(options.get("category_id", "22")),
    }
    if options.get("tags"):
        snippet["tags"] = [str(tag) for tag in options["tags"]]
    status: dict[str, Any] = {
        "privacyStatus": str(options.get("privacy_status", "private")),
    }
    if "made_for_kids" in options:
        status["selfDeclaredMadeForKids"] = bool(options["made_for_kids"])
    return {"snippet": snippet, "status": status}


class _SessionGone(Exception):
    """The upload session expired or is unknown; it never produced a video."""


class YouTubeAdapter(Adapter):
    """Uploads one video per post to a YouTube channel."""

    platform = "youtube"
    default_base_url = "https://www.googleapis.com"

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str | None = None,
        *,
        oauth_base_url: str = "https://oauth2.googleapis.com",
        chunk_size: int = 32 * CHUNK_UNIT,
    ) -> None:
        super().__init__(client, base_url)
        self.oauth_base_url = oauth_base_url.rstrip("/")
        self.chunk_size = max(CHUNK_UNIT, chunk_size // CHUNK_UNIT * CHUNK_UNIT)

    def validate(self, post: Post) -> None:
        def invalid(message: str) -> PublishError:
            return PublishError(ErrorKind.INVALID, f"YouTube: {message}")

        if len(post.media_urls) != 1:
            raise invalid(f"a post needs exactly one video, not {len(post.media_urls)}")
        if media_kind(content_type_from_url(post.media_urls[0]) or "") in (
            "image",
            "gif",
        ):
            raise invalid(f"{post.media_urls[0]} is an image, not a video")
        meta = video_metadata(post)
        title, description = meta["snippet"]["title"], meta["snippet"]["description"]
        if not title:
            raise invalid("a video needs a title (options.title or a first line)")
        if len(title) > MAX_TITLE:
            raise invalid(f"the title has {len(title)} characters, at most {MAX_TITLE}")
        if len(description.encode()) > MAX_DESCRIPTION_BYTES:
            raise invalid(f"the description exceeds {MAX_DESCRIPTION_BYTES} bytes")
        if any(c in title + description for c in "<>"):
            raise invalid("the title and description may not contain < or >")
        privacy = meta["status"]["privacyStatus"]
        if privacy not in PRIVACY_STATUSES:
            raise invalid(
                f"privacy_status {privacy!r} is not one of "
                + ", ".join(PRIVACY_STATUSES)
            )

    async def publish(
        self, post: Post, credentials: Credentials, handles: HandleStore
    ) -> Published:
        self.validate(post)
        auth = RefreshOnce(credentials)

        saved = post.handles.get(SESSION_HANDLE)
        offset = 0
        if isinstance(saved, dict) and saved.get("uri"):
            try:
                done, offset = await self._query(auth, saved)
            except _SessionGone:
                saved = None
            else:
                if done is not None:
                    return done

        async with fetch_media(
            self.client, post.media_urls[0], MAX_VIDEO_BYTES
        ) as media:
            if media.kind != "video":
                raise PublishError(
                    ErrorKind.INVALID,
                    f"YouTube: {media.url} is {media.content_type}, not a video",
                )
            if not saved or saved.get("size") != media.size:
                # A session for other bytes can never complete: safe to replace.
                saved = await self._start(auth, post, media)
                await handles.save(SESSION_HANDLE, saved)
                offset = 0
            published = await self._upload(auth, saved, media, offset)

        logger.info(
            "event=youtube.published post=%s video_id=%s", post.id, published.remote_id
        )
        return published

    async def reconcile(self, post: Post, credentials: Credentials) -> Published | None:
        """Ask the saved upload session whether the video exists.

        Complete → live. Incomplete, expired, or never started → not live: a
        video exists only once its last byte is in.
        """
        saved = post.handles.get(SESSION_HANDLE)
        if not (isinstance(saved, dict) and saved.get("uri")):
            return None
        try:
            done, _ = await self._query(RefreshOnce(credentials), saved)
        except _SessionGone:
            return None
        return done

    async def refresh_token(
        self, refresh_token: str, client_id: str | None, client_secret: str | None
    ) -> TokenGrant:
        """Exchange a refresh token at Google's token endpoint."""
        if not (client_id and client_secret):
            raise PublishError(
                ErrorKind.CONFIG, "YouTube refresh needs the OAuth client id and secret"
            )
        form = {
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
            "grant_type": "refresh_token",
        }
        response = await self.request("POST", f"{self.oauth_base_url}/token", data=form)
        body = json_object(response)
        if response.is_success and body.get("access_token"):
            return TokenGrant(
                access_token=str(body["access_token"]),
                # Google rarely rotates refresh tokens; keep the old one if not.
                refresh_token=body.get("refresh_token") or refresh_token,
                expires_in=body.get("expires_in"),
            )
        if response.status_code >= 500:
            raise PublishError(
                ErrorKind.TRANSIENT,
                f"Google's token endpoint answered HTTP {response.status_code}",
                http_status=response.status_code,
            )
        reason = str(body.get("error", "unknown"))
        kind = ErrorKind.CONFIG if reason == "invalid_client" else ErrorKind.AUTH
        raise PublishError(
            kind,
            f"Google refused the refresh ({reason}): "
            + (
                "check the OAuth client"
                if kind is ErrorKind.CONFIG
                else "reconnect the channel"
            ),
            http_status=response.status_code,
            platform_code=reason,
        )

    async def _send(
        self,
        auth: RefreshOnce,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        creates: bool = False,
        **kw: Any,
    ) -> httpx.Response:
        """One request with the Bearer token; a 401 refreshes it once."""
        while True:
            response = await self.request(
                method,
                url,
                creates=creates,
                headers={**headers, "Authorization": auth.authorization},
                **kw,
            )
            if response.status_code == 401 and await auth.refresh():
                # Google checked the token before touching the upload.
                continue
            return response

    async def _start(
        self, auth: RefreshOnce, post: Post, media: Media
    ) -> dict[str, Any]:
        """Open a resumable session; returns the handle to save."""
        url = self.url("/upload/youtube/v3/videos")
        response = await self._send(
            auth,
            "POST",
            url,
            params={"uploadType": "resumable", "part": "snippet,status"},
            json=video_metadata(post),
            headers={
                "Content-Type": "application/json; charset=UTF-8",
                "X-Upload-Content-Length": str(media.size),
                "X-Upload-Content-Type": media.content_type,
            },
        )
        if not response.is_success:
            raise classify(response, "starting the upload session")
        location = response.headers.get("location")
        if not location:
            # A session without bytes never becomes a video: plain retry.
            raise PublishError(
                ErrorKind.TRANSIENT,
                "YouTube opened an upload session without a Location header; retrying",
                http_status=response.status_code,
            )
        logger.info(
            "event=youtube.session_started post=%s size=%d", post.id, media.size
        )
        return {"uri": location, "size": media.size}

    async def _query(
        self, auth: RefreshOnce, saved: dict[str, Any]
    ) -> tuple[Published | None, int]:
        """Where a saved session stands: (the video, 0) or (None, next offset)."""
        response = await self._send(
            auth,
            "PUT",
            str(saved["uri"]),
            headers={
                "Content-Range": f"bytes */{saved['size']}",
                "Content-Length": "0",
            },
        )
        if response.status_code in (404, 410):
            raise _SessionGone
        if response.status_code in (200, 201):
            return _video(response, query=True), 0
        if response.status_code == 308:
            return None, _next_offset(response)
        raise classify(response, "querying the upload session")

    async def _upload(
        self, auth: RefreshOnce, saved: dict[str, Any], media: Media, offset: int
    ) -> Published:
        """PUT the bytes from `offset` on, following the server's `Range`."""
        stalled = 0
        while True:
            last = min(offset + self.chunk_size, media.size) - 1
            final = last == media.size - 1
            response = await self._send(
                auth,
                "PUT",
                str(saved["uri"]),
                # The last chunk creates the video: a lost answer is unknown.
                creates=final,
                content=media.read_range(offset, last),
                headers={
                    "Content-Type": media.content_type,
                    "Content-Range": f"bytes {offset}-{last}/{media.size}",
                },
            )
            if response.status_code in (200, 201):
                return _video(response, query=False)
            if response.status_code in (404, 410):
                raise PublishError(
                    ErrorKind.TRANSIENT,
                    "the YouTube upload session expired before the last byte; "
                    "the next attempt starts a new one",
                    http_status=response.status_code,
                )
            if response.status_code != 308:
                raise classify(response, f"uploading bytes {offset}-{last}")

            resumed = _next_offset(response)
            stalled = stalled + 1 if resumed <= offset else 0
            if stalled >= 3:
                raise PublishError(
                    ErrorKind.TRANSIENT,
                    f"YouTube keeps answering 308 at byte {resumed}; "
                    "the next attempt resumes the same session",
                )
            offset = resumed
            logger.debug("youtube upload at byte %d of %d", offset, media.size)


def _next_offset(response: httpx.Response) -> int:
    """The first byte the session still needs, from ``Range: bytes=0-N``."""
    value = response.headers.get("range", "")
    try:
        return int(value.rsplit("-", 1)[1]) + 1
    except (IndexError, ValueError):
        return 0


def _video(response: httpx.Response, *, query: bool) -> Published:
    video_id = json_object(response).get("id")
    if not video_id:
        raise PublishError(
            ErrorKind.UNKNOWN_OUTCOME,
            "YouTube finished the upload but named no video id; check the "
            "channel's uploads before retrying",
            http_status=response.status_code,
        )
    if query:
        logger.info("event=youtube.reconciled video_id=%s", video_id)
    return Published(str(video_id), f"https://www.youtube.com/watch?v={video_id}")
