"""A fake of YouTube's resumable `videos.insert` and Google's token endpoint.

Mounted at `/youtube`; the adapter's `base_url` and `oauth_base_url` both
point at the mount. What it models:

- `POST /upload/youtube/v3/videos?uploadType=resumable&part=snippet,status`
  with a Bearer token (``expired-…`` or refreshed-away tokens answer 401
  ``authError``), `X-Upload-Content-Length`, `X-Upload-Content-Type` and the
  JSON `snippet`/`status`; answers 200 with the session URI in `Location`.
  Over `daily_uploads` sessions a day, 403 ``quotaExceeded``.
- `PUT` on the session URI: chunks with `Content-Range: bytes a-b/total`
  (every chunk but the last a multiple of 256 KiB), 308 with `Range` until
  the last, which answers 200 with the video resource; `bytes */total` with
  no body reports the state the same way. The session URI is the credential
  for its `PUT`s, as on Google's side.
- `POST /token`: refresh-token grant; each refresh revokes the access token
  that the same refresh token handed out before.

Error bodies follow Google's JSON shape (``{"error": {"code", "message",
"errors": [{"domain", "reason", "message"}], "status"}}``).
"""

from __future__ import annotations

import random
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.common import bearer_token
from sandbox.core import FakePlatform, SandboxState

CHUNK_UNIT = 256 * 1024
CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-(\d+)|\*)/(\d+)")


@dataclass
class _Session:
    id: str
    size: int
    content_type: str
    resource: dict[str, Any]
    received: bytearray = field(default_factory=bytearray)
    video: dict[str, Any] | None = None


def google_error(
    status: int, reason: str, message: str, *, domain: str = "youtube.video"
) -> JSONResponse:
    """A Google API error body."""
    codes = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
            "status": codes.get(status, "UNKNOWN"),
        }
    }
    return JSONResponse(body, status)


class YouTubeFake(FakePlatform):
    """www.googleapis.com's resumable upload and oauth2.googleapis.com/token."""

    name = "youtube"
    daily_uploads = 100
    client_id = "sandbox-client"
    client_secret = "sandbox-secret"

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.sessions: dict[str, _Session] = {}
        self.sessions_started = 0
        self.revoked_tokens: set[str] = set()
        self.issued: dict[str, str] = {}  # refresh token -> its latest access token
        self.lock = threading.Lock()

    creates = (("POST", r"^/upload/youtube/v3/videos$"),)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/upload/youtube/v3/videos", self.videos, methods=["POST", "PUT"]),
            Route("/token", self.token, methods=["POST"]),
        ]

    def injected_failure(self, rng: random.Random) -> Response:
        """Google's 429 `rateLimitExceeded` (with `Retry-After`) or 503
        `backendError`, refusing to open the upload session."""
        if rng.random() < 0.5:
            answer = google_error(
                429, "rateLimitExceeded", "Rate limit exceeded.", domain="usageLimits"
            )
            answer.headers["Retry-After"] = "30"
            return answer
        return google_error(503, "backendError", "Backend Error", domain="global")

    def _auth_error(self, request: Request) -> Response | None:
        token = bearer_token(request)
        if not token or token.startswith("expired-") or token in self.revoked_tokens:
            return google_error(
                401,
                "authError",
                "Request had invalid authentication credentials.",
                domain="global",
            )
        return None

    async def videos(self, request: Request) -> Response:
        if request.method == "PUT":
            return await self._put(request)
        if (denied := self._auth_error(request)) is not None:
            return denied

        params = request.query_params
        if params.get("uploadType") != "resumable":
            return google_error(400, "invalidParameter", "uploadType must be resumable")
        parts = set(params.get("part", "").split(","))
        try:
            size = int(request.headers["x-upload-content-length"])
            resource = await request.json()
        except (KeyError, ValueError):
            return google_error(
                400,
                "badContent",
                "X-Upload-Content-Length and a JSON video resource are required",
            )
        content_type = request.headers.get("x-upload-content-type", "")
        if not content_type.startswith("video/"):
            return google_error(
                400, "badContent", "X-Upload-Content-Type is not a video type"
            )
        if (bad := self._check_resource(resource, parts)) is not None:
            return bad

        with self.lock:
            if self.sessions_started >= self.daily_uploads:
                return google_error(
                    403,
                    "quotaExceeded",
                    "The request cannot be completed because you have exceeded "
                    "your quota.",
                    domain="youtube.quota",
                )
            self.sessions_started += 1
            session = _Session(secrets.token_urlsafe(16), size, content_type, resource)
            self.sessions[session.id] = session

        root = str(request.base_url).rstrip("/") + request.scope.get("root_path", "")
        location = (
            f"{root}/upload/youtube/v3/videos?uploadType=resumable"
            f"&part={params.get('part')}&upload_id={session.id}"
        )
        return Response(status_code=200, headers={"Location": location})

    def _check_resource(self, resource: Any, parts: set[str]) -> Response | None:
        if not isinstance(resource, dict) or "snippet" not in parts:
            return google_error(400, "invalidPart", "part must include snippet")
        snippet = resource.get("snippet") or {}
        title = str(snippet.get("title", ""))
        if not title or len(title) > 100 or "<" in title or ">" in title:
            return google_error(400, "invalidTitle", "The video title is invalid.")
        description = str(snippet.get("description", ""))
        if len(description.encode()) > 5000 or "<" in description:
            return google_error(
                400, "invalidDescription", "The video description is invalid."
            )
        privacy = (resource.get("status") or {}).get("privacyStatus", "public")
        if privacy not in ("private", "unlisted", "public"):
            return google_error(400, "invalidValue", "privacyStatus is invalid.")
        return None

    async def _put(self, request: Request) -> Response:
        session = self.sessions.get(request.query_params.get("upload_id", ""))
        if session is None:
            return google_error(404, "notFound", "The upload session does not exist.")
        match = CONTENT_RANGE.fullmatch(request.headers.get("content-range", ""))
        body = await request.body()
        if match is None or int(match.group(3)) != session.size:
            return google_error(400, "badContent", "Content-Range is invalid.")

        with self.lock:
            if match.group(1) is not None and session.video is None:
                first, last = int(match.group(1)), int(match.group(2))
                final = last == session.size - 1
                aligned = final or len(body) % CHUNK_UNIT == 0
                if first != len(session.received) or not aligned:
                    # Out of step: report what is held so the client can resume.
                    return self._incomplete(session)
                if len(body) != last - first + 1:
                    return google_error(400, "badContent", "Content-Range mismatch.")
                session.received += body
                if final:
                    session.video = self._create_video(session)
            if session.video is None:
                return self._incomplete(session)
            return JSONResponse(session.video, 200)

    def _incomplete(self, session: _Session) -> Response:
        headers = {"Content-Length": "0"}
        if session.received:
            headers["Range"] = f"bytes=0-{len(session.received) - 1}"
        return Response(status_code=308, headers=headers)

    def _create_video(self, session: _Session) -> dict[str, Any]:
        video_id = secrets.token_urlsafe(8)[:11]
        status = dict(session.resource.get("status") or {})
        status.setdefault("privacyStatus", "public")
        video = {
            "kind": "youtube#video",
            "etag": secrets.token_hex(8),
            "id": video_id,
            "snippet": session.resource.get("snippet"),
            "status": {"uploadStatus": "uploaded", **status},
        }
        self.state.publish(
            self.name,
            {
                "video_id": video_id,
                "title": video["snippet"]["title"],
                "description": video["snippet"].get("description"),
                "privacy_status": status["privacyStatus"],
                "size": len(session.received),
                "content_type": session.content_type,
            },
        )
        return video

    async def token(self, request: Request) -> Response:
        form = await request.form()
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Unauthorized"}, 401
            )
        refresh = str(form.get("refresh_token", ""))
        if form.get("grant_type") != "refresh_token" or not refresh.startswith("1//"):
            return JSONResponse(
                {
                    "error": "invalid_grant",
                    "error_description": "Token has been expired or revoked.",
                },
                400,
            )
        with self.lock:
            if refresh in self.issued:
                self.revoked_tokens.add(self.issued[refresh])
            access = f"ya29.{secrets.token_urlsafe(16)}"
            self.issued[refresh] = access
        return JSONResponse(
            {
                "access_token": access,
                "expires_in": 3599,
                "scope": "https://www.googleapis.com/auth/youtube.upload",
                "token_type": "Bearer",
            }
        )
