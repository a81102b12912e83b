"""The Instagram adapter against the fake Graph API, over real HTTP."""

from __future__ import annotations

import asyncio
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
from sandbox.instagram import InstagramFake
from tasks.adapters.base import Credentials, ErrorKind, Post, PublishError
from tasks.adapters.instagram import CONTAINER_HANDLE, InstagramAdapter

IG_USER = "17841400000000001"
Serve = Callable[[type[FakePlatform]], str]


class RecordingHandles:
    """A HandleStore that remembers what was saved and how far the log was."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.values: dict[str, Any] = {}
        self.publish_requests_at_save: list[int] = []

    async def save(self, name: str, value: Any) -> None:
        self.values[name] = value
        sent = self.state.requests_for("instagram", "POST", r"/media_publish$")
        self.publish_requests_at_save.append(len(sent))


def media_url(base: str, name: str) -> str:
    root = base.rsplit("/", 1)[0]
    return f"{root}/media/{name}?bytes=4096"


def make_post(base: str, *names: str, text: str = "Sunrise over the bay") -> Post:
    urls = tuple(media_url(base, name) for name in names)
    return Post(uuid4(), "profile-1", "instagram", text=text, media_urls=urls)


def adapter_for(
    client: httpx.AsyncClient, base: str, **options: Any
) -> InstagramAdapter:
    options.setdefault("poll_interval", 0.01)
    options.setdefault("poll_timeout", 2.0)
    return InstagramAdapter(client, base, **options)


def form(request: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body.decode()).items()}


def credentials(token: str = "good-token", **kwargs: Any) -> Credentials:
    return Credentials(access_token=token, account_id=IG_USER, **kwargs)


async def test_image_post_creates_polls_saves_then_publishes(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(InstagramFake)
    adapter = adapter_for(http_client, base)
    handles = RecordingHandles(sandbox_state)
    post = make_post(base, "photo.jpg")

    published = await adapter.publish(post, credentials(), handles)

    [item] = sandbox_state.published_on("instagram")
    assert published.remote_id == item["media_id"]
    assert published.url and published.url.startswith("https://www.instagram.com/p/")
    assert item["media_type"] == "IMAGE"
    assert item["caption"] == "Sunrise over the bay"

    [create] = sandbox_state.requests_for("instagram", "POST", rf"/{IG_USER}/media$")
    assert create.path == f"/v23.0/{IG_USER}/media"
    assert create.headers["authorization"] == "Bearer good-token"
    assert "good-token" not in create.query + create.body.decode()
    assert form(create) == {
        "image_url": post.media_urls[0],
        "caption": "Sunrise over the bay",
    }

    polls = sandbox_state.requests_for("instagram", "GET", rf"/{item['container_id']}$")
    assert polls and all(
        parse_qs(p.query)["fields"] == ["status_code,status"] for p in polls
    )
    [publish] = sandbox_state.requests_for("instagram", "POST", "/media_publish$")
    assert parse_qs(publish.query) == {"creation_id": [item["container_id"]]}

    # The container id was saved before media_publish was ever sent.
    assert handles.values == {CONTAINER_HANDLE: item["container_id"]}
    assert handles.publish_requests_at_save == [0]


async def test_video_post_is_published_as_a_reel(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(InstagramFake)
    post = make_post(base, "clip.mp4")

    await adapter_for(http_client, base).publish(
        post, credentials(), RecordingHandles(sandbox_state)
    )

    [create] = sandbox_state.requests_for("instagram", "POST", rf"/{IG_USER}/media$")
    assert form(create)["media_type"] == "REELS"
    assert form(create)["video_url"] == post.media_urls[0]
    [item] = sandbox_state.published_on("instagram")
    assert item["media_type"] == "REELS"


async def test_carousel_creates_items_then_a_parent_with_the_caption(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(InstagramFake)
    post = make_post(base, "a.jpg", "b.jpg", "c.mp4")

    await adapter_for(http_client, base).publish(
        post, credentials(), RecordingHandles(sandbox_state)
    )

    creates = [
        form(r)
        for r in sandbox_state.requests_for("instagram", "POST", rf"/{IG_USER}/media$")
    ]
    assert creates[:3] == [
        {"is_carousel_item": "true", "image_url": post.media_urls[0]},
        {"is_carousel_item": "true", "image_url": post.media_urls[1]},
        {
            "is_carousel_item": "true",
            "media_type": "VIDEO",
            "video_url": post.media_urls[2],
        },
    ]
    parent = creates[3]
    assert parent["media_type"] == "CAROUSEL"
    assert parent["caption"] == post.text
    assert len(parent["children"].split(",")) == 3

    [item] = sandbox_state.published_on("instagram")
    assert item["media_type"] == "CAROUSEL"
    assert item["media_urls"] == list(post.media_urls)


@pytest.mark.parametrize(
    ("text", "names", "reason"),
    [
        ("text only", (), "text-only"),
        ("x" * 2201, ("a.jpg",), "2201 characters"),
        (" ".join(f"#tag{i}" for i in range(31)), ("a.jpg",), "31 hashtags"),
        ("eleven", tuple(f"{i}.jpg" for i in range(11)), "2-10 items"),
    ],
)
async def test_invalid_content_is_refused_before_any_request(
    serve_fake: Serve,
    sandbox_state: SandboxState,
    http_client: httpx.AsyncClient,
    text: str,
    names: tuple[str, ...],
    reason: str,
) -> None:
    base = serve_fake(InstagramFake)
    post = make_post(base, *names, text=text)

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            post, credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.INVALID
    assert reason in raised.value.message
    assert sandbox_state.requests_for("instagram") == []


async def test_media_instagram_cannot_process_is_invalid(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(InstagramFake)
    post = make_post(base, "wide.jpg?fail=2207009")

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            post, credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.INVALID
    assert "2207009" in raised.value.message
    assert sandbox_state.requests_for("instagram", "POST", "/media_publish$") == []


async def test_graph_refusal_of_the_image_is_invalid(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(InstagramFake)
    error = {"message": "Image too large", "type": "OAuthException", "code": 36003}
    error |= {"error_subcode": 2207004, "fbtrace_id": "Abc"}
    sandbox_state.add_fault(
        Fault("instagram", path="/media$", status=400, body={"error": error})
    )

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "big.jpg"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.INVALID
    assert raised.value.platform_code == "code 36003/2207004"
    assert "fbtrace_id Abc" in raised.value.message


async def test_graph_rate_limit_waits_for_the_usage_header(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(InstagramFake)
    usage = {IG_USER: [{"type": "instagram", "estimated_time_to_regain_access": 7}]}
    sandbox_state.add_fault(
        Fault(
            "instagram",
            path="/media$",
            status=400,
            body={"error": {"message": "Too many calls", "code": 17}},
            headers={"X-Business-Use-Case-Usage": json.dumps(usage)},
        )
    )
    before = datetime.now(UTC)

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "a.jpg"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.RATE_LIMITED
    assert raised.value.retry_at is not None
    wait = raised.value.retry_at - before
    assert timedelta(minutes=7) <= wait < timedelta(minutes=7, seconds=5)


async def test_http_429_uses_retry_after(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(InstagramFake)
    sandbox_state.add_fault(
        Fault("instagram", path="/media$", status=429, headers={"Retry-After": "120"})
    )
    before = datetime.now(UTC)

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "a.jpg"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.RATE_LIMITED
    assert raised.value.retry_at is not None
    wait = raised.value.retry_at - before
    assert timedelta(seconds=120) <= wait < timedelta(seconds=125)


async def test_used_up_publishing_quota_defers_before_creating_a_container(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    class OnePostADay(InstagramFake):
        quota_total = 1

    base = serve_fake(OnePostADay)
    adapter = adapter_for(http_client, base, daily_cap_wait=timedelta(hours=2))
    await adapter.publish(
        make_post(base, "a.jpg"), credentials(), RecordingHandles(sandbox_state)
    )
    before = datetime.now(UTC)

    with pytest.raises(PublishError) as raised:
        await adapter.publish(
            make_post(base, "b.jpg"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.RATE_LIMITED
    assert raised.value.retry_at is not None
    assert raised.value.retry_at - before >= timedelta(hours=2)
    assert len(sandbox_state.requests_for("instagram", "POST", r"/media$")) == 1


async def test_daily_cap_at_media_publish_defers_instead_of_failing(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    class NoQuota(InstagramFake):
        quota_total = 0

    base = serve_fake(NoQuota)
    adapter = adapter_for(http_client, base, check_quota=False)

    with pytest.raises(PublishError) as raised:
        await adapter.publish(
            make_post(base, "a.jpg"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.RATE_LIMITED
    assert raised.value.platform_code == "code 9/2207042"
    assert raised.value.retry_at is not None


async def test_server_error_is_transient_and_the_next_attempt_publishes_once(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(InstagramFake)
    error = {"message": "An unexpected error", "code": 2, "is_transient": True}
    sandbox_state.add_fault(
        Fault("instagram", path="/media$", status=500, body={"error": error})
    )
    adapter = adapter_for(http_client, base)
    post = make_post(base, "a.jpg")

    with pytest.raises(PublishError) as raised:
        await adapter.publish(post, credentials(), RecordingHandles(sandbox_state))
    assert raised.value.kind is ErrorKind.TRANSIENT

    await adapter.publish(post, credentials(), RecordingHandles(sandbox_state))
    assert len(sandbox_state.published_on("instagram")) == 1


async def test_expired_token_is_refreshed_once_and_the_post_goes_out(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(InstagramFake)
    calls = 0

    async def refresh() -> Credentials:
        nonlocal calls
        calls += 1
        return credentials("fresh-token")

    await adapter_for(http_client, base).publish(
        make_post(base, "a.jpg"),
        credentials("expired-token", refresh=refresh),
        RecordingHandles(sandbox_state),
    )

    assert calls == 1
    assert len(sandbox_state.published_on("instagram")) == 1
    [publish] = sandbox_state.requests_for("instagram", "POST", "/media_publish$")
    assert publish.headers["authorization"] == "Bearer fresh-token"


async def test_token_still_expired_after_refresh_is_auth(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(InstagramFake)
    calls = 0

    async def refresh() -> Credentials:
        nonlocal calls
        calls += 1
        return credentials("expired-again")

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "a.jpg"),
            credentials("expired-token", refresh=refresh),
            RecordingHandles(sandbox_state),
        )

    assert raised.value.kind is ErrorKind.AUTH
    assert calls == 1


async def test_timeout_after_media_publish_is_reconciled_and_never_duplicated(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(InstagramFake)
    sandbox_state.add_fault(
        Fault("instagram", path="/media_publish$", delay=2.0, after=True)
    )
    adapter = adapter_for(http_client, base)
    handles = RecordingHandles(sandbox_state)
    post = make_post(base, "a.jpg")

    with pytest.raises(PublishError) as raised:
        await adapter.publish(post, credentials(), handles)
    assert raised.value.kind is ErrorKind.UNKNOWN_OUTCOME

    later = replace(post, handles=dict(handles.values), attempt=2)
    [item] = sandbox_state.published_on("instagram")
    found = await adapter.reconcile(later, credentials())
    assert found is not None
    assert found.remote_id == item["media_id"]
    assert found.url and found.url.startswith("https://www.instagram.com/p/")

    again = await adapter.publish(later, credentials(), handles)
    assert again.remote_id == item["media_id"]
    assert len(sandbox_state.published_on("instagram")) == 1
    assert len(sandbox_state.requests_for("instagram", "POST", "/media_publish$")) == 1


async def test_publish_answer_without_id_is_unknown_then_reconcile_says_not_live(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(InstagramFake)
    sandbox_state.add_fault(
        Fault("instagram", path="/media_publish$", status=200, body={})
    )
    adapter = adapter_for(http_client, base)
    handles = RecordingHandles(sandbox_state)
    post = make_post(base, "a.jpg")

    with pytest.raises(PublishError) as raised:
        await adapter.publish(post, credentials(), handles)
    assert raised.value.kind is ErrorKind.UNKNOWN_OUTCOME

    later = replace(post, handles=dict(handles.values))
    assert await adapter.reconcile(later, credentials()) is None

    # The FINISHED container is reused, not replaced by a second one.
    await adapter.publish(later, credentials(), handles)
    assert len(sandbox_state.requests_for("instagram", "POST", r"/media$")) == 1
    assert len(sandbox_state.published_on("instagram")) == 1


async def test_reconcile_without_a_saved_container_is_not_live(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(InstagramFake)
    post = make_post(base, "a.jpg")

    assert await adapter_for(http_client, base).reconcile(post, credentials()) is None
    assert sandbox_state.requests_for("instagram") == []


async def test_expired_saved_container_is_replaced_by_a_new_one(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    class ShortLived(InstagramFake):
        polls_until_finished = 0
        container_ttl = 0.3

    base = serve_fake(ShortLived)
    sandbox_state.add_fault(Fault("instagram", path="/media_publish$", status=503))
    adapter = adapter_for(http_client, base)
    handles = RecordingHandles(sandbox_state)
    post = make_post(base, "a.jpg")
    with pytest.raises(PublishError):
        await adapter.publish(post, credentials(), handles)
    first = handles.values[CONTAINER_HANDLE]
    await asyncio.sleep(0.4)

    later = replace(post, handles=dict(handles.values))
    assert await adapter.reconcile(later, credentials()) is None
    await adapter.publish(later, credentials(), handles)

    [item] = sandbox_state.published_on("instagram")
    assert item["container_id"] == handles.values[CONTAINER_HANDLE] != first


async def test_unreachable_graph_api_is_transient(
    http_client: httpx.AsyncClient,
) -> None:
    adapter = adapter_for(http_client, "http://127.0.0.1:9/instagram")
    post = Post(uuid4(), "p", "instagram", text="hi", media_urls=("https://e/a.jpg",))

    with pytest.raises(PublishError) as raised:
        await adapter.publish(post, credentials(), RecordingHandles(SandboxState()))

    assert raised.value.kind is ErrorKind.TRANSIENT


async def test_non_graph_error_page_is_transient_not_a_crash(
    serve_fake: Serve, sandbox_state: SandboxState, http_client: httpx.AsyncClient
) -> None:
    base = serve_fake(InstagramFake)
    sandbox_state.add_fault(Fault("instagram", path="/media$", status=502))

    with pytest.raises(PublishError) as raised:
        await adapter_for(http_client, base).publish(
            make_post(base, "a.jpg"), credentials(), RecordingHandles(sandbox_state)
        )

    assert raised.value.kind is ErrorKind.TRANSIENT
    assert raised.value.http_status == 502
