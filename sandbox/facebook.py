"""A fake of the Graph API endpoints a Facebook Page publishes through.

Paths work with or without a version prefix (`/v23.0/{page}/feed` and
`/{page}/feed`). Errors use the Graph shape `{"error": {message, type, code,
error_subcode, is_transient, fbtrace_id}}`. Every answer to an authorised call
carries `X-App-Usage` and `X-Business-Use-Case-Usage`; past the page's hourly
call budget the fake answers code 32 with `estimated_time_to_regain_access`.
A token starting with `expired-` answers code 190. Identical text on the same
page answers code 506.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from sandbox.common import (
    bearer_token,
    graph_error,
    graph_expired_token,
    graph_injected_failure,
)
from sandbox.core import FakePlatform, SandboxState


def graph_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


class FacebookFake(FakePlatform):
    """Fake Graph API for Pages. Tests subclass to change the class attributes."""

    name = "facebook"
    calls_per_hour = 4800
    regain_minutes = 12

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.ids = itertools.count(10_000_000_000_001)
        self.posts: list[dict[str, Any]] = []
        self.videos: list[dict[str, Any]] = []
        self.photos: dict[str, dict[str, Any]] = {}
        self.calls: dict[str, list[float]] = {}

    creates = (("POST", r"/(feed|videos)$"),)

    def routes(self) -> list[BaseRoute]:
        edges: list[BaseRoute] = [
            Route("/{page}/feed", self.feed, methods=["POST"]),
            Route("/{page}/photos", self.photo, methods=["POST"]),
            Route("/{page}/videos", self.video, methods=["POST"]),
            Route("/{page}/published_posts", self.published_posts, methods=["GET"]),
            Route("/{page}/videos", self.list_videos, methods=["GET"]),
        ]
        return [*edges, Mount("/{version}", routes=edges)]

    # -- auth, limits, bodies ----------------------------------------------

    def authorise(self, request: Request) -> Response | dict[str, str]:
        """Checks the token and counts the call; an error answer, or the
        usage headers to send with the answer."""
        token = bearer_token(request, "bearer", "oauth")
        token = token or request.query_params.get("access_token", "")
        if not token:
            return graph_error(
                400,
                "An active access token must be used to query information.",
                code=2500,
            )
        if token.startswith("expired-"):
            return graph_expired_token()

        page = request.path_params["page"]
        now = time.time()
        recent = [t for t in self.calls.get(page, []) if t > now - 3600]
        recent.append(now)
        self.calls[page] = recent
        percent = min(100, len(recent) * 100 // self.calls_per_hour)
        usage: dict[str, Any] = {
            "type": "pages",
            "call_count": percent,
            "total_cputime": 1,
            "total_time": 1,
        }
        if len(recent) > self.calls_per_hour:
            usage["estimated_time_to_regain_access"] = self.regain_minutes
        headers = {
            "X-App-Usage": json.dumps(
                {"call_count": 1, "total_cputime": 1, "total_time": 1}
            ),
            "X-Business-Use-Case-Usage": json.dumps({page: [usage]}),
        }
        if len(recent) > self.calls_per_hour:
            return graph_error(
                400, "(#32) Page request limit reached", code=32, headers=headers
            )
        return headers

    def injected_failure(self, rng: random.Random) -> Response:
        """Graph's transient code 2, or the page call limit (code 32)."""
        return graph_injected_failure(
            rng, "pages", 32, "(#32) Page request limit reached"
        )

    async def body(self, request: Request) -> dict[str, Any]:
        """A Graph POST's parameters, from JSON or a form."""
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = await request.json()
            except ValueError:
                return {}
            return body if isinstance(body, dict) else {}
        async with request.form() as form:
            return {key: str(value) for key, value in form.items()}

    # -- publishing ----------------------------------------------------------

    async def feed(self, request: Request) -> Response:
        usage = self.authorise(request)
        if isinstance(usage, Response):
            return usage
        page = request.path_params["page"]
        body = await self.body(request)
        message, link = body.get("message", ""), body.get("link")
        attached = body.get("attached_media") or []
        if isinstance(attached, str):
            attached = json.loads(attached)
        if not message and not link and not attached:
            return graph_error(
                400,
                "(#100) Missing message or attachment",
                code=100,
                headers=usage,
            )
        if link is not None and not str(link).startswith(("http://", "https://")):
            return graph_error(
                400, "Error posting link", code=100, subcode=1609005, headers=usage
            )
        fbids = [item.get("media_fbid") for item in attached]
        if any(self.photos.get(f, {}).get("page") != page for f in fbids):
            return graph_error(
                400, "(#100) Invalid media_fbid", code=100, headers=usage
            )
        if message and any(
            p["page"] == page and p["message"] == message for p in self.posts
        ):
            return graph_error(
                400,
                "(#506) Duplicate status message",
                code=506,
                subcode=1455006,
                headers=usage,
            )

        post = {
            "id": f"{page}_{next(self.ids)}",
            "page": page,
            "message": message,
            "link": link,
            "photos": fbids,
            "created": time.time(),
            "listed_from": self.state.listed_from(),
        }
        self.posts.append(post)
        self.state.publish(self.name, _public(post))
        return JSONResponse({"id": post["id"]}, headers=usage)

    async def photo(self, request: Request) -> Response:
        usage = self.authorise(request)
        if isinstance(usage, Response):
            return usage
        body = await self.body(request)
        url = str(body.get("url", ""))
        if not url.startswith(("http://", "https://")):
            return graph_error(
                400, "(#324) Requires upload file", code=324, headers=usage
            )
        if body.get("published") not in (False, "false"):
            return graph_error(
                400,
                "(#100) this fake only takes unpublished photos",
                code=100,
                headers=usage,
            )
        photo_id = str(next(self.ids))
        self.photos[photo_id] = {"page": request.path_params["page"], "url": url}
        return JSONResponse({"id": photo_id}, headers=usage)

    async def video(self, request: Request) -> Response:
        usage = self.authorise(request)
        if isinstance(usage, Response):
            return usage
        body = await self.body(request)
        file_url = str(body.get("file_url", ""))
        if not file_url.startswith(("http://", "https://")):
            return graph_error(
                400, "(#100) file_url must be a URL", code=100, headers=usage
            )
        video = {
            "id": str(next(self.ids)),
            "page": request.path_params["page"],
            "description": body.get("description", ""),
            "file_url": file_url,
            "created": time.time(),
            "listed_from": self.state.listed_from(),
        }
        self.videos.append(video)
        self.state.publish(self.name, _public(video))
        return JSONResponse({"id": video["id"]}, headers=usage)

    # -- reading ---------------------------------------------------------------

    async def published_posts(self, request: Request) -> Response:
        return self.listing(request, self.posts, "message")

    async def list_videos(self, request: Request) -> Response:
        return self.listing(request, self.videos, "description")

    def listing(
        self, request: Request, items: list[dict[str, Any]], text_field: str
    ) -> Response:
        usage = self.authorise(request)
        if isinstance(usage, Response):
            return usage
        params = request.query_params
        page = request.path_params["page"]
        since = float(params.get("since", 0))
        limit = min(int(params.get("limit", 25)), 100)
        offset = int(params.get("after") or 0)
        fields = params.get("fields", "id").split(",")
        now = time.time()
        matching = [
            i
            for i in reversed(items)
            if i["page"] == page and i["created"] >= since and i["listed_from"] <= now
        ]
        chunk = matching[offset : offset + limit]
        data = []
        for item in chunk:
            row = {"id": item["id"]}
            if text_field in fields and item[text_field]:
                row[text_field] = item[text_field]
            if "created_time" in fields:
                row["created_time"] = graph_time(item["created"])
            data.append(row)
        body: dict[str, Any] = {"data": data}
        if offset + limit < len(matching):
            body["paging"] = {"cursors": {"after": str(offset + limit)}}
        return JSONResponse(body, headers=usage)


def _public(item: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of a post or video, without the fake's own times."""
    return {k: v for k, v in item.items() if k not in ("created", "listed_from")}
