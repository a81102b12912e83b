"""FacebookAdapter against the fake Graph API on a real port."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from sandbox.core import FakePlatform, Fault, SandboxState
from sandbox.facebook import FacebookFake
from tasks.adapters.base import Credentials, ErrorKind, Post, PublishError
from tasks.adapters.facebook import FacebookAdapter

Serve = Callable[[type[FakePlatform]], str]
PAGE = "104857600123"


class MemoryHandles:
    def __init__(self) -> None:
        self.saved: dict[str, Any] = {}

    async def save(self, name: str, value: Any) -> None:
        self.saved[name] = copy.deepcopy(value)


def make_post(text: str = "Hello Facebook", **kwargs: Any) -> Post:
    return Post(
        id=uuid.uuid4(), profile_id="p1", platform="facebook", text=text, **kwargs
    )


def creds(token: str = "page-token", **kwargs: Any) -> Credentials:
    return Credentials(access_token=token, account_id=PAGE, **kwargs)


def graph_error(code: int, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "fbtrace_id": "AbCdEf",
            **extra,
        }
    }


@pytest.fixture
def base(serve_fake: Serve) -> str:
    return serve_fake(FacebookFake)


@pytest.fixture
def adapter(http_client: httpx.AsyncClient, base: str) -> FacebookAdapter:
    return FacebookAdapter(http_client, base)


# -- publishing ---------------------------------------------------------


async def test_text_post_goes_to_the_page_feed_with_the_documented_request(
    adapter: FacebookAdapter, sandbox_state: SandboxState
) -> None:
    post = make_post(options={"link": "https://example.com/news"})

    published = await adapter.publish(post, creds(), MemoryHandles())

    [sent] = sandbox_state.requests_for("facebook", "POST")
    assert sent.path == f"/v23.0/{PAGE}/feed"
    assert sent.headers["authorization"] == "Bearer page-token"
    assert "access_token" not in sent.query
    assert json.loads(sent.body) == {
        "message": "Hello Facebook",
        "link": "https://example.com/news",
    }
    [live] = sandbox_state.published_on("facebook")
    assert published.remote_id == live["id"] and live["id"].startswith(f"{PAGE}_")
    assert published.url == f"https://www.facebook.com/{live['id']}"


async def test_unversioned_paths_work_when_no_version_is_pinned(
    http_client: httpx.AsyncClient, base: str, sandbox_state: SandboxState
) -> None:
    adapter = FacebookAdapter(http_client, base, api_version=None)

    await adapter.publish(make_post(), creds(), MemoryHandles())

    [sent] = sandbox_state.requests_for("facebook", "POST")
    assert sent.path == f"/{PAGE}/feed"


async def test_photos_are_uploaded_unpublished_then_attached_to_one_post(
    adapter: FacebookAdapter, sandbox_state: SandboxState
) -> None:
    urls = ("https://cdn.example.com/a.jpg", "https://cdn.example.com/b.png")
    handles = MemoryHandles()

    await adapter.publish(make_post(media_urls=urls), creds(), handles)

    uploads = sandbox_state.requests_for("facebook", "POST", "/photos$")
    assert [json.loads(u.body) for u in uploads] == [
        {"url": urls[0], "published": False},
        {"url": urls[1], "published": False},
    ]
    fbids = [handles.saved["facebook_photos"][url] for url in urls]
    [feed] = sandbox_state.requests_for("facebook", "POST", "/feed$")
    assert json.loads(feed.body)["attached_media"] == [
        {"media_fbid": fbid} for fbid in fbids
    ]
    [live] = sandbox_state.published_on("facebook")
    assert live["photos"] == fbids


async def test_video_is_published_from_its_url_with_the_text_as_description(
    adapter: FacebookAdapter, sandbox_state: SandboxState
) -> None:
    post = make_post("Watch this", media_urls=("https://cdn.example.com/clip.mp4",))

    published = await adapter.publish(post, creds(), MemoryHandles())

    [sent] = sandbox_state.requests_for("facebook", "POST")
    assert sent.path == f"/v23.0/{PAGE}/videos"
    assert json.loads(sent.body) == {
        "file_url": "https://cdn.example.com/clip.mp4",
        "description": "Watch this",
    }
    [live] = sandbox_state.published_on("facebook")
    assert published.remote_id == live["id"]


async def test_retry_reuses_photos_uploaded_by_the_failed_attempt(
    adapter: FacebookAdapter, sandbox_state: SandboxState
) -> None:
    body = graph_error(2, "An unexpected error has occurred.", is_transient=True)
    sandbox_state.add_fault(Fault("facebook", "/feed$", status=500, body=body))
    handles = MemoryHandles()
    post = make_post(media_urls=("https://cdn.example.com/a.jpg",))
    with pytest.raises(PublishError) as failed:
        await adapter.publish(post, creds(), handles)
    assert failed.value.kind == ErrorKind.TRANSIENT

    await adapter.publish(replace(post, handles=handles.saved), creds(), handles)

    assert len(sandbox_state.requests_for("facebook", "POST", "/photos$")) == 1
    assert len(sandbox_state.published_on("facebook")) == 1


# -- errors -------------------------------------------------------------


async def test_page_rate_limit_waits_for_estimated_time_to_regain_access(
    serve_fake: Serve, http_client: httpx.AsyncClient
) -> None:
    class BusyPage(FacebookFake):
        calls_per_hour = 1
        regain_minutes = 12

    adapter = FacebookAdapter(http_client, serve_fake(BusyPage))
    await adapter.publish(make_post("one"), creds(), MemoryHandles())
    before = datetime.now(UTC)

    with pytest.raises(PublishError) as limited:
        await adapter.publish(make_post("two"), creds(), MemoryHandles())

    assert limited.value.kind == ErrorKind.RATE_LIMITED
    assert limited.value.platform_code == "code 32"
    wait = limited.value.retry_at - before
    assert timedelta(minutes=12) <= wait <= timedelta(minutes=12, seconds=2)


async def test_policy_block_368_waits_longer_than_a_call_limit(
    adapter: FacebookAdapter, sandbox_state: SandboxState
) -> None:
    body = graph_error(368, "It looks like you were misusing this feature")
    sandbox_state.add_fault(Fault("facebook", "/feed$", status=400, body=body))

    with pytest.raises(PublishError) as blocked:
        await adapter.publish(make_post(), creds(), MemoryHandles())

    assert blocked.value.kind == ErrorKind.RATE_LIMITED
    assert blocked.value.retry_at - datetime.now(UTC) > timedelta(minutes=55)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (500, graph_error(1, "An unknown error occurred"), ErrorKind.TRANSIENT),
        (400, graph_error(100, "Busy", is_transient=True), ErrorKind.TRANSIENT),
        (503, None, ErrorKind.TRANSIENT),
        (403, graph_error(200, "Requires pages_manage_posts"), ErrorKind.AUTH),
        (403, graph_error(10, "Permission denied"), ErrorKind.AUTH),
        (400, graph_error(100, "Invalid parameter"), ErrorKind.INVALID),
        (400, graph_error(100, "Bad link", error_subcode=1609005), ErrorKind.INVALID),
        (400, graph_error(1609005, "Error posting link"), ErrorKind.INVALID),
    ],
    ids=[
        "code-1",
        "is-transient",
        "bare-503",
        "code-200",
        "code-10",
        "code-100",
        "subcode-1609005",
        "code-1609005",
    ],
)
async def test_graph_errors_are_classified_by_code(
    adapter: FacebookAdapter,
    sandbox_state: SandboxState,
    status: int,
    body: Any,
    kind: ErrorKind,
) -> None:
    sandbox_state.add_fault(Fault("facebook", "/feed$", status=status, body=body))

    with pytest.raises(PublishError) as failed:
        await adapter.publish(make_post(), creds(), MemoryHandles())

    assert failed.value.kind == kind
    assert sandbox_state.published_on("facebook") == []


async def test_server_error_is_transient_and_the_next_attempt_publishes(
    adapter: FacebookAdapter, sandbox_state: SandboxState
) -> None:
    sandbox_state.add_fault(Fault("facebook", "/feed$", status=502))
    handles = MemoryHandles()
    post = make_post()

    with pytest.raises(PublishError) as failed:
        await adapter.publish(post, creds(), handles)
    assert failed.value.kind == ErrorKind.TRANSIENT

    published = await adapter.publish(
        replace(post, handles=handles.saved), creds(), handles
    )
    assert [p["id"] for p in sandbox_state.published_on("facebook")] == [
        published.remote_id
    ]


async def test_expired_token_code_190_is_refreshed_once_and_the_post_goes_out(
    adapter: FacebookAdapter, sandbox_state: SandboxState
) -> None:
    calls = []

    async def refresh() -> Credentials:
        calls.append(1)
        return creds("fresh-page-token")

    await adapter.publish(
        make_post(), creds("expired-1", refresh=refresh), MemoryHandles()
    )

    assert calls == [1]
    first, second = sandbox_state.requests_for("facebook", "POST", "/feed$")
    assert first.headers["authorization"] == "Bearer expired-1"
    assert second.headers["authorization"] == "Bearer fresh-page-token"
    assert len(sandbox_state.published_on("facebook")) == 1


async def test_expired_token_without_refresh_is_auth(adapter: FacebookAdapter) -> None:
    with pytest.raises(PublishError, match="code 190/463") as failed:
        await adapter.publish(make_post(), creds("expired-1"), MemoryHandles())

    assert failed.value.kind == ErrorKind.AUTH


async def test_page_tokens_cannot_be_refreshed_by_endpoint(
    adapter: FacebookAdapter,
) -> None:
    with pytest.raises(PublishError) as failed:
        await adapter.refresh_token("r", "c", "s")
    assert failed.value.kind == ErrorKind.AUTH


@pytest.mark.parametrize(
    "post",
    [
        make_post("a" * 63_207),
        make_post(""),
        make_post(media_urls=("https://m/a.mp4", "https://m/b.jpg")),
    ],
    ids=["too-long", "empty", "video-and-photo"],
)
async def test_invalid_content_is_refused_before_any_request(
    adapter: FacebookAdapter, sandbox_state: SandboxState, post: Post
) -> None:
    with pytest.raises(PublishError) as refused:
        await adapter.publish(post, creds(), MemoryHandles())

    assert refused.value.kind == ErrorKind.INVALID
    assert sandbox_state.requests_for("facebook") == []


async def test_graph_400_for_a_bad_link_is_invalid(
    adapter: FacebookAdapter, sandbox_state: SandboxState
) -> None:
    post = make_post(options={"link": "ftp://example.com/file"})

    with pytest.raises(PublishError, match="1609005") as refused:
        await adapter.publish(post, creds(), MemoryHandles())

    assert refused.value.kind == ErrorKind.INVALID
    assert refused.value.http_status == 400


async def test_duplicate_without_an_earlier_attempt_is_invalid(
    adapter: FacebookAdapter, sandbox_state: SandboxState
) -> None:
    await adapter.publish(make_post("same words"), creds(), MemoryHandles())

    with pytest.raises(PublishError, match="duplicate") as refused:
        await adapter.publish(make_post("same words"), creds(), MemoryHandles())

    assert refused.value.kind == ErrorKind.INVALID
    assert len(sandbox_state.published_on("facebook")) == 1


@pytest.mark.parametrize("body", [{"success": True}, "<html>gateway</html>"])
async def test_success_answer_without_an_id_is_unknown_outcome(
    adapter: FacebookAdapter, sandbox_state: SandboxState, body: Any
) -> None:
    sandbox_state.add_fault(Fault("facebook", "/feed$", status=200, body=body))

    with pytest.raises(PublishError) as unknown:
        await adapter.publish(make_post(), creds(), MemoryHandles())

    assert unknown.value.kind == ErrorKind.UNKNOWN_OUTCOME


# -- unknown outcomes ---------------------------------------------------


async def test_timeout_after_send_is_unknown_outcome_and_reconcile_finds_the_post(
    adapter: FacebookAdapter, sandbox_state: SandboxState
) -> None:
    sandbox_state.add_fault(Fault("facebook", "/feed$", after=True, delay=1.5))
    handles = MemoryHandles()
    post = make_post("Opening hours changed")

    with pytest.raises(PublishError) as unknown:
        await adapter.publish(post, creds(), handles)
    assert unknown.value.kind == ErrorKind.UNKNOWN_OUTCOME

    found = await adapter.reconcile(replace(post, handles=handles.saved), creds())

    [live] = sandbox_state.published_on("facebook")
    assert found is not None and found.remote_id == live["id"]
    [lookup] = sandbox_state.requests_for("facebook", "GET")
    assert lookup.path == f"/v23.0/{PAGE}/published_posts"
    assert "since=" in lookup.query


async def test_reconcile_finds_a_video_among_the_page_videos(
    adapter: FacebookAdapter, sandbox_state: SandboxState
) -> None:
    sandbox_state.add_fault(Fault("facebook", "/videos$", after=True, delay=1.5))
    handles = MemoryHandles()
    post = make_post("New trailer", media_urls=("https://cdn.example.com/t.mp4",))
    with pytest.raises(PublishError):
        await adapter.publish(post, creds(), handles)

    found = await adapter.reconcile(replace(post, handles=handles.saved), creds())

    [live] = sandbox_state.published_on("facebook")
    assert found is not None and found.remote_id == live["id"]


async def test_reconcile_is_none_when_the_post_never_appeared(
    adapter: FacebookAdapter,
) -> None:
    await adapter.publish(make_post("another"), creds(), MemoryHandles())
    sent_at = datetime.now(UTC).isoformat()

    lost = make_post("lost", handles={"facebook_sent_at": sent_at})
    assert await adapter.reconcile(lost, creds()) is None
    assert await adapter.reconcile(make_post("never sent"), creds()) is None


async def test_duplicate_on_retry_after_lost_answer_is_recognised_not_posted_twice(
    adapter: FacebookAdapter, sandbox_state: SandboxState
) -> None:
    sandbox_state.add_fault(Fault("facebook", "/feed$", after=True, delay=1.5))
    handles = MemoryHandles()
    post = make_post("launch day")
    with pytest.raises(PublishError):
        await adapter.publish(post, creds(), handles)

    again = await adapter.publish(
        replace(post, handles=handles.saved), creds(), handles
    )

    [live] = sandbox_state.published_on("facebook")
    assert again.remote_id == live["id"]
