"""A fake of TikTok's Content Posting API (Direct Post), mounted at `/tiktok`.

What it models, with TikTok's documented bodies (``{"data": …, "error":
{"code", "message", "log_id"}}``):

- Bearer auth: a token starting with ``expired-``, or one that a refresh
  replaced, answers 401 ``access_token_invalid``. `POST /v2/oauth/token/`
  rotates refresh tokens: a used refresh token answers ``invalid_grant``.
- `creator_info/query/` with `privacy_level_options` and
  `max_video_post_duration_sec` (class attributes).
- `video/init/` (FILE_UPLOAD with TikTok's chunk rules, or PULL_FROM_URL) and
  `content/init/` for photos; 6 inits per minute per token, then 429
  ``rate_limit_exceeded``.
- `PUT /upload/video/?upload_id=…` with `Content-Range`, chunks in order,
  206 until the last, which answers 201.
- `status/fetch/`: `PROCESSING_UPLOAD` / `PROCESSING_DOWNLOAD` for
  `polls_until_complete` fetches after the media is in, then
  `PUBLISH_COMPLETE` (or `FAILED` with `fail_reason` when set).
  `publicaly_available_post_id` (TikTok's spelling) is empty for
  ``SELF_ONLY`` posts, which never get a public id.

A post is recorded with `state.publish` when TikTok has all of it (the last
chunk, or the init of a pulled post). Pulled URLs are not downloaded.
"""

from __future__ import annotations

import itertools
import random
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.common import bearer_token
from sandbox.core import FakePlatform, SandboxState

MIN_CHUNK = 5 * 1024 * 1024
MAX_CHUNK = 64 * 1024 * 1024
MAX_LAST_CHUNK = 128 * 1024 * 1024
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@dataclass
class _Publish:
    id: str
    token: str
    media_type: str
    source: str
    post_info: dict[str, Any]
    media: list[str]
    video_size: int = 0
    chunk_size: int = 0
    chunk_count: int = 0
    received: int = 0
    chunks_received: int = 0
    polls_left: int = 0
    complete: bool = False
    post_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def tiktok_answer(
    status: int, code: str = "ok", message: str = "", data: dict[str, Any] | None = None
) -> JSONResponse:
    """A Content Posting API answer: `data` plus the `error` object."""
    body = {
        "data": data or {},
        "error": {"code": code, "message": message, "log_id": secrets.token_hex(8)},
    }
    return JSONResponse(body, status)


class TikTokFake(FakePlatform):
    """open.tiktokapis.com's posting and OAuth endpoints, plus the upload host."""

    name = "tiktok"
    privacy_level_options: tuple[str, ...] = (
        "PUBLIC_TO_EVERYONE",
        "MUTUAL_FOLLOW_FRIENDS",
        "SELF_ONLY",
    )
    max_video_post_duration_sec = 600
    creator_username = "sandbox.creator"
    polls_until_complete = 1
    fail_reason: str | None = None
    init_limit_per_minute = 6
    client_key = "sandbox-client"
    client_secret = "sandbox-secret"

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.publishes: dict[str, _Publish] = {}
        self.init_times: dict[str, list[float]] = {}
        self.revoked_tokens: set[str] = set()
        self.used_refresh_tokens: set[str] = set()
        self.issued: dict[str, str] = {}  # refresh token -> its access token
        self.ids = itertools.count(7_300_000_000_000_000_000)
        self.lock = threading.Lock()

    creates = (("POST", r"/(video|content)/init/$"),)

    def routes(self) -> list[BaseRoute]:
        prefix = "/v2/post/publish"
        return [
            Route("/v2/oauth/token/", self.token, methods=["POST"]),
            Route(f"{prefix}/creator_info/query/", self.creator_info, methods=["POST"]),
            Route(f"{prefix}/video/init/", self.video_init, methods=["POST"]),
            Route(f"{prefix}/content/init/", self.content_init, methods=["POST"]),
            Route(f"{prefix}/status/fetch/", self.status_fetch, methods=["POST"]),
            Route("/upload/video/", self.upload, methods=["PUT"]),
        ]

    def injected_failure(self, rng: random.Random) -> Response:
        """TikTok's own 429 `rate_limit_exceeded` or 500 `internal_error`."""
        if rng.random() < 0.5:
            return tiktok_answer(
                429, "rate_limit_exceeded", "The API rate limit was exceeded."
            )
        return tiktok_answer(500, "internal_error", "Something went wrong.")

    def _token(self, request: Request) -> tuple[str | None, Response | None]:
        token = bearer_token(request)
        if not token or token.startswith("expired-") or token in self.revoked_tokens:
            return None, tiktok_answer(
                401,
                "access_token_invalid",
                "The access token is invalid or not found in the request.",
            )
        return token, None

    async def _json(self, request: Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def token(self, request: Request) -> Response:
        form = await request.form()
        if form.get("client_key") != self.client_key or (
            form.get("client_secret") != self.client_secret
        ):
            return JSONResponse(
                {
                    "error": "invalid_client",
                    "error_description": "Client key or secret is incorrect.",
                    "log_id": secrets.token_hex(8),
                },
                401,
            )
        refresh = str(form.get("refresh_token", ""))
        with self.lock:
            if (
                form.get("grant_type") != "refresh_token"
                or not refresh
                or refresh in self.used_refresh_tokens
            ):
                return JSONResponse(
                    {
                        "error": "invalid_grant",
                        "error_description": "Refresh token is invalid or expired.",
                        "log_id": secrets.token_hex(8),
                    },
                    400,
                )
            # Rotation: the old refresh token and its access token stop working.
            self.used_refresh_tokens.add(refresh)
            if refresh in self.issued:
                self.revoked_tokens.add(self.issued[refresh])
            access = f"act.{secrets.token_urlsafe(12)}"
            new_refresh = f"rft.{secrets.token_urlsafe(12)}"
            self.issued[new_refresh] = access
        return JSONResponse(
            {
                "access_token": access,
                "expires_in": 86400,
                "open_id": "sandbox-open-id",
                "refresh_token": new_refresh,
                "refresh_expires_in": 31536000,
                "scope": "user.info.basic,video.publish",
                "token_type": "Bearer",
            }
        )

    async def creator_info(self, request: Request) -> Response:
        _, denied = self._token(request)
        if denied is not None:
            return denied
        return tiktok_answer(
            200,
            data={
                "creator_avatar_url": "https://p16.tiktokcdn.com/sandbox.jpeg",
                "creator_username": self.creator_username,
                "creator_nickname": "Sandbox Creator",
                "privacy_level_options": list(self.privacy_level_options),
                "comment_disabled": False,
                "duet_disabled": False,
                "stitch_disabled": False,
                "max_video_post_duration_sec": self.max_video_post_duration_sec,
            },
        )

    def _rate_limited(self, token: str) -> Response | None:
        now = time.time()
        recent = [t for t in self.init_times.get(token, []) if now - t < 60]
        if len(recent) >= self.init_limit_per_minute:
            self.init_times[token] = recent
            return tiktok_answer(
                429, "rate_limit_exceeded", "The API rate limit was exceeded."
            )
        self.init_times[token] = [*recent, now]
        return None

    def _check_post_info(self, info: Any, *, photo: bool) -> Response | None:
        if not isinstance(info, dict):
            return tiktok_answer(400, "invalid_params", "post_info is required.")
        privacy = info.get("privacy_level")
        if privacy not in (
            "PUBLIC_TO_EVERYONE",
            "MUTUAL_FOLLOW_FRIENDS",
            "FOLLOWER_OF_CREATOR",
            "SELF_ONLY",
        ):
            return tiktok_answer(400, "invalid_params", "privacy_level is invalid.")
        if privacy not in self.privacy_level_options:
            return tiktok_answer(
                403,
                "privacy_level_option_mismatch",
                "privacy_level is not one of the creator's privacy_level_options.",
            )
        title = str(info.get("title", ""))
        limit = 90 if photo else 2200
        if len(title.encode("utf-16-le")) // 2 > limit:
            return tiktok_answer(400, "invalid_params", f"title exceeds {limit}.")
        return None

    async def video_init(self, request: Request) -> Response:
        token, denied = self._token(request)
        if denied is not None or token is None:
            return denied or Response(status_code=500)
        body = await self._json(request)
        if body is None:
            return tiktok_answer(400, "invalid_params", "The body is not JSON.")
        if (
            bad := self._check_post_info(body.get("post_info"), photo=False)
        ) is not None:
            return bad
        source = body.get("source_info") or {}
        kind = source.get("source")

        with self.lock:
            if (limited := self._rate_limited(token)) is not None:
                return limited
            publish = _Publish(
                id=f"v_pub_file~v2-1.{next(self.ids)}",
                token=token,
                media_type="VIDEO",
                source=str(kind),
                post_info=body["post_info"],
                media=[],
                polls_left=self.polls_until_complete,
            )
            if kind == "FILE_UPLOAD":
                if (bad := self._check_chunks(source)) is not None:
                    return bad
                publish.video_size = int(source["video_size"])
                publish.chunk_size = int(source["chunk_size"])
                publish.chunk_count = int(source["total_chunk_count"])
            elif kind == "PULL_FROM_URL":
                url = source.get("video_url")
                if not isinstance(url, str) or not url.startswith(
                    ("http://", "https://")
                ):
                    return tiktok_answer(400, "invalid_params", "video_url is invalid.")
                publish.media = [url]
            else:
                return tiktok_answer(400, "invalid_params", "source is invalid.")
            self.publishes[publish.id] = publish

        data: dict[str, Any] = {"publish_id": publish.id}
        if kind == "FILE_UPLOAD":
            root = str(request.base_url).rstrip("/") + request.scope.get(
                "root_path", ""
            )
            data["upload_url"] = (
                f"{root}/upload/video/?upload_id={publish.id}"
                f"&upload_token={secrets.token_urlsafe(8)}"
            )
        else:
            self._complete(publish)
        return tiktok_answer(200, data=data)

    def _check_chunks(self, source: dict[str, Any]) -> Response | None:
        """TikTok's chunk rules for a FILE_UPLOAD init."""
        try:
            size = int(source["video_size"])
            chunk = int(source["chunk_size"])
            count = int(source["total_chunk_count"])
        except (KeyError, TypeError, ValueError):
            return tiktok_answer(
                400,
                "invalid_params",
                "video_size, chunk_size and total_chunk_count "
                "are required for FILE_UPLOAD.",
            )
        if size < MIN_CHUNK:
            ok = chunk == size and count == 1
        else:
            last = size - (count - 1) * chunk
            ok = (
                MIN_CHUNK <= chunk <= MAX_CHUNK
                and 1 <= count <= 1000
                and count == size // chunk
                and chunk <= last <= MAX_LAST_CHUNK
            )
        if not ok:
            return tiktok_answer(
                400, "invalid_params", "The chunk_size or total_chunk_count is invalid."
            )
        return None

    async def content_init(self, request: Request) -> Response:
        token, denied = self._token(request)
        if denied is not None or token is None:
            return denied or Response(status_code=500)
        body = await self._json(request)
        if body is None or body.get("media_type") != "PHOTO":
            return tiktok_answer(400, "invalid_params", "media_type must be PHOTO.")
        if body.get("post_mode") not in ("DIRECT_POST", "MEDIA_UPLOAD"):
            return tiktok_answer(400, "invalid_params", "post_mode is invalid.")
        if (
            bad := self._check_post_info(body.get("post_info"), photo=True)
        ) is not None:
            return bad
        source = body.get("source_info") or {}
        images = source.get("photo_images")
        if source.get("source") != "PULL_FROM_URL" or not (
            isinstance(images, list) and 1 <= len(images) <= 35
        ):
            return tiktok_answer(
                400, "invalid_params", "photo_images must list 1 to 35 URLs."
            )
        if not 0 <= int(source.get("photo_cover_index", 0)) < len(images):
            return tiktok_answer(400, "invalid_params", "photo_cover_index is invalid.")

        with self.lock:
            if (limited := self._rate_limited(token)) is not None:
                return limited
            publish = _Publish(
                id=f"p_pub_url~v2.{next(self.ids)}",
                token=token,
                media_type="PHOTO",
                source="PULL_FROM_URL",
                post_info=body["post_info"],
                media=[str(u) for u in images],
                polls_left=self.polls_until_complete,
            )
            self.publishes[publish.id] = publish
        self._complete(publish)
        return tiktok_answer(200, data={"publish_id": publish.id})

    async def upload(self, request: Request) -> Response:
        publish = self.publishes.get(request.query_params.get("upload_id", ""))
        if publish is None or publish.source != "FILE_UPLOAD":
            return tiktok_answer(404, "invalid_params", "Unknown upload_id.")
        match = CONTENT_RANGE.fullmatch(request.headers.get("content-range", ""))
        body = await request.body()
        if match is None:
            return tiktok_answer(
                400, "invalid_file_upload", "Content-Range is missing."
            )
        first, last, total = (int(g) for g in match.groups())

        with self.lock:
            index = publish.chunks_received
            final = index == publish.chunk_count - 1
            expected_last = (
                publish.video_size - 1 if final else first + publish.chunk_size - 1
            )
            if (
                publish.complete
                or total != publish.video_size
                or first != publish.received
                or last != expected_last
                or len(body) != last - first + 1
            ):
                return tiktok_answer(
                    416, "invalid_file_upload", "The chunk is out of order or range."
                )
            publish.received = last + 1
            publish.chunks_received += 1
        if not final:
            return Response(status_code=206)
        self._complete(publish)
        return Response(status_code=201)

    def _complete(self, publish: _Publish) -> None:
        """TikTok has the whole post: it will go out (unless a failure is staged)."""
        with self.lock:
            publish.complete = True
            if self.fail_reason:
                return
            if publish.post_info.get("privacy_level") != "SELF_ONLY":
                publish.post_id = str(next(self.ids))
        self.state.publish(
            self.name,
            {
                "publish_id": publish.id,
                "post_id": publish.post_id,
                "media_type": publish.media_type,
                "source": publish.source,
                "title": publish.post_info.get("title"),
                "description": publish.post_info.get("description"),
                "privacy_level": publish.post_info.get("privacy_level"),
                "media_urls": publish.media,
                "video_size": publish.video_size,
            },
        )

    async def status_fetch(self, request: Request) -> Response:
        _, denied = self._token(request)
        if denied is not None:
            return denied
        body = await self._json(request) or {}
        publish = self.publishes.get(str(body.get("publish_id", "")))
        if publish is None:
            return tiktok_answer(400, "invalid_params", "publish_id does not exist.")

        with self.lock:
            data: dict[str, Any] = {}
            if publish.source == "FILE_UPLOAD":
                data["uploaded_bytes"] = publish.received
            else:
                data["downloaded_bytes"] = 0
            if not publish.complete or publish.polls_left > 0:
                if publish.complete:
                    publish.polls_left -= 1
                data["status"] = (
                    "PROCESSING_UPLOAD"
                    if publish.source == "FILE_UPLOAD"
                    else "PROCESSING_DOWNLOAD"
                )
            elif self.fail_reason:
                data |= {"status": "FAILED", "fail_reason": self.fail_reason}
            else:
                data["status"] = "PUBLISH_COMPLETE"
                data["publicaly_available_post_id"] = (
                    [int(publish.post_id)] if publish.post_id else []
                )
        return tiktok_answer(200, data=data)
