"""The TikTok adapter against the fake Content Posting API, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest

from sandbox.core import FakePlatform, Fault, SandboxState
from sandbox.tiktok import TikTokFake
from tasks.adapters.base import Credentials, ErrorKind, Post, PublishError
from tasks.adapters.tiktok import PUBLISH_HANDLE, TikTokAdapter
from tasks.adapters.tiktok_upload import chunk_plan

Serve = Callable[[type[FakePlatform]], str]
MiB = 1024 * 1024


class RecordingHandles:
    """A HandleStore that remembers what was saved and how far the log was."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.values: dict[str, Any] = {}
        self.uploads_at_save: list[int] = []

    async def save(self, name: str, value: Any) -> None:
        self.values[name] = value
        self.uploads_at_save.append(len(self.state.requests_for("tiktok", "PUT")))


def make_post(base: str, *names: str, text: str = "Dance #fyp", **options: Any) -> Post:
    root = base.rsplit("/", 1)[0]
    urls = tuple(f"{root}/media/{name}" for name in names)
    return Post(uuid4(), "p1", "tiktok", text=text, media_urls=urls, options=options)


def adapter_for(client: httpx.AsyncClient, base: str, **options: Any) -> TikTokAdapter:
    options.setdefault("poll_interval", 0.01)
    options.setdefault("poll_timeout", 2.0)
    return TikTokAdapter(client, base, **options)


def body(request: Any) -> dict[str, Any]:
    return json.loads(request.body)


def credentials(token: str = "act.good", **kwargs: Any) -> Credentials:
    return Credentials(access_token=token, account_id="open-id-1", **kwargs)


PUBLIC = {"privacy_level": "PUBLIC_TO_EVERYONE"}


async def test_video_is_uploaded_in_one_chunk_and_polled_to_completion(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(TikTokFake)
    handles = RecordingHandles(sandbox_state)
    post = make_post(base, "clip.mp4?bytes=300000", disable_duet=True, **PUBLIC)

    published = await adapter_for(http_client, base).publish(
        post, credentials(), handles
    )

    [item] = sandbox_state.published_on("tiktok")
    assert published.remote_id == item["post_id"]
    assert (
        published.url
        == f"https://www.tiktok.com/@sandbox.creator/video/{item['post_id']}"
    )
    assert item["video_size"] == 300000

    paths = [r.path for r in sandbox_state.requests_for("tiktok")]
    assert paths[:3] == [
        "/v2/post/publish/creator_info/query/",
        "/v2/post/publish/video/init/",
        "/upload/video/",
    ]
    [init] = sandbox_state.requests_for("tiktok", "POST", "/video/init/$")
    assert init.headers["authorization"] == "Bearer act.good"
    assert init.headers["content-type"] == "application/json; charset=UTF-8"
    assert body(init) == {
        "post_info": {
            "title": "Dance #fyp",
            "privacy_level": "PUBLIC_TO_EVERYONE",
            "disable_comment": False,
            "disable_duet": True,
            "disable_stitch": False,
        },
        "source_info": {
            "source": "FILE_UPLOAD",
            "video_size": 300000,
            "chunk_size": 300000,
            "total_chunk_count": 1,
        },
    }
    [put] = sandbox_state.requests_for("tiktok", "PUT")
    assert put.headers["content-range"] == "bytes 0-299999/300000"
    assert put.headers["content-type"] == "video/mp4"
    assert len(put.body) == 300000

    status = sandbox_state.requests_for("tiktok", "POST", "/status/fetch/$")
    assert {body(r)["publish_id"] for r in status} == {item["publish_id"]}
    # The publish_id was saved before a single byte was uploaded.
    assert handles.values[PUBLISH_HANDLE]["publish_id"] == item["publish_id"]
    assert handles.uploads_at_save == [0]


async def test_large_video_goes_in_chunks_answered_206_until_the_last(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(TikTokFake)
    size = 11 * MiB
    post = make_post(base, f"big.mp4?bytes={size}")

    await adapter_for(http_client, base, chunk_size=5 * MiB).publish(
        post, credentials(), RecordingHandles(sandbox_state)
    )

    [init] = sandbox_state.requests_for("tiktok", "POST", "/video/init/$")
    assert body(init)["source_info"]["chunk_size"] == 5 * MiB
    assert body(init)["source_info"]["total_chunk_count"] == 2
    puts = sandbox_state.requests_for("tiktok", "PUT")
    assert [p.headers["content-range"] for p in puts] == [
        f"bytes 0-{5 * MiB - 1}/{size}",
        f"bytes {5 * MiB}-{size - 1}/{size}",
    ]
    assert len(sandbox_state.published_on("tiktok")) == 1


def test_chunk_plan_follows_tiktoks_rules() -> None:
    assert chunk_plan(4 * MiB, 10 * MiB) == (4 * MiB, 1)
    assert chunk_plan(11 * MiB, 5 * MiB) == (5 * MiB, 2)
    assert chunk_plan(11 * MiB, 1 * MiB) == (5 * MiB, 2)
    assert chunk_plan(300 * MiB, 200 * MiB) == (64_000_000, 4)


async def test_private_post_without_public_id_returns_the_publish_id(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(TikTokFake)

    published = await adapter_for(http_client, base).publish(
        make_post(base, "clip.mp4?bytes=1000"),
        credentials(),
        RecordingHandles(sandbox_state),
    )

    [item] = sandbox_state.published_on("tiktok")
    assert item["privacy_level"] == "SELF_ONLY"
    assert published.remote_id == item["publish_id"]
    assert published.url is None


async def test_pull_from_url_option_sends_the_media_url(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(TikTokFake)
    post = make_post(base, "clip.mp4", source="PULL_FROM_URL", **PUBLIC)

    await adapter_for(http_client, base).publish(
        post, credentials(), RecordingHandles(sandbox_state)
    )

    [init] = sandbox_state.requests_for("tiktok", "POST", "/video/init/$")
    assert body(init)["source_info"] == {
        "source": "PULL_FROM_URL",
        "video_url": post.media_urls[0],
    }
    assert sandbox_state.requests_for("tiktok", "PUT") == []
    assert len(sandbox_state.published_on("tiktok")) == 1


async def test_photos_are_posted_through_content_init(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(TikTokFake)
    post = make_post(base, "a.jpg", "b.jpg", title="Two", **PUBLIC)

    published = await adapter_for(http_client, base).publish(
        post, credentials(), RecordingHandles(sandbox_state)
    )

    [init] = sandbox_state.requests_for("tiktok", "POST", "/content/init/$")
    sent = body(init)
    assert sent["media_type"] == "PHOTO"
    assert sent["post_mode"] == "DIRECT_POST"
    assert sent["post_info"]["title"] == "Two"
    assert sent["post_info"]["description"] == "Dance #fyp"
    assert sent["source_info"] == {
        "source": "PULL_FROM_URL",
        "photo_images": list(post.media_urls),
        "photo_cover_index": 0,
    }
    [item] = sandbox_state.published_on("tiktok")
    assert item["media_type"] == "PHOTO"
    assert (
        published.url
        == f"https://www.tiktok.com/@sandbox.creator/photo/{item['post_id']}"
    )


@pytest.mark.parametrize(
    ("names", "text", "reason"),
    [
        ((), "words only", "text-only"),
        (("a.mp4", "b.jpg"), "mixed", "exactly one video"),
        (("a.mp4",), "😀" * 1101, "2202 UTF-16 units"),
    ],
)
async def test_invalid_content_is_refused_before_any_request(
    serve_fake: Serve,
    sandbox_state: SandboxState,
    http_client: httpx.AsyncClient,
    names: tuple[str, ...],
    text: str,
    reason: str,
) -> None:
    base = serve_fake(TikTokFake)

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, *names, text=text),
            credentials(),
            RecordingHandles(sandbox_state),
        )

    assert raised.value.kind is ErrorKind.INVALID
    assert reason in raised.value.message
    assert sandbox_state.requests_for("tiktok") == []


@pytest.mark.parametrize(
    ("names", "options", "reason"),
    [
        (("a.mp4",), {"video_cover_timestamp_ms": "soon"}, "video_cover_timestamp_ms"),
        (("a.mp4",), {"video_cover_timestamp_ms": -1}, "video_cover_timestamp_ms"),
        (("a.mp4",), {"video_duration_sec": "long"}, "video_duration_sec"),
        (("a.jpg", "b.jpg"), {"photo_cover_index": True}, "photo_cover_index"),
        (("a.jpg", "b.jpg"), {"photo_cover_index": 2}, "past the last photo"),
    ],
)
async def test_bad_options_are_invalid_before_any_request(
    serve_fake: Serve,
    sandbox_state: SandboxState,
    http_client: httpx.AsyncClient,
    names: tuple[str, ...],
    options: dict[str, Any],
    reason: str,
) -> None:
    base = serve_fake(TikTokFake)

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, *names, **options),
            credentials(),
            RecordingHandles(sandbox_state),
        )

    assert raised.value.kind is ErrorKind.INVALID
    assert reason in raised.value.message
    assert sandbox_state.requests_for("tiktok") == []


async def test_privacy_level_the_creator_cannot_use_is_invalid_before_init(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    class PrivateAccount(TikTokFake):
        privacy_level_options = ("FOLLOWER_OF_CREATOR", "SELF_ONLY")

    base = serve_fake(PrivateAccount)

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "clip.mp4", **PUBLIC),
            credentials(),
            RecordingHandles(sandbox_state),
        )

    assert raised.value.kind is ErrorKind.INVALID
    assert "FOLLOWER_OF_CREATOR, SELF_ONLY" in raised.value.message
    assert sandbox_state.requests_for("tiktok", "POST", "/init/$") == []


async def test_platform_invalid_params_is_invalid(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(TikTokFake)
    error = {"code": "invalid_params", "message": "title is bad", "log_id": "L1"}
    sandbox_state.add_fault(
        Fault("tiktok", path="/video/init/$", status=400, body={"error": error})
    )

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "clip.mp4"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.INVALID
    assert raised.value.platform_code == "invalid_params"
    assert "log_id L1" in raised.value.message


async def test_seventh_init_in_a_minute_is_rate_limited_for_a_minute(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(TikTokFake)
    adapter = adapter_for(http_client, base)
    for _ in range(6):
        await adapter.publish(
            make_post(base, "a.jpg"), credentials(), RecordingHandles(sandbox_state)
        )
    before = datetime.now(UTC)

    with pytest.raises(PublishError) as raised:
        await adapter.publish(
            make_post(base, "a.jpg"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.RATE_LIMITED
    assert raised.value.http_status == 429
    assert raised.value.retry_at is not None
    wait = raised.value.retry_at - before
    assert timedelta(seconds=60) <= wait < timedelta(seconds=65)


async def test_rate_limit_honours_retry_after(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(TikTokFake)
    error = {"code": "rate_limit_exceeded", "message": "slow down", "log_id": "x"}
    sandbox_state.add_fault(
        Fault(
            "tiktok",
            path="/video/init/$",
            status=429,
            body={"error": error},
            headers={"Retry-After": "300"},
        )
    )
    before = datetime.now(UTC)

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "clip.mp4"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.RATE_LIMITED
    assert raised.value.retry_at is not None
    assert (
        timedelta(seconds=300)
        <= raised.value.retry_at - before
        < timedelta(seconds=305)
    )


async def test_daily_post_cap_defers_for_a_day(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(TikTokFake)
    error = {"code": "spam_risk_too_many_posts", "message": "cap", "log_id": "x"}
    sandbox_state.add_fault(
        Fault("tiktok", path="/content/init/$", status=403, body={"error": error})
    )
    before = datetime.now(UTC)

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "a.jpg"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.RATE_LIMITED
    assert raised.value.retry_at is not None
    assert raised.value.retry_at - before >= timedelta(hours=24)


async def test_internal_error_is_transient_and_the_next_attempt_publishes_once(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(TikTokFake)
    error = {"code": "internal_error", "message": "oops", "log_id": "x"}
    sandbox_state.add_fault(
        Fault("tiktok", path="/video/init/$", status=500, body={"error": error})
    )
    adapter = adapter_for(http_client, base)
    post = make_post(base, "clip.mp4")

    with pytest.raises(PublishError) as raised:
        await adapter.publish(post, credentials(), RecordingHandles(sandbox_state))
    assert raised.value.kind is ErrorKind.TRANSIENT

    await adapter.publish(post, credentials(), RecordingHandles(sandbox_state))
    assert len(sandbox_state.published_on("tiktok")) == 1


async def test_invalid_token_is_refreshed_once_with_a_rotating_refresh_token(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(TikTokFake)
    adapter = adapter_for(http_client, base)
    calls = 0

    async def refresh() -> Credentials:
        nonlocal calls
        calls += 1
        grant = await adapter.refresh_token(
            "rt-first", "sandbox-client", "sandbox-secret"
        )
        return credentials(grant.access_token, refresh_token=grant.refresh_token)

    await adapter.publish(
        make_post(base, "clip.mp4"),
        credentials("expired-1", refresh=refresh),
        RecordingHandles(sandbox_state),
    )

    assert calls == 1
    assert len(sandbox_state.published_on("tiktok")) == 1
    [token_call] = sandbox_state.requests_for("tiktok", "POST", "/v2/oauth/token/$")
    assert dict(httpx.QueryParams(token_call.body.decode())) == {
        "client_key": "sandbox-client",
        "client_secret": "sandbox-secret",
        "grant_type": "refresh_token",
        "refresh_token": "rt-first",
    }
    with pytest.raises(PublishError) as raised:
        await adapter.refresh_token("rt-first", "sandbox-client", "sandbox-secret")
    assert raised.value.kind is ErrorKind.AUTH


async def test_missing_scope_is_auth_without_a_refresh(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(TikTokFake)
    error = {"code": "scope_not_authorized", "message": "no scope", "log_id": "x"}
    sandbox_state.add_fault(
        Fault("tiktok", path="/creator_info/", status=401, body={"error": error})
    )
    calls = 0

    async def refresh() -> Credentials:
        nonlocal calls
        calls += 1
        return credentials()

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "clip.mp4"),
            credentials(refresh=refresh),
            RecordingHandles(sandbox_state),
        )

    assert raised.value.kind is ErrorKind.AUTH
    assert calls == 0


async def test_timeout_after_last_chunk_is_reconciled_and_never_posted_twice(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    class Quick(TikTokFake):
        polls_until_complete = 0

    base = serve_fake(Quick)
    sandbox_state.add_fault(
        Fault("tiktok", path="/upload/video/", delay=2.0, after=True)
    )
    adapter = adapter_for(http_client, base)
    handles = RecordingHandles(sandbox_state)
    post = make_post(base, "clip.mp4?bytes=5000", **PUBLIC)

    with pytest.raises(PublishError) as raised:
        await adapter.publish(post, credentials(), handles)
    assert raised.value.kind is ErrorKind.UNKNOWN_OUTCOME

    later = replace(post, handles=dict(handles.values), attempt=2)
    [item] = sandbox_state.published_on("tiktok")
    found = await adapter.reconcile(later, credentials())
    assert found is not None
    assert found.remote_id == item["post_id"]

    again = await adapter.publish(later, credentials(), handles)
    assert again.remote_id == item["post_id"]
    assert len(sandbox_state.requests_for("tiktok", "POST", "/video/init/$")) == 1
    assert len(sandbox_state.published_on("tiktok")) == 1


async def test_saved_publish_id_still_processing_is_polled_not_initialised_again(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    class Slow(TikTokFake):
        polls_until_complete = 3

    base = serve_fake(Slow)
    handles = RecordingHandles(sandbox_state)
    post = make_post(base, "clip.mp4?bytes=5000")

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base, poll_timeout=0).publish(
            post, credentials(), handles
        )
    assert raised.value.kind is ErrorKind.TRANSIENT
    later = replace(post, handles=dict(handles.values))
    with pytest.raises(PublishError) as unknown:
        await adapter_for(http_client, base).reconcile(later, credentials())
    assert unknown.value.kind is ErrorKind.UNKNOWN_OUTCOME

    published = await adapter_for(http_client, base).publish(
        later, credentials(), handles
    )

    assert published.remote_id == handles.values[PUBLISH_HANDLE]["publish_id"]
    assert len(sandbox_state.requests_for("tiktok", "POST", "/video/init/$")) == 1
    assert len(sandbox_state.requests_for("tiktok", "PUT")) == 1


async def test_failed_post_is_classified_and_reconciles_as_not_live(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    class Rejecting(TikTokFake):
        fail_reason = "file_format_check_failed"

    base = serve_fake(Rejecting)
    adapter = adapter_for(http_client, base)
    handles = RecordingHandles(sandbox_state)
    post = make_post(base, "clip.mp4?bytes=5000")

    with pytest.raises(PublishError) as raised:
        await adapter.publish(post, credentials(), handles)

    assert raised.value.kind is ErrorKind.INVALID
    assert raised.value.platform_code == "file_format_check_failed"
    later = replace(post, handles=dict(handles.values))
    assert await adapter.reconcile(later, credentials()) is None


async def test_pulled_init_answer_without_json_is_unknown_and_cannot_be_looked_up(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(TikTokFake)
    sandbox_state.add_fault(Fault("tiktok", path="/video/init/$", status=200))
    adapter = adapter_for(http_client, base)
    handles = RecordingHandles(sandbox_state)
    post = make_post(base, "clip.mp4", source="PULL_FROM_URL")

    with pytest.raises(PublishError) as raised:
        await adapter.publish(post, credentials(), handles)
    assert raised.value.kind is ErrorKind.UNKNOWN_OUTCOME

    with pytest.raises(PublishError) as unknown:
        await adapter.reconcile(replace(post, handles=handles.values), credentials())
    assert unknown.value.kind is ErrorKind.UNKNOWN_OUTCOME


async def test_unreachable_api_is_transient(http_client: httpx.AsyncClient) -> None:
    adapter = adapter_for(http_client, "http://127.0.0.1:9/tiktok")
    post = Post(uuid4(), "p", "tiktok", text="hi", media_urls=("https://e/a.mp4",))

    with pytest.raises(PublishError) as raised:
        await adapter.publish(post, credentials(), RecordingHandles(SandboxState()))

    assert raised.value.kind is ErrorKind.TRANSIENT


async def test_reconcile_of_an_upload_that_never_got_a_publish_id_is_not_live(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(TikTokFake)
    post = make_post(base, "clip.mp4")

    assert await adapter_for(http_client, base).reconcile(post, credentials()) is None
    assert sandbox_state.requests_for("tiktok") == []
