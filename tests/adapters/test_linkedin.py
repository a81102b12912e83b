"""LinkedInAdapter against the fake LinkedIn API on a real port."""

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
from sandbox.linkedin import LinkedInFake, active_versions, render_little
from tasks.adapters.base import Credentials, ErrorKind, Post, PublishError
from tasks.adapters.linkedin import DEFAULT_VERSION, LinkedInAdapter, escape_little

Serve = Callable[[type[FakePlatform]], str]
AUTHOR = "urn:li:person:8675309"
CURRENT_VERSION = datetime.now(UTC).strftime("%Y%m")


class MemoryHandles:
    def __init__(self) -> None:
        self.saved: dict[str, Any] = {}

    async def save(self, name: str, value: Any) -> None:
        self.saved[name] = copy.deepcopy(value)


def make_post(text: str = "Hello LinkedIn", **kwargs: Any) -> Post:
    return Post(
        id=uuid.uuid4(), profile_id="p1", platform="linkedin", text=text, **kwargs
    )


def creds(token: str = "good-token", **kwargs: Any) -> Credentials:
    return Credentials(access_token=token, account_id=AUTHOR, **kwargs)


def media_url(base: str, name: str, size: int = 2048) -> str:
    return f"{base.rsplit('/', 1)[0]}/media/{name}?bytes={size}"


def make_adapter(
    client: httpx.AsyncClient, base: str, **kwargs: Any
) -> LinkedInAdapter:
    return LinkedInAdapter(
        client,
        base,
        oauth_base_url=base,
        version=kwargs.pop("version", CURRENT_VERSION),
        poll_interval=0.01,
        **kwargs,
    )


@pytest.fixture
def base(serve_fake: Serve) -> str:
    return serve_fake(LinkedInFake)


@pytest.fixture
def adapter(http_client: httpx.AsyncClient, base: str) -> LinkedInAdapter:
    return make_adapter(http_client, base)


# -- publishing ---------------------------------------------------------


async def test_text_post_sends_documented_request_and_returns_urn(
    adapter: LinkedInAdapter, sandbox_state: SandboxState
) -> None:
    published = await adapter.publish(make_post(), creds(), MemoryHandles())

    [sent] = sandbox_state.requests_for("linkedin", "POST", "^/rest/posts$")
    assert sent.headers["authorization"] == "Bearer good-token"
    assert sent.headers["linkedin-version"] == CURRENT_VERSION
    assert sent.headers["x-restli-protocol-version"] == "2.0.0"
    assert json.loads(sent.body) == {
        "author": AUTHOR,
        "commentary": "Hello LinkedIn",
        "visibility": "PUBLIC",
        "distribution": {
            "feedDistribution": "MAIN_FEED",
            "targetEntities": [],
            "thirdPartyDistributionChannels": [],
        },
        "lifecycleState": "PUBLISHED",
        "isReshareDisabledByAuthor": False,
    }
    [live] = sandbox_state.published_on("linkedin")
    assert published.remote_id == live["id"]
    assert published.url == f"https://www.linkedin.com/feed/update/{live['id']}"


async def test_reserved_characters_are_escaped_so_the_post_is_not_cut(
    adapter: LinkedInAdapter, sandbox_state: SandboxState
) -> None:
    text = r"Q&A (live) with @team: #launch <today> [1] {x} a|b *bold* _it_ ~s~ C:\tmp"

    await adapter.publish(make_post(text), creds(), MemoryHandles())

    [live] = sandbox_state.published_on("linkedin")
    assert live["text"] == text
    # Without escaping, LinkedIn would have kept only this much:
    assert render_little(text) == "Q&A "


def test_escape_little_backslashes_every_reserved_character() -> None:
    assert escape_little(r"\|{}@[]()<>#*_~") == "".join(
        "\\" + c for c in r"\|{}@[]()<>#*_~"
    )
    assert escape_little("plain text, no change!") == "plain text, no change!"


async def test_image_post_initializes_uploads_and_attaches_the_image_urn(
    adapter: LinkedInAdapter, base: str, sandbox_state: SandboxState
) -> None:
    handles = MemoryHandles()
    post = make_post(media_urls=(media_url(base, "photo.jpg"),))

    await adapter.publish(post, creds(), handles)

    [init] = sandbox_state.requests_for("linkedin", "POST", "^/rest/images$")
    assert init.query == "action=initializeUpload"
    assert json.loads(init.body) == {"initializeUploadRequest": {"owner": AUTHOR}}
    [upload] = sandbox_state.requests_for("linkedin", "PUT", "^/dms-uploads/")
    assert len(upload.body) == 2048
    urn = handles.saved["linkedin_images"][post.media_urls[0]]
    [sent] = sandbox_state.requests_for("linkedin", "POST", "^/rest/posts$")
    assert json.loads(sent.body)["content"] == {"media": {"id": urn}}


async def test_several_images_become_a_multi_image_post(
    adapter: LinkedInAdapter, base: str, sandbox_state: SandboxState
) -> None:
    urls = (media_url(base, "a.jpg"), media_url(base, "b.png"))

    await adapter.publish(make_post(media_urls=urls), creds(), MemoryHandles())

    [sent] = sandbox_state.requests_for("linkedin", "POST", "^/rest/posts$")
    images = json.loads(sent.body)["content"]["multiImage"]["images"]
    assert len(images) == 2
    assert all(image["id"].startswith("urn:li:image:") for image in images)


async def test_video_is_uploaded_in_parts_finalized_and_awaited(
    serve_fake: Serve, http_client: httpx.AsyncClient, sandbox_state: SandboxState
) -> None:
    class SmallPartsLinkedIn(LinkedInFake):
        video_part_bytes = 1000
        processing_polls = 2

    base = serve_fake(SmallPartsLinkedIn)
    adapter = make_adapter(http_client, base)
    post = make_post(media_urls=(media_url(base, "clip.mp4", 2500),))

    await adapter.publish(post, creds(), MemoryHandles())

    [init] = sandbox_state.requests_for("linkedin", "POST", "^/rest/videos$")[:1]
    assert json.loads(init.body)["initializeUploadRequest"]["fileSizeBytes"] == 2500
    parts = sandbox_state.requests_for("linkedin", "PUT", "^/dms-uploads/")
    assert [len(p.body) for p in parts] == [1000, 1000, 500]
    finalize = sandbox_state.requests_for("linkedin", "POST", "^/rest/videos$")[1]
    request = json.loads(finalize.body)["finalizeUploadRequest"]
    assert len(request["uploadedPartIds"]) == 3
    polls = sandbox_state.requests_for("linkedin", "GET", "^/rest/videos/")
    assert len(polls) == 2
    [live] = sandbox_state.published_on("linkedin")
    assert live["content"]["media"]["id"] == request["video"]


async def test_retry_reuses_uploaded_images(
    adapter: LinkedInAdapter, base: str, sandbox_state: SandboxState
) -> None:
    sandbox_state.add_fault(Fault("linkedin", "^/rest/posts$", status=500))
    handles = MemoryHandles()
    post = make_post(media_urls=(media_url(base, "photo.jpg"),))
    with pytest.raises(PublishError):
        await adapter.publish(post, creds(), handles)

    await adapter.publish(replace(post, handles=handles.saved), creds(), handles)

    assert len(sandbox_state.requests_for("linkedin", "POST", "^/rest/images$")) == 1
    assert len(sandbox_state.published_on("linkedin")) == 1


# -- errors -------------------------------------------------------------


async def test_daily_quota_429_waits_until_midnight_utc(
    serve_fake: Serve, http_client: httpx.AsyncClient
) -> None:
    class OnePostLinkedIn(LinkedInFake):
        daily_post_limit = 1

    adapter = make_adapter(http_client, serve_fake(OnePostLinkedIn))
    await adapter.publish(make_post("one"), creds(), MemoryHandles())

    with pytest.raises(PublishError) as limited:
        await adapter.publish(make_post("two"), creds(), MemoryHandles())

    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert limited.value.kind == ErrorKind.RATE_LIMITED
    assert limited.value.retry_at == datetime(
        tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=UTC
    )


async def test_429_with_retry_after_uses_it(
    adapter: LinkedInAdapter, sandbox_state: SandboxState
) -> None:
    sandbox_state.add_fault(
        Fault("linkedin", "^/rest/posts$", status=429, headers={"Retry-After": "120"})
    )
    before = datetime.now(UTC)

    with pytest.raises(PublishError) as limited:
        await adapter.publish(make_post(), creds(), MemoryHandles())

    assert limited.value.kind == ErrorKind.RATE_LIMITED
    wait = limited.value.retry_at - before
    assert timedelta(seconds=119) <= wait <= timedelta(seconds=122)


async def test_server_error_is_transient_and_the_next_attempt_publishes(
    adapter: LinkedInAdapter, sandbox_state: SandboxState
) -> None:
    sandbox_state.add_fault(Fault("linkedin", "^/rest/posts$", status=503))
    handles = MemoryHandles()
    post = make_post()

    with pytest.raises(PublishError) as failed:
        await adapter.publish(post, creds(), handles)
    assert failed.value.kind == ErrorKind.TRANSIENT

    published = await adapter.publish(
        replace(post, handles=handles.saved), creds(), handles
    )
    assert [p["id"] for p in sandbox_state.published_on("linkedin")] == [
        published.remote_id
    ]


async def test_expired_token_is_refreshed_once_and_the_post_goes_out(
    adapter: LinkedInAdapter, sandbox_state: SandboxState
) -> None:
    calls = []

    async def refresh() -> Credentials:
        calls.append(1)
        grant = await adapter.refresh_token("refresh-1", "client-1", "secret-1")
        return creds(grant.access_token)

    await adapter.publish(
        make_post(), creds("expired-1", refresh=refresh), MemoryHandles()
    )

    assert calls == [1]
    [token_call] = sandbox_state.requests_for(
        "linkedin", "POST", "/oauth/v2/accessToken"
    )
    form = httpx.QueryParams(token_call.body.decode())
    assert dict(form) == {
        "grant_type": "refresh_token",
        "refresh_token": "refresh-1",
        "client_id": "client-1",
        "client_secret": "secret-1",
    }
    assert len(sandbox_state.published_on("linkedin")) == 1


async def test_401_without_a_way_to_refresh_is_auth(adapter: LinkedInAdapter) -> None:
    with pytest.raises(PublishError) as failed:
        await adapter.publish(make_post(), creds("expired-1"), MemoryHandles())

    assert failed.value.kind == ErrorKind.AUTH
    assert failed.value.http_status == 401


async def test_refresh_voids_the_previous_access_token(
    adapter: LinkedInAdapter, base: str, http_client: httpx.AsyncClient
) -> None:
    first = await adapter.refresh_token("refresh-1", "client-1", "secret-1")
    await adapter.refresh_token("refresh-1", "client-1", "secret-1")

    with pytest.raises(PublishError) as failed:
        await adapter.publish(make_post(), creds(first.access_token), MemoryHandles())
    assert failed.value.kind == ErrorKind.AUTH


async def test_retired_version_is_a_config_error(
    http_client: httpx.AsyncClient, base: str, sandbox_state: SandboxState
) -> None:
    adapter = make_adapter(http_client, base, version="202001")

    with pytest.raises(PublishError, match="202001") as failed:
        await adapter.publish(make_post(), creds(), MemoryHandles())

    assert failed.value.kind == ErrorKind.CONFIG
    assert failed.value.http_status == 426


def test_default_version_is_still_served() -> None:
    # Fails once LinkedIn would retire the pinned version: time to bump it.
    assert DEFAULT_VERSION in active_versions(datetime.now(UTC))


@pytest.mark.parametrize(
    "post",
    [
        make_post("a" * 3001),
        make_post(""),
        make_post(media_urls=("http://m/a.mp4", "http://m/b.jpg")),
        make_post(media_urls=tuple(f"http://m/{n}.jpg" for n in range(21))),
    ],
    ids=["3001-chars", "empty", "video-and-image", "21-images"],
)
async def test_invalid_content_is_refused_before_any_request(
    adapter: LinkedInAdapter, sandbox_state: SandboxState, post: Post
) -> None:
    with pytest.raises(PublishError) as refused:
        await adapter.publish(post, creds(), MemoryHandles())

    assert refused.value.kind == ErrorKind.INVALID
    assert sandbox_state.requests_for("linkedin") == []


async def test_schema_422_from_linkedin_is_invalid(
    adapter: LinkedInAdapter, sandbox_state: SandboxState
) -> None:
    post = make_post(options={"visibility": "EVERYONE"})

    with pytest.raises(PublishError, match="visibility") as refused:
        await adapter.publish(post, creds(), MemoryHandles())

    assert refused.value.kind == ErrorKind.INVALID
    assert refused.value.http_status == 422


async def test_missing_author_urn_is_a_config_error(adapter: LinkedInAdapter) -> None:
    with pytest.raises(PublishError) as failed:
        await adapter.publish(
            make_post(), Credentials(access_token="t", account_id="me"), MemoryHandles()
        )
    assert failed.value.kind == ErrorKind.CONFIG


async def test_duplicate_of_someone_elses_post_is_invalid(
    adapter: LinkedInAdapter, sandbox_state: SandboxState
) -> None:
    await adapter.publish(make_post("same words"), creds(), MemoryHandles())

    with pytest.raises(PublishError, match="urn:li:share:") as refused:
        await adapter.publish(make_post("same words"), creds(), MemoryHandles())

    assert refused.value.kind == ErrorKind.INVALID
    assert len(sandbox_state.published_on("linkedin")) == 1


@pytest.mark.parametrize("body", [None, {"status": "ok"}])
async def test_created_answer_without_post_urn_is_unknown_outcome(
    adapter: LinkedInAdapter, sandbox_state: SandboxState, body: Any
) -> None:
    sandbox_state.add_fault(Fault("linkedin", "^/rest/posts$", status=201, body=body))

    with pytest.raises(PublishError) as unknown:
        await adapter.publish(make_post(), creds(), MemoryHandles())

    assert unknown.value.kind == ErrorKind.UNKNOWN_OUTCOME


# -- unknown outcomes ---------------------------------------------------


async def test_timeout_after_send_is_unknown_outcome_and_reconcile_finds_the_post(
    adapter: LinkedInAdapter, sandbox_state: SandboxState
) -> None:
    sandbox_state.add_fault(Fault("linkedin", "^/rest/posts$", after=True, delay=1.5))
    handles = MemoryHandles()
    post = make_post("Big news (really) #1")

    with pytest.raises(PublishError) as unknown:
        await adapter.publish(post, creds(), handles)
    assert unknown.value.kind == ErrorKind.UNKNOWN_OUTCOME

    found = await adapter.reconcile(replace(post, handles=handles.saved), creds())

    [live] = sandbox_state.published_on("linkedin")
    assert found is not None and found.remote_id == live["id"]
    [lookup] = sandbox_state.requests_for("linkedin", "GET", "^/rest/posts$")
    assert "q=author" in lookup.query and "author=urn%3Ali%3Aperson" in lookup.query


async def test_reconcile_is_none_when_the_post_never_appeared(
    adapter: LinkedInAdapter,
) -> None:
    await adapter.publish(make_post("another"), creds(), MemoryHandles())
    sent = make_post(
        "lost", handles={"linkedin_sent_at": datetime.now(UTC).isoformat()}
    )

    assert await adapter.reconcile(sent, creds()) is None
    assert await adapter.reconcile(make_post("never sent"), creds()) is None


async def test_reconcile_without_read_permission_cannot_tell(
    adapter: LinkedInAdapter, sandbox_state: SandboxState
) -> None:
    body = {"status": 403, "message": "Not enough permissions to access: posts"}
    sandbox_state.add_fault(Fault("linkedin", "^/rest/posts$", "GET", 403, body))
    post = make_post(handles={"linkedin_sent_at": datetime.now(UTC).isoformat()})

    with pytest.raises(PublishError) as unknown:
        await adapter.reconcile(post, creds())

    assert unknown.value.kind == ErrorKind.UNKNOWN_OUTCOME


async def test_duplicate_on_retry_of_our_own_landed_post_is_published(
    adapter: LinkedInAdapter, sandbox_state: SandboxState
) -> None:
    sandbox_state.add_fault(Fault("linkedin", "^/rest/posts$", after=True, delay=1.5))
    handles = MemoryHandles()
    post = make_post("launch day")
    with pytest.raises(PublishError):
        await adapter.publish(post, creds(), handles)

    again = await adapter.publish(
        replace(post, handles=handles.saved), creds(), handles
    )

    [live] = sandbox_state.published_on("linkedin")
    assert again.remote_id == live["id"]
    [check] = sandbox_state.requests_for("linkedin", "GET", "^/rest/posts/")
    assert check.path == f"/rest/posts/{live['id']}"
