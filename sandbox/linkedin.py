"""A fake of LinkedIn's versioned REST API (Posts, Images, Videos) and OAuth.

Checks what LinkedIn checks: a Bearer token, an active `LinkedIn-Version`
(missing or retired: 426 NONEXISTENT_VERSION), `X-Restli-Protocol-Version:
2.0.0`, and the post's required fields (422 with LinkedIn's error shape).
Like LinkedIn, it stores the commentary as "little" text: the post is cut at
the first unescaped reserved character, and escapes are removed. Identical
commentary from the same author answers 422 DUPLICATE_POST naming the
existing post; each member has a daily post quota (429, no rate headers).
"""

from __future__ import annotations

import itertools
import math
import random
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.common import bearer_token
from sandbox.core import FakePlatform, SandboxState

RESERVED = set("\\|{}@[]()<>#*_~")


def render_little(commentary: str) -> str:
    """The text LinkedIn shows for `commentary`: escapes removed, and the
    text cut at the first unescaped reserved character."""
    shown = []
    chars = iter(commentary)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            if escaped not in RESERVED:
                break
            shown.append(escaped)
        elif char in RESERVED:
            break
        else:
            shown.append(char)
    return "".join(shown)


def error(status: int, message: str, code: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"status": status, "message": message}
    if code:
        body["code"] = code
    return JSONResponse(body, status)


def active_versions(now: datetime) -> set[str]:
    """The monthly versions LinkedIn serves: the last twelve months."""
    months = now.year * 12 + now.month - 1
    return {f"{m // 12:04d}{m % 12 + 1:02d}" for m in range(months - 11, months + 1)}


class LinkedInFake(FakePlatform):
    """Fake LinkedIn. Class attributes tune it; tests subclass to change them."""

    name = "linkedin"
    daily_post_limit = 150
    video_part_bytes = 4 * 1024 * 1024
    processing_polls = 1

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.ids = itertools.count(7_100_000_000_000_000_000)
        self.posts: dict[str, dict[str, Any]] = {}
        # When each post shows in an author's posts (SandboxState.listing_lag).
        self.listed_from: dict[str, float] = {}
        self.images: dict[str, dict[str, Any]] = {}
        self.videos: dict[str, dict[str, Any]] = {}
        self.uploads: dict[str, tuple[str, int]] = {}
        self.daily: dict[tuple[str, str], int] = {}
        self.revoked: set[str] = set()
        self.used_refresh_tokens: set[str] = set()
        self.issued: dict[str, str] = {}

    creates = (("POST", r"^/rest/posts$"),)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/rest/posts", self.create_post, methods=["POST"]),
            Route("/rest/posts", self.find_posts, methods=["GET"]),
            Route("/rest/posts/{urn}", self.get_post, methods=["GET"]),
            Route("/rest/images", self.initialize_image, methods=["POST"]),
            Route("/rest/videos", self.video_action, methods=["POST"]),
            Route("/rest/videos/{urn}", self.get_video, methods=["GET"]),
            Route("/dms-uploads/{key}", self.upload, methods=["PUT"]),
            Route("/oauth/v2/accessToken", self.token, methods=["POST"]),
        ]

    def check(self, request: Request) -> Response | None:
        """Auth and protocol headers; an error answer, or None when fine."""
        token = bearer_token(request)
        if not token:
            return error(401, "Empty oauth2 access token", "EMPTY_ACCESS_TOKEN")
        if token.startswith("expired-") or token in self.revoked:
            return error(
                401, "The token used in the request has expired", "EXPIRED_ACCESS_TOKEN"
            )
        version = request.headers.get("linkedin-version", "")
        if version not in active_versions(datetime.now(UTC)):
            return error(
                426, f"Requested version {version} is not active", "NONEXISTENT_VERSION"
            )
        if request.headers.get("x-restli-protocol-version") != "2.0.0":
            return error(400, "X-Restli-Protocol-Version 2.0.0 is required")
        return None

    def injected_failure(self, rng: random.Random) -> Response:
        """A 5xx only: LinkedIn's 429 carries no reset header, so the adapter
        rightly defers it to midnight UTC, which would stall a demo."""
        status = rng.choice((500, 503, 504))
        return error(status, "Internal Server Error" if status == 500 else "Retry")

    # -- posts -----------------------------------------------------------

    async def create_post(self, request: Request) -> Response:
        if refused := self.check(request):
            return refused
        try:
            body = await request.json()
        except ValueError:
            return error(400, "Request body is not valid JSON")
        for field in ("author", "commentary", "visibility", "distribution"):
            if field not in body:
                return error(
                    422,
                    f"ERROR :: /{field} :: field is required but not found and has "
                    "no default value",
                )
        if body.get("lifecycleState") != "PUBLISHED":
            return error(422, "ERROR :: /lifecycleState :: must be PUBLISHED")
        if body["visibility"] not in ("PUBLIC", "CONNECTIONS", "LOGGED_IN"):
            return error(422, f"ERROR :: /visibility :: bad value {body['visibility']}")
        if len(body["commentary"]) > 3000 + body["commentary"].count("\\"):
            return error(422, "ERROR :: /commentary :: length exceeds 3000")
        if refused := self.check_content(body.get("content")):
            return refused

        author = body["author"]
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        if self.daily.get((author, day), 0) >= self.daily_post_limit:
            return JSONResponse(
                {
                    "status": 429,
                    "serviceErrorCode": 101,
                    "code": "TOO_MANY_REQUESTS",
                    "message": "Resource level throttle MEMBER DAY limit for calls "
                    "to this resource is reached.",
                },
                429,
            )
        for urn, existing in self.posts.items():
            if (
                existing["author"] == author
                and existing["commentary"] == body["commentary"]
            ):
                return self.duplicate(urn)

        urn = f"urn:li:share:{next(self.ids)}"
        self.daily[(author, day)] = self.daily.get((author, day), 0) + 1
        post = {**body, "id": urn, "createdAt": int(time.time() * 1000)}
        self.posts[urn] = post
        self.listed_from[urn] = self.state.listed_from()
        self.state.publish(
            self.name,
            {
                "id": urn,
                "author": author,
                "text": render_little(body["commentary"]),
                "content": body.get("content"),
            },
        )
        return Response(status_code=201, headers={"x-restli-id": urn})

    def check_content(self, content: Any) -> Response | None:
        if content is None:
            return None
        if "multiImage" in content:
            ids = [image.get("id") for image in content["multiImage"].get("images", [])]
            if not 2 <= len(ids) <= 20:
                return error(422, "ERROR :: /content/multiImage :: 2 to 20 images")
        else:
            ids = [(content.get("media") or {}).get("id")]
        for media_id in ids:
            item = self.images.get(media_id) or self.videos.get(media_id)
            if item is None or item["status"] != "AVAILABLE":
                return error(422, f"ERROR :: /content :: {media_id} is not available")
        return None

    def duplicate(self, urn: str) -> Response:
        return JSONResponse(
            {
                "errorDetailType": "com.linkedin.common.error.BadRequest",
                "message": "com.linkedin.content.common.exception."
                f"BadRequestResponseException: Content is a duplicate of {urn}",
                "errorDetails": {
                    "inputErrors": [
                        {
                            "description": "Duplicate post is detected",
                            "input": {},
                            "code": "DUPLICATE_POST",
                        }
                    ]
                },
                "status": 422,
            },
            422,
        )

    async def get_post(self, request: Request) -> Response:
        if refused := self.check(request):
            return refused
        post = self.posts.get(request.path_params["urn"])
        if post is None:
            return error(404, "Post not found")
        return JSONResponse(post)

    async def find_posts(self, request: Request) -> Response:
        if refused := self.check(request):
            return refused
        params = request.query_params
        if params.get("q") != "author" or "author" not in params:
            return error(400, "q=author and author are required")
        start, count = int(params.get("start", 0)), int(params.get("count", 10))
        now = time.time()
        mine = sorted(
            (
                p
                for p in self.posts.values()
                if p["author"] == params["author"] and self.listed_from[p["id"]] <= now
            ),
            key=lambda p: p["createdAt"],
            reverse=True,
        )
        page = mine[start : start + count]
        return JSONResponse(
            {"elements": page, "paging": {"start": start, "count": count}}
        )

    # -- media -----------------------------------------------------------

    def upload_url(self, request: Request, key: str) -> str:
        return str(request.url).split("/rest/")[0] + f"/dms-uploads/{key}"

    async def initialize_image(self, request: Request) -> Response:
        if refused := self.check(request):
            return refused
        body = await request.json()
        owner = (body.get("initializeUploadRequest") or {}).get("owner")
        if request.query_params.get("action") != "initializeUpload" or not owner:
            return error(422, "ERROR :: /initializeUploadRequest/owner :: required")
        urn = f"urn:li:image:C4D{next(self.ids)}"
        self.images[urn] = {"status": "WAITING_UPLOAD", "owner": owner}
        key = f"image-{len(self.uploads)}"
        self.uploads[key] = (urn, 0)
        return JSONResponse(
            {
                "value": {
                    "uploadUrlExpiresAt": int(time.time() * 1000) + 86_400_000,
                    "uploadUrl": self.upload_url(request, key),
                    "image": urn,
                }
            }
        )

    async def video_action(self, request: Request) -> Response:
        if refused := self.check(request):
            return refused
        body = await request.json()
        action = request.query_params.get("action")
        if action == "initializeUpload":
            return self.initialize_video(request, body.get("initializeUploadRequest"))
        if action == "finalizeUpload":
            return self.finalize_video(body.get("finalizeUploadRequest") or {})
        return error(400, f"unknown action {action}")

    def initialize_video(self, request: Request, init: Any) -> Response:
        if not isinstance(init, dict) or not init.get("owner"):
            return error(422, "ERROR :: /initializeUploadRequest/owner :: required")
        size = init.get("fileSizeBytes")
        if not isinstance(size, int) or size <= 0:
            return error(422, "ERROR :: /initializeUploadRequest/fileSizeBytes")
        urn = f"urn:li:video:C5D{next(self.ids)}"
        parts = []
        for index in range(math.ceil(size / self.video_part_bytes)):
            key = f"video-{len(self.uploads)}"
            self.uploads[key] = (urn, index)
            first = index * self.video_part_bytes
            last = min(first + self.video_part_bytes, size) - 1
            parts.append(
                {
                    "uploadUrl": self.upload_url(request, key),
                    "firstByte": first,
                    "lastByte": last,
                }
            )
        self.videos[urn] = {
            "status": "WAITING_UPLOAD",
            "size": size,
            "token": f"token-{urn}",
            "etags": {},
            "received": 0,
            "polls": 0,
        }
        return JSONResponse(
            {
                "value": {
                    "uploadUrlsExpireAt": int(time.time() * 1000) + 86_400_000,
                    "video": urn,
                    "uploadInstructions": parts,
                    "uploadToken": self.videos[urn]["token"],
                }
            }
        )

    async def upload(self, request: Request) -> Response:
        target = self.uploads.get(request.path_params["key"])
        if target is None:
            return error(404, "Upload URL not found or expired")
        urn, index = target
        content = await request.body()
        if urn in self.images:
            if not request.headers.get("authorization"):
                return error(401, "Empty oauth2 access token", "EMPTY_ACCESS_TOKEN")
            self.images[urn].update(status="AVAILABLE", size=len(content))
            return Response(status_code=201)
        video = self.videos[urn]
        etag = f"/etag/{urn}/{index}"
        video["etags"][index] = etag
        video["received"] += len(content)
        return Response(status_code=200, headers={"etag": etag})

    def finalize_video(self, final: dict[str, Any]) -> Response:
        video = self.videos.get(final.get("video", ""))
        if video is None or final.get("uploadToken") != video["token"]:
            return error(422, "ERROR :: /finalizeUploadRequest :: unknown video")
        expected = [video["etags"][i] for i in sorted(video["etags"])]
        if (
            final.get("uploadedPartIds") != expected
            or video["received"] != video["size"]
        ):
            return error(400, "Uploaded parts do not match the upload instructions")
        video["status"] = "PROCESSING"
        return Response(status_code=200)

    async def get_video(self, request: Request) -> Response:
        if refused := self.check(request):
            return refused
        urn = request.path_params["urn"]
        video = self.videos.get(urn)
        if video is None:
            return error(404, f"{urn} not found")
        if video["status"] == "PROCESSING":
            video["polls"] += 1
            if video["polls"] >= self.processing_polls:
                video["status"] = "AVAILABLE"
        return JSONResponse({"id": urn, "status": video["status"]})

    # -- OAuth -----------------------------------------------------------

    async def token(self, request: Request) -> Response:
        async with request.form() as form:
            fields = {key: str(value) for key, value in form.items()}
        refresh = fields.get("refresh_token", "")
        if fields.get("grant_type") != "refresh_token" or not fields.get("client_id"):
            return JSONResponse({"error": "invalid_request"}, 400)
        if refresh.startswith("revoked-") or refresh in self.used_refresh_tokens:
            return JSONResponse(
                {
                    "error": "invalid_request",
                    "error_description": "The provided authorization grant or "
                    "refresh token is invalid, expired or revoked.",
                },
                400,
            )
        # LinkedIn keeps the refresh token; its access token is replaced.
        access = f"li-access-{next(self.ids)}"
        if previous := self.issued.get(refresh):
            self.revoked.add(previous)
        self.issued[refresh] = access
        return JSONResponse(
            {
                "access_token": access,
                "expires_in": 5_184_000,
                "refresh_token": refresh,
                "refresh_token_expires_in": 31_536_000,
            }
        )
