"""A fake of the X API v2 endpoints Social Queue uses.

Follows the documented shapes: `POST /2/tweets` answers 201 with `data.id`;
media goes through the one-shot `POST /2/media/upload` or the chunked
`initialize` / `{id}/append` / `{id}/finalize` flow with `STATUS` polling;
errors are problem JSON (`title`, `detail`, `type`, `status`). Every
authorised answer carries the per-user rate-limit headers
(`x-rate-limit-limit`, `-remaining`, `-reset`), and `POST /2/tweets` enforces
a per-user window. Tokens starting with `expired-`, and tokens replaced by a
refresh, answer 401.
"""

from __future__ import annotations

import html
import io
import itertools
import random
import time
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.common import bearer_token
from sandbox.core import FakePlatform, SandboxState
from tasks.adapters.x_text import MAX_WEIGHTED_LENGTH, weighted_length

PROBLEMS = "https://api.twitter.com/2/problems"


def problem(status: int, title: str, detail: str, kind: str = "about:blank") -> dict:
    return {"title": title, "detail": detail, "type": kind, "status": status}


def too_many_requests(headers: dict[str, str]) -> JSONResponse:
    """X's 429 problem, with the rate-limit headers of the window."""
    body = problem(
        429, "Too Many Requests", "Too Many Requests", f"{PROBLEMS}/rate-limit-exceeded"
    )
    return JSONResponse(body, 429, headers=headers)


async def read_form(request: Request) -> tuple[dict[str, str], dict[str, UploadFile]]:
    """A form's text fields and files, with the files read into memory.

    The form is closed on return, so no spooled upload file is left open.
    """
    fields: dict[str, str] = {}
    files: dict[str, UploadFile] = {}
    async with request.form() as form:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                content = await value.read()
                files[key] = UploadFile(
                    io.BytesIO(content),
                    size=len(content),
                    filename=value.filename,
                    headers=value.headers,
                )
            else:
                fields[key] = value
    return fields, files


class XFake(FakePlatform):
    """Fake X. Class attributes tune it; tests subclass to change them."""

    name = "x"
    user_id = "1460000000000000001"
    # POST /2/tweets per user per window (X: 100 per 15 minutes).
    tweet_limit = 100
    window_secs = 900
    # STATUS polls a video needs before it is ready, and the wait X advises.
    processing_polls = 1
    check_after_secs = 0
    media_expires_after_secs = 86400

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.ids = itertools.count(1_900_000_000_000_000_000)
        self.tweets: list[dict[str, Any]] = []
        # When each tweet shows in timelines (SandboxState.listing_lag).
        self.listed_from: dict[str, float] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.windows: dict[tuple[str, str], tuple[float, int]] = {}
        self.revoked: set[str] = set()
        self.used_refresh_tokens: set[str] = set()
        # refresh token -> the access token issued with it
        self.issued: dict[str, str] = {}

    creates = (("POST", r"^/2/tweets$"),)
    # The rate-limit window an injected 429 announces; short, for demos.
    injected_reset_secs = 30

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/2/tweets", self.create_tweet, methods=["POST"]),
            Route("/2/users/me", self.me, methods=["GET"]),
            Route("/2/users/{user_id}/tweets", self.user_tweets, methods=["GET"]),
            Route("/2/media/upload", self.upload_one_shot, methods=["POST"]),
            Route("/2/media/upload", self.upload_status, methods=["GET"]),
            Route("/2/media/upload/initialize", self.initialize, methods=["POST"]),
            Route("/2/media/upload/{media_id}/append", self.append, methods=["POST"]),
            Route(
                "/2/media/upload/{media_id}/finalize", self.finalize, methods=["POST"]
            ),
            Route("/2/oauth2/token", self.token, methods=["POST"]),
        ]

    # -- auth and limits -------------------------------------------------

    def authorise(self, request: Request) -> str | Response:
        """The caller's user id, or a 401 answer."""
        token = bearer_token(request)
        if not token:
            return JSONResponse(problem(401, "Unauthorized", "Unauthorized"), 401)
        if token.startswith("expired-") or token in self.revoked:
            return JSONResponse(problem(401, "Unauthorized", "Unauthorized"), 401)
        return self.user_id

    def limit(self, user: str, endpoint: str, limit: int) -> tuple[bool, dict]:
        """Count one call in the user's window; (allowed, rate-limit headers)."""
        now = time.time()
        start, used = self.windows.get((user, endpoint), (now, 0))
        if now >= start + self.window_secs:
            start, used = now, 0
        allowed = used < limit
        if allowed:
            used += 1
        self.windows[(user, endpoint)] = (start, used)
        headers = {
            "x-rate-limit-limit": str(limit),
            "x-rate-limit-remaining": str(max(limit - used, 0)),
            "x-rate-limit-reset": str(int(start + self.window_secs)),
        }
        return allowed, headers

    def injected_failure(self, rng: random.Random) -> Response:
        """A 429 with X's rate-limit headers, or a 503 problem."""
        if rng.random() < 0.5:
            headers = {
                "x-rate-limit-limit": str(self.tweet_limit),
                "x-rate-limit-remaining": "0",
                "x-rate-limit-reset": str(int(time.time()) + self.injected_reset_secs),
            }
            return too_many_requests(headers)
        body = problem(503, "Service Unavailable", "Service Unavailable")
        return JSONResponse(body, 503)

    # -- posts -----------------------------------------------------------

    async def create_tweet(self, request: Request) -> Response:
        user = self.authorise(request)
        if isinstance(user, Response):
            return user
        allowed, headers = self.limit(user, "tweets", self.tweet_limit)
        if not allowed:
            return too_many_requests(headers)

        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self.invalid("The request body is not valid JSON.", headers)

        text = body.get("text", "")
        media_ids = (body.get("media") or {}).get("media_ids") or []
        if not isinstance(text, str) or (not text and not media_ids):
            return self.invalid("One of text or media must be present.", headers)
        if weighted_length(text) > MAX_WEIGHTED_LENGTH:
            return self.invalid("Your Tweet text is too long.", headers)
        if len(media_ids) > 4 or any(
            self.media.get(mid, {}).get("state") != "succeeded" for mid in media_ids
        ):
            return self.invalid("Your media IDs are invalid.", headers)
        if text and any(
            t["text"] == text and t["author_id"] == user for t in self.tweets
        ):
            detail = "You are not allowed to create a Tweet with duplicate content."
            return JSONResponse(problem(403, "Forbidden", detail), 403, headers=headers)

        tweet = {
            "id": str(next(self.ids)),
            "text": text,
            "author_id": user,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "media_keys": [self.media[mid]["media_key"] for mid in media_ids],
        }
        self.tweets.append(tweet)
        self.state.publish(self.name, dict(tweet))
        self.listed_from[tweet["id"]] = self.state.listed_from()
        data = {
            "id": tweet["id"],
            "text": text,
            "edit_history_tweet_ids": [tweet["id"]],
        }
        return JSONResponse({"data": data}, 201, headers=headers)

    async def me(self, request: Request) -> Response:
        user = self.authorise(request)
        if isinstance(user, Response):
            return user
        return JSONResponse({"data": {"id": user, "username": "socialqueue"}})

    async def user_tweets(self, request: Request) -> Response:
        user = self.authorise(request)
        if isinstance(user, Response):
            return user
        _, headers = self.limit(user, "timeline", 900)
        params = request.query_params
        start = params.get("start_time", "")
        fields = params.get("tweet.fields", "").split(",")
        size = int(params.get("max_results", "10"))
        if not 5 <= size <= 100:
            return self.invalid("max_results must be between 5 and 100.", headers)

        now = time.time()
        matching = [
            t
            for t in reversed(self.tweets)
            if t["author_id"] == request.path_params["user_id"]
            and t["created_at"] >= start
            and self.listed_from[t["id"]] <= now
        ]
        offset = int(params.get("pagination_token") or 0)
        page = matching[offset : offset + size]
        data = []
        for tweet in page:
            # X returns `text` with &, < and > as HTML entities.
            item = {"id": tweet["id"], "text": html.escape(tweet["text"], quote=False)}
            if "created_at" in fields:
                item["created_at"] = tweet["created_at"]
            if "attachments" in fields and tweet["media_keys"]:
                item["attachments"] = {"media_keys": tweet["media_keys"]}
            data.append(item)

        meta: dict[str, Any] = {"result_count": len(data)}
        if offset + size < len(matching):
            meta["next_token"] = str(offset + size)
        body: dict[str, Any] = {"meta": meta}
        if data:
            body["data"] = data
        return JSONResponse(body, headers=headers)

    # -- media -----------------------------------------------------------

    async def upload_one_shot(self, request: Request) -> Response:
        user = self.authorise(request)
        if isinstance(user, Response):
            return user
        form, files = await read_form(request)
        media = files.get("media")
        category = form.get("media_category")
        if media is None or category not in (
            "tweet_image",
            "dm_image",
            "subtitles",
        ):
            return self.invalid("media and an image media_category are required.")
        content = await media.read()
        if len(content) > 5 * 1024 * 1024:
            return self.invalid("File size exceeds 5242880 bytes.")
        media_type = media.content_type or "application/octet-stream"
        item = self.new_media(category, len(content), media_type, state="succeeded")
        item["received"] = {0: len(content)}
        return JSONResponse({"data": self.media_data(item)})

    async def initialize(self, request: Request) -> Response:
        user = self.authorise(request)
        if isinstance(user, Response):
            return user
        body = await request.json()
        if not all(k in body for k in ("media_type", "total_bytes", "media_category")):
            return self.invalid("media_type, total_bytes and media_category needed.")
        item = self.new_media(
            body["media_category"], int(body["total_bytes"]), body["media_type"]
        )
        return JSONResponse({"data": self.media_data(item)})

    async def append(self, request: Request) -> Response:
        user = self.authorise(request)
        if isinstance(user, Response):
            return user
        item = self.media.get(request.path_params["media_id"])
        form, files = await read_form(request)
        media = files.get("media")
        index = form.get("segment_index", "")
        if item is None or item["state"] != "uploading":
            return self.invalid("Invalid media_id or the upload is finalized.")
        if media is None or not index.isdigit():
            return self.invalid("media and segment_index are required.")
        if not 0 <= int(index) <= 999:
            return self.invalid("segment_index must be between 0 and 999.")
        item["received"][int(index)] = len(await media.read())
        return JSONResponse({"data": {"expires_at": int(item["expires_at"])}})

    async def finalize(self, request: Request) -> Response:
        user = self.authorise(request)
        if isinstance(user, Response):
            return user
        item = self.media.get(request.path_params["media_id"])
        if item is None or item["state"] != "uploading":
            return self.invalid("Invalid media_id or the upload is finalized.")
        received = sum(item["received"].values())
        if received != item["total_bytes"]:
            detail = f"Segments total {received} bytes, expected {item['total_bytes']}."
            return self.invalid(detail)
        item["state"] = "pending"
        return JSONResponse({"data": self.media_data(item)})

    async def upload_status(self, request: Request) -> Response:
        user = self.authorise(request)
        if isinstance(user, Response):
            return user
        params = request.query_params
        item = self.media.get(params.get("media_id", ""))
        if params.get("command") != "STATUS" or item is None:
            return self.invalid("command=STATUS and a known media_id are required.")
        if item["state"] in ("pending", "in_progress"):
            item["polls"] += 1
            item["state"] = (
                "succeeded" if item["polls"] >= self.processing_polls else "in_progress"
            )
        return JSONResponse({"data": self.media_data(item)})

    def new_media(
        self, category: str, total_bytes: int, media_type: str, state: str = "uploading"
    ) -> dict[str, Any]:
        media_id = str(next(self.ids))
        prefix = {"tweet_video": "7", "tweet_gif": "16"}.get(category, "3")
        item = {
            "id": media_id,
            "media_key": f"{prefix}_{media_id}",
            "category": category,
            "media_type": media_type,
            "total_bytes": total_bytes,
            "received": {},
            "state": state,
            "polls": 0,
            "expires_at": time.time() + self.media_expires_after_secs,
        }
        self.media[media_id] = item
        return item

    def media_data(self, item: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": item["id"],
            "media_key": item["media_key"],
            "size": sum(item["received"].values()),
            "expires_after_secs": self.media_expires_after_secs,
        }
        if item["state"] in ("pending", "in_progress", "failed"):
            data["processing_info"] = {
                "state": item["state"],
                "check_after_secs": self.check_after_secs,
            }
        elif item["category"] != "tweet_image" and item["state"] == "succeeded":
            data["processing_info"] = {"state": "succeeded", "progress_percent": 100}
        return data

    # -- OAuth 2 ---------------------------------------------------------

    async def token(self, request: Request) -> Response:
        form, _ = await read_form(request)
        refresh = form.get("refresh_token", "")
        if form.get("grant_type") != "refresh_token" or not refresh:
            return JSONResponse({"error": "invalid_request"}, 400)
        if refresh.startswith("revoked-") or refresh in self.used_refresh_tokens:
            # Refresh tokens rotate: one already exchanged is dead.
            return JSONResponse(
                {
                    "error": "invalid_request",
                    "error_description": "Value passed for the token was invalid.",
                },
                400,
            )

        serial = next(self.ids)
        access, new_refresh = f"x-access-{serial}", f"x-refresh-{serial}"
        self.used_refresh_tokens.add(refresh)
        # The access token issued along with the exchanged refresh token dies.
        if previous := self.issued.pop(refresh, None):
            self.revoked.add(previous)
        self.issued[new_refresh] = access
        return JSONResponse(
            {
                "token_type": "bearer",
                "expires_in": 7200,
                "access_token": access,
                "scope": "tweet.write tweet.read users.read media.write offline.access",
                "refresh_token": new_refresh,
            }
        )

    def invalid(self, message: str, headers: dict | None = None) -> Response:
        body = problem(
            400,
            "Invalid Request",
            "One or more parameters to your request was invalid.",
            f"{PROBLEMS}/invalid-request",
        )
        body["errors"] = [{"message": message}]
        return JSONResponse(body, 400, headers=headers)
