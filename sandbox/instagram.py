"""A fake of Instagram's Graph API content publishing, mounted at `/instagram`.

Paths follow the Graph API under a version segment (`/v23.0/{ig-user-id}/media`,
any `vN.M` is accepted). What it models:

- Bearer tokens (or an `access_token` parameter); a token starting with
  ``expired-`` answers the documented code 190 error.
- Containers: `POST /{user}/media` for an image (`image_url`), a reel
  (`media_type=REELS`, `video_url`), carousel items (`is_carousel_item=true`)
  and a carousel parent (`media_type=CAROUSEL`, `children`). A container is
  `IN_PROGRESS` for `polls_until_finished` reads, then `FINISHED`; `PUBLISHED`
  after `media_publish`; `EXPIRED` after `container_ttl` seconds unpublished.
  A media URL containing ``fail=2207xxx`` makes its container end in `ERROR`
  with that subcode, as Meta reports a media it could not process.
- `media_publish`: a container not yet FINISHED answers 9007/2207027; an
  expired one 24/2207020; one already published is refused with code 100
  (Meta documents no dedicated code for that case). Publishing is counted
  against `quota_total` per rolling 24 h (`content_publishing_limit`);
  over it, subcode 2207042.
- `GET /{media-id}?fields=permalink` and `GET /{user}/media` list the
  published media, newest first.

Media URLs are not downloaded: the fake trusts them. Subclass it and change
the class attributes to stage slow processing, a small quota or expiry.
"""

from __future__ import annotations

import itertools
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.common import (
    bearer_token,
    graph_error,
    graph_expired_token,
    graph_injected_failure,
)
from sandbox.core import FakePlatform, SandboxState

MAX_CAPTION = 2200


@dataclass
class _Container:
    id: str
    user: str
    fields: dict[str, str]
    polls_left: int
    created: float
    children: list[str] = field(default_factory=list)
    status_code: str = "IN_PROGRESS"
    error_subcode: int | None = None
    media_id: str | None = None


class InstagramFake(FakePlatform):
    """The content-publishing endpoints of graph.facebook.com."""

    name = "instagram"
    polls_until_finished = 1
    container_ttl = 24 * 3600.0
    quota_total = 50

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.containers: dict[str, _Container] = {}
        self.media: dict[str, dict[str, Any]] = {}
        self.publish_times: dict[str, list[float]] = {}
        self.ids = itertools.count(17_900_000_000_000_000)
        self.lock = threading.Lock()

    creates = (("POST", r"/media_publish$"),)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/{version}/{user}/media", self.user_media, methods=["GET", "POST"]),
            Route(
                "/{version}/{user}/media_publish", self.media_publish, methods=["POST"]
            ),
            Route(
                "/{version}/{user}/content_publishing_limit",
                self.publishing_limit,
                methods=["GET"],
            ),
            Route("/{version}/{node}", self.read_node, methods=["GET"]),
        ]

    def injected_failure(self, rng: random.Random) -> Response:
        """Graph's transient code 2, or the app call limit (code 4)."""
        return graph_injected_failure(
            rng, "instagram", 4, "(#4) Application request limit reached"
        )

    async def _params(self, request: Request) -> dict[str, str]:
        """Query and form parameters together, as Graph reads them."""
        params = dict(request.query_params)
        if request.method == "POST":
            form = await request.form()
            params.update({k: str(v) for k, v in form.items()})
        return params

    def _auth_error(self, request: Request, params: dict[str, str]) -> Response | None:
        if not request.path_params["version"].startswith("v"):
            return graph_error(400, "Unknown path components", code=2500)
        token = bearer_token(request) or params.get("access_token", "")
        if not token:
            return graph_error(400, "An access token is required", code=104)
        if token.startswith("expired-"):
            return graph_expired_token()
        return None

    def _next_id(self) -> str:
        return str(next(self.ids))

    def _quota_used(self, user: str, now: float) -> int:
        times = self.publish_times.get(user, [])
        return sum(1 for t in times if now - t < 24 * 3600)

    def _refresh(self, container: _Container, *, poll: bool) -> None:
        """Advance a container's lifecycle by one read (`poll`) and by age."""
        unpublished = container.status_code in ("IN_PROGRESS", "FINISHED")
        if unpublished and time.time() - container.created > self.container_ttl:
            container.status_code = "EXPIRED"
            return
        if container.status_code != "IN_PROGRESS" or not poll:
            return
        if container.polls_left > 0:
            container.polls_left -= 1
            return
        failing = [u for u in container.fields.values() if "fail=2207" in u]
        if failing:
            container.status_code = "ERROR"
            container.error_subcode = int(failing[0].split("fail=")[1][:7])
        else:
            container.status_code = "FINISHED"

    async def user_media(self, request: Request) -> Response:
        params = await self._params(request)
        if (denied := self._auth_error(request, params)) is not None:
            return denied
        user = request.path_params["user"]
        if request.method == "GET":
            return self._list_media(user, params)

        caption = params.get("caption", "")
        if len(caption) > MAX_CAPTION:
            return graph_error(
                400, "The caption is too long.", code=100, subcode=2207010
            )
        media_type = params.get("media_type", "IMAGE").upper()
        is_item = params.get("is_carousel_item", "").lower() == "true"
        children: list[str] = []

        with self.lock:
            if media_type == "CAROUSEL":
                children = [c for c in params.get("children", "").split(",") if c]
                if not 2 <= len(children) <= 10:
                    return graph_error(
                        400, "(#100) A carousel needs 2 to 10 children", code=100
                    )
                for child_id in children:
                    child = self.containers.get(child_id)
                    if child is None or child.fields.get("is_carousel_item") != "true":
                        return graph_error(
                            400, f"(#100) {child_id} is not a carousel item", code=100
                        )
                    self._refresh(child, poll=False)
                    if child.status_code != "FINISHED":
                        return graph_error(
                            400,
                            "Media ID is not available",
                            code=9007,
                            subcode=2207027,
                        )
                fields = {"media_type": "CAROUSEL", "caption": caption}
            elif media_type in ("REELS", "VIDEO", "STORIES"):
                if not params.get("video_url"):
                    return graph_error(
                        400, "(#100) The parameter video_url is required", code=100
                    )
                if media_type == "VIDEO" and not is_item:
                    return graph_error(
                        400,
                        "(#100) The VIDEO media type is no longer supported; use REELS",
                        code=100,
                    )
                fields = {"media_type": media_type, "video_url": params["video_url"]}
            elif media_type == "IMAGE":
                if not params.get("image_url"):
                    return graph_error(
                        400, "(#100) The parameter image_url is required", code=100
                    )
                fields = {"media_type": "IMAGE", "image_url": params["image_url"]}
            else:
                return graph_error(
                    400, f"(#100) Unsupported media_type {media_type}", code=100
                )
            if caption:
                fields["caption"] = caption
            if is_item:
                fields["is_carousel_item"] = "true"

            container = _Container(
                id=self._next_id(),
                user=user,
                fields=fields,
                polls_left=self.polls_until_finished,
                created=time.time(),
                children=children,
            )
            self.containers[container.id] = container
        return JSONResponse({"id": container.id})

    def _list_media(self, user: str, params: dict[str, str]) -> Response:
        wanted = set(params.get("fields", "id").split(",")) | {"id"}
        limit = int(params.get("limit", "25"))
        with self.lock:
            items = [m for m in self.media.values() if m["user"] == user]
        items.sort(key=lambda m: m["timestamp"], reverse=True)
        data = [
            {k: v for k, v in item.items() if k in wanted} for item in items[:limit]
        ]
        return JSONResponse({"data": data, "paging": {"cursors": {}}})

    async def media_publish(self, request: Request) -> Response:
        params = await self._params(request)
        if (denied := self._auth_error(request, params)) is not None:
            return denied
        user = request.path_params["user"]
        creation_id = params.get("creation_id", "")
        now = time.time()

        with self.lock:
            container = self.containers.get(creation_id)
            if container is None or container.user != user:
                return graph_error(
                    400,
                    f"(#100) Param creation_id {creation_id!r} is not a container "
                    "of this user",
                    code=100,
                )
            if container.fields.get("is_carousel_item") == "true":
                return graph_error(
                    400, "(#100) Carousel items cannot be published alone", code=100
                )
            self._refresh(container, poll=False)
            if container.status_code == "PUBLISHED":
                return graph_error(
                    400, "(#100) This container has already been published", code=100
                )
            if container.status_code == "EXPIRED":
                return graph_error(
                    400,
                    "The media builder has expired",
                    code=24,
                    subcode=2207020,
                )
            if container.status_code != "FINISHED":
                return graph_error(
                    400, "Media ID is not available", code=9007, subcode=2207027
                )
            if self._quota_used(user, now) >= self.quota_total:
                return graph_error(
                    400,
                    "You have reached the maximum number of posts allowed in 24 hours",
                    code=9,
                    subcode=2207042,
                )

            media_id = self._next_id()
            container.status_code = "PUBLISHED"
            container.media_id = media_id
            self.publish_times.setdefault(user, []).append(now)
            shortcode = secrets.token_urlsafe(8)
            self.media[media_id] = {
                "id": media_id,
                "user": user,
                "caption": container.fields.get("caption", ""),
                "media_type": container.fields["media_type"],
                "permalink": f"https://www.instagram.com/p/{shortcode}/",
                "timestamp": datetime.fromtimestamp(now, UTC).isoformat(),
            }
            urls = [
                self.containers[c].fields.get("image_url")
                or self.containers[c].fields.get("video_url")
                for c in container.children
            ] or [container.fields.get("image_url") or container.fields["video_url"]]

        self.state.publish(
            self.name,
            {
                "media_id": media_id,
                "container_id": container.id,
                "user": user,
                "media_type": container.fields["media_type"],
                "caption": container.fields.get("caption", ""),
                "media_urls": urls,
            },
        )
        return JSONResponse({"id": media_id})

    async def publishing_limit(self, request: Request) -> Response:
        params = await self._params(request)
        if (denied := self._auth_error(request, params)) is not None:
            return denied
        with self.lock:
            used = self._quota_used(request.path_params["user"], time.time())
        entry: dict[str, Any] = {"quota_usage": used}
        if "config" in params.get("fields", ""):
            entry["config"] = {"quota_total": self.quota_total, "quota_duration": 86400}
        return JSONResponse({"data": [entry]})

    async def read_node(self, request: Request) -> Response:
        params = await self._params(request)
        if (denied := self._auth_error(request, params)) is not None:
            return denied
        node = request.path_params["node"]
        wanted = set(params.get("fields", "id").split(",")) | {"id"}

        with self.lock:
            if (container := self.containers.get(node)) is not None:
                self._refresh(container, poll=True)
                status = container.status_code.capitalize().replace("_", " ")
                if container.status_code == "ERROR":
                    status = (
                        "Error: Media upload has failed with error code "
                        f"{container.error_subcode}"
                    )
                item = {"id": node, "status_code": container.status_code}
                item["status"] = status
            elif node in self.media:
                item = dict(self.media[node])
            else:
                return graph_error(
                    400,
                    f"Unsupported get request. Object with ID '{node}' does not exist",
                    code=100,
                    subcode=33,
                    kind="GraphMethodException",
                )
        return JSONResponse({k: v for k, v in item.items() if k in wanted})
