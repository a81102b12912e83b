"""The YouTube adapter against the fake resumable upload API, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs
from uuid import uuid4

import httpx
import pytest

from sandbox.core import FakePlatform, Fault, SandboxState
from sandbox.youtube import YouTubeFake
from tasks.adapters.base import Credentials, ErrorKind, Post, PublishError
from tasks.adapters.youtube import SESSION_HANDLE, YouTubeAdapter
from tasks.adapters.youtube_errors import PACIFIC

Serve = Callable[[type[FakePlatform]], str]
KiB = 1024
VIDEOS = r"^/upload/youtube/v3/videos$"


class RecordingHandles:
    """A HandleStore that remembers what was saved and how far the log was."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.values: dict[str, Any] = {}
        self.puts_at_save: list[int] = []

    async def save(self, name: str, value: Any) -> None:
        self.values[name] = value
        self.puts_at_save.append(len(self.state.requests_for("youtube", "PUT")))


def make_post(
    base: str, *names: str, text: str = "Launch day\nAll about it", **options: Any
) -> Post:
    root = base.rsplit("/", 1)[0]
    urls = tuple(f"{root}/media/{name}" for name in names)
    return Post(uuid4(), "p1", "youtube", text=text, media_urls=urls, options=options)


def adapter_for(client: httpx.AsyncClient, base: str, **options: Any) -> YouTubeAdapter:
    options.setdefault("oauth_base_url", base)
    return YouTubeAdapter(client, base, **options)


def credentials(token: str = "ya29.good", **kwargs: Any) -> Credentials:
    return Credentials(access_token=token, account_id="channel-1", **kwargs)


def google_error(status: int, reason: str) -> dict[str, Any]:
    error = {"code": status, "message": reason, "errors": [{"reason": reason}]}
    return {"error": error}


async def test_video_is_uploaded_in_chunks_through_a_saved_session(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(YouTubeFake)
    handles = RecordingHandles(sandbox_state)
    post = make_post(base, "launch.mp4?bytes=600000", tags=["launch"])

    published = await adapter_for(http_client, base, chunk_size=256 * KiB).publish(
        post, credentials(), handles
    )

    [item] = sandbox_state.published_on("youtube")
    assert published.remote_id == item["video_id"]
    assert published.url == f"https://www.youtube.com/watch?v={item['video_id']}"
    assert item["size"] == 600000

    [start] = sandbox_state.requests_for("youtube", "POST", VIDEOS)
    assert parse_qs(start.query) == {
        "uploadType": ["resumable"],
        "part": ["snippet,status"],
    }
    assert start.headers["authorization"] == "Bearer ya29.good"
    assert start.headers["content-type"] == "application/json; charset=UTF-8"
    assert start.headers["x-upload-content-length"] == "600000"
    assert start.headers["x-upload-content-type"] == "video/mp4"
    assert json.loads(start.body) == {
        "snippet": {
            "title": "Launch day",
            "description": "Launch day\nAll about it",
            "categoryId": "22",
            "tags": ["launch"],
        },
        "status": {"privacyStatus": "private"},
    }

    puts = sandbox_state.requests_for("youtube", "PUT", VIDEOS)
    assert [p.headers["content-range"] for p in puts] == [
        "bytes 0-262143/600000",
        "bytes 262144-524287/600000",
        "bytes 524288-599999/600000",
    ]
    session_id = parse_qs(puts[0].query)["upload_id"]
    assert all(parse_qs(p.query)["upload_id"] == session_id for p in puts)
    # The session URI was saved before the first byte went up.
    assert handles.values[SESSION_HANDLE]["size"] == 600000
    assert handles.puts_at_save == [0]


@pytest.mark.parametrize(
    ("names", "text", "options", "reason"),
    [
        ((), "A title", {}, "exactly one video"),
        (("a.mp4", "b.mp4"), "A title", {}, "exactly one video"),
        (("a.jpg",), "A title", {}, "not a video"),
        (("a.mp4",), "t" * 101, {}, "101 characters"),
        (("a.mp4",), "Best <video>", {}, "< or >"),
        (("a.mp4",), "ok", {"description": "d" * 5001}, "5000 bytes"),
        (("a.mp4",), "ok", {"privacy_status": "friends"}, "not one of"),
    ],
)
async def test_invalid_content_is_refused_before_any_request(
    serve_fake: Serve,
    sandbox_state: SandboxState,
    http_client: httpx.AsyncClient,
    names: tuple[str, ...],
    text: str,
    options: dict[str, Any],
    reason: str,
) -> None:
    base = serve_fake(YouTubeFake)

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, *names, text=text, **options),
            credentials(),
            RecordingHandles(sandbox_state),
        )

    assert raised.value.kind is ErrorKind.INVALID
    assert reason in raised.value.message
    assert sandbox_state.requests_for("youtube") == []


async def test_platform_refusal_of_the_metadata_is_invalid(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(YouTubeFake)
    sandbox_state.add_fault(
        Fault(
            "youtube",
            path=VIDEOS,
            method="POST",
            status=400,
            body=google_error(400, "invalidCategoryId"),
        )
    )

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "a.mp4"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.INVALID
    assert raised.value.platform_code == "invalidCategoryId"


async def test_spent_quota_defers_until_midnight_pacific(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    class NoQuota(YouTubeFake):
        daily_uploads = 0

    base = serve_fake(NoQuota)
    before = datetime.now(UTC)

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "a.mp4"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.RATE_LIMITED
    assert raised.value.platform_code == "quotaExceeded"
    retry_at = raised.value.retry_at
    assert retry_at is not None
    assert before < retry_at <= before + timedelta(hours=24)
    local = retry_at.astimezone(PACIFIC)
    assert (local.hour, local.minute, local.second) == (0, 0, 0)


async def test_channel_upload_limit_defers_a_day(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(YouTubeFake)
    sandbox_state.add_fault(
        Fault(
            "youtube",
            path=VIDEOS,
            method="POST",
            status=400,
            body=google_error(400, "uploadLimitExceeded"),
        )
    )
    before = datetime.now(UTC)

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "a.mp4"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.RATE_LIMITED
    assert raised.value.retry_at is not None
    assert raised.value.retry_at - before >= timedelta(hours=24)


async def test_http_429_uses_retry_after(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(YouTubeFake)
    sandbox_state.add_fault(
        Fault(
            "youtube",
            path=VIDEOS,
            status=429,
            body=google_error(429, "rateLimitExceeded"),
            headers={"Retry-After": "90"},
        )
    )
    before = datetime.now(UTC)

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "a.mp4"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.RATE_LIMITED
    assert raised.value.retry_at is not None
    wait = raised.value.retry_at - before
    assert timedelta(seconds=90) <= wait < timedelta(seconds=95)


async def test_server_error_is_transient_and_the_next_attempt_uploads_once(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(YouTubeFake)
    sandbox_state.add_fault(
        Fault("youtube", path=VIDEOS, method="POST", status=503, body=None)
    )
    adapter = adapter_for(http_client, base)
    post = make_post(base, "a.mp4")

    with pytest.raises(PublishError) as raised:
        await adapter.publish(post, credentials(), RecordingHandles(sandbox_state))
    assert raised.value.kind is ErrorKind.TRANSIENT

    await adapter.publish(post, credentials(), RecordingHandles(sandbox_state))
    assert len(sandbox_state.published_on("youtube")) == 1


async def test_expired_token_is_refreshed_once_at_googles_token_endpoint(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(YouTubeFake)
    adapter = adapter_for(http_client, base)
    calls = 0

    async def refresh() -> Credentials:
        nonlocal calls
        calls += 1
        grant = await adapter.refresh_token(
            "1//refresh", "sandbox-client", "sandbox-secret"
        )
        return credentials(grant.access_token, refresh_token=grant.refresh_token)

    await adapter.publish(
        make_post(base, "a.mp4"),
        credentials("expired-token", refresh=refresh),
        RecordingHandles(sandbox_state),
    )

    assert calls == 1
    assert len(sandbox_state.published_on("youtube")) == 1
    [token_call] = sandbox_state.requests_for("youtube", "POST", "^/token$")
    assert dict(httpx.QueryParams(token_call.body.decode())) == {
        "client_id": "sandbox-client",
        "client_secret": "sandbox-secret",
        "refresh_token": "1//refresh",
        "grant_type": "refresh_token",
    }


async def test_token_refreshed_away_is_auth_when_no_refresh_is_possible(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(YouTubeFake)
    adapter = adapter_for(http_client, base)
    old = await adapter.refresh_token("1//refresh", "sandbox-client", "sandbox-secret")
    await adapter.refresh_token("1//refresh", "sandbox-client", "sandbox-secret")

    with pytest.raises(PublishError) as raised:
        await adapter.publish(
            make_post(base, "a.mp4"),
            credentials(old.access_token),
            RecordingHandles(sandbox_state),
        )

    assert raised.value.kind is ErrorKind.AUTH
    assert raised.value.http_status == 401


async def test_forbidden_is_auth(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(YouTubeFake)
    sandbox_state.add_fault(
        Fault("youtube", path=VIDEOS, status=403, body=google_error(403, "forbidden"))
    )

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "a.mp4"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.AUTH


async def test_timeout_after_last_chunk_is_reconciled_and_never_uploaded_twice(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(YouTubeFake)
    sandbox_state.add_fault(
        Fault("youtube", path=VIDEOS, method="PUT", delay=2.0, after=True)
    )
    adapter = adapter_for(http_client, base)
    handles = RecordingHandles(sandbox_state)
    post = make_post(base, "a.mp4?bytes=5000")

    with pytest.raises(PublishError) as raised:
        await adapter.publish(post, credentials(), handles)
    assert raised.value.kind is ErrorKind.UNKNOWN_OUTCOME

    later = replace(post, handles=dict(handles.values), attempt=2)
    [item] = sandbox_state.published_on("youtube")
    found = await adapter.reconcile(later, credentials())
    assert found is not None
    assert found.remote_id == item["video_id"]
    query = sandbox_state.requests_for("youtube", "PUT")[-1]
    assert query.headers["content-range"] == "bytes */5000"
    assert query.headers["content-length"] == "0"

    again = await adapter.publish(later, credentials(), handles)
    assert again.remote_id == item["video_id"]
    assert len(sandbox_state.requests_for("youtube", "POST", VIDEOS)) == 1
    assert len(sandbox_state.published_on("youtube")) == 1


async def test_interrupted_upload_resumes_the_same_session_from_its_range(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(YouTubeFake)
    sandbox_state.add_fault(
        Fault("youtube", path=VIDEOS, method="PUT", delay=2.0, after=True)
    )
    adapter = adapter_for(http_client, base, chunk_size=256 * KiB)
    handles = RecordingHandles(sandbox_state)
    post = make_post(base, "a.mp4?bytes=600000")

    # The first chunk landed but its answer was lost: not the last chunk, so
    # nothing can have been published and the error is a plain retry.
    with pytest.raises(PublishError) as raised:
        await adapter.publish(post, credentials(), handles)
    assert raised.value.kind is ErrorKind.TRANSIENT
    later = replace(post, handles=dict(handles.values))
    assert await adapter.reconcile(later, credentials()) is None

    await adapter.publish(later, credentials(), handles)

    assert len(sandbox_state.requests_for("youtube", "POST", VIDEOS)) == 1
    ranges = [
        p.headers["content-range"] for p in sandbox_state.requests_for("youtube", "PUT")
    ]
    assert ranges[-3:] == [
        "bytes */600000",
        "bytes 262144-524287/600000",
        "bytes 524288-599999/600000",
    ]
    [item] = sandbox_state.published_on("youtube")
    assert item["size"] == 600000


async def test_expired_session_is_replaced_by_a_new_one(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(YouTubeFake)
    adapter = adapter_for(http_client, base)
    gone = f"{base}/upload/youtube/v3/videos?uploadType=resumable&upload_id=gone"
    post = make_post(base, "a.mp4?bytes=5000")
    post = replace(post, handles={SESSION_HANDLE: {"uri": gone, "size": 5000}})

    assert await adapter.reconcile(post, credentials()) is None
    handles = RecordingHandles(sandbox_state)
    await adapter.publish(post, credentials(), handles)

    assert handles.values[SESSION_HANDLE]["uri"] != gone
    assert len(sandbox_state.published_on("youtube")) == 1


async def test_session_without_location_is_transient(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(YouTubeFake)
    sandbox_state.add_fault(Fault("youtube", path=VIDEOS, method="POST", status=200))

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "a.mp4"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.TRANSIENT
    assert "Location" in raised.value.message


async def test_finished_upload_without_video_id_is_unknown_outcome(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(YouTubeFake)
    sandbox_state.add_fault(
        Fault("youtube", path=VIDEOS, method="PUT", status=200, body={"kind": "x"})
    )

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "a.mp4"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.UNKNOWN_OUTCOME


async def test_unreachable_api_is_transient(
    serve_fake: Serve, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(YouTubeFake)
    adapter = adapter_for(http_client, "http://127.0.0.1:9/youtube")

    with pytest.raises(PublishError) as raised:
        await adapter.publish(
            make_post(base, "a.mp4"), credentials(), RecordingHandles(SandboxState())
        )

    assert raised.value.kind is ErrorKind.TRANSIENT
