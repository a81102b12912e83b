"""XAdapter against the fake X API on a real port."""

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
from sandbox.x import XFake
from tasks.adapters.base import Credentials, ErrorKind, Post, PublishError
from tasks.adapters.x import XAdapter
from tasks.adapters.x_text import weighted_length

Serve = Callable[[type[FakePlatform]], str]


class MemoryHandles:
    """A HandleStore that keeps what the adapter saved, as the database would."""

    def __init__(self) -> None:
        self.saved: dict[str, Any] = {}

    async def save(self, name: str, value: Any) -> None:
        self.saved[name] = copy.deepcopy(value)


def make_post(text: str = "Hello from Social Queue", **kwargs: Any) -> Post:
    return Post(id=uuid.uuid4(), profile_id="p1", platform="x", text=text, **kwargs)


def media_url(base: str, name: str, size: int = 2048) -> str:
    return f"{base.rsplit('/', 1)[0]}/media/{name}?bytes={size}"


def creds(token: str = "good-token", **kwargs: Any) -> Credentials:
    return Credentials(access_token=token, account_id=XFake.user_id, **kwargs)


@pytest.fixture
def base(serve_fake: Serve) -> str:
    return serve_fake(XFake)


@pytest.fixture
def adapter(http_client: httpx.AsyncClient, base: str) -> XAdapter:
    return XAdapter(http_client, base)


# -- publishing ---------------------------------------------------------


async def test_text_post_sends_documented_request_and_returns_permalink(
    adapter: XAdapter, sandbox_state: SandboxState
) -> None:
    published = await adapter.publish(make_post(), creds(), MemoryHandles())

    [sent] = sandbox_state.requests_for("x", "POST", "^/2/tweets$")
    assert sent.headers["authorization"] == "Bearer good-token"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.body) == {"text": "Hello from Social Queue"}
    [live] = sandbox_state.published_on("x")
    assert published.remote_id == live["id"]
    assert published.url == f"https://x.com/i/web/status/{live['id']}"


async def test_image_post_uploads_one_shot_and_attaches_media_id(
    adapter: XAdapter, base: str, sandbox_state: SandboxState
) -> None:
    handles = MemoryHandles()
    post = make_post(media_urls=(media_url(base, "photo.jpg"),))

    await adapter.publish(post, creds(), handles)

    [upload] = sandbox_state.requests_for("x", "POST", "^/2/media/upload$")
    assert upload.headers["content-type"].startswith("multipart/form-data")
    assert b'name="media_category"\r\n\r\ntweet_image' in upload.body
    media_id = handles.saved["x_media"][post.media_urls[0]]["id"]
    [tweet] = sandbox_state.requests_for("x", "POST", "^/2/tweets$")
    assert json.loads(tweet.body)["media"] == {"media_ids": [media_id]}


async def test_video_post_uses_chunked_upload_and_polls_until_processed(
    serve_fake: Serve, http_client: httpx.AsyncClient, sandbox_state: SandboxState
) -> None:
    class SlowVideoX(XFake):
        processing_polls = 2

    base = serve_fake(SlowVideoX)
    adapter = XAdapter(http_client, base, chunk_bytes=1000)
    post = make_post(media_urls=(media_url(base, "clip.mp4", 2500),))

    await adapter.publish(post, creds(), MemoryHandles())

    [init] = sandbox_state.requests_for("x", "POST", "/initialize$")
    assert json.loads(init.body) == {
        "media_type": "video/mp4",
        "total_bytes": 2500,
        "media_category": "tweet_video",
    }
    appends = sandbox_state.requests_for("x", "POST", "/append$")
    indexes = [a.body.split(b'name="segment_index"\r\n\r\n')[1][:1] for a in appends]
    assert indexes == [b"0", b"1", b"2"]
    assert len(sandbox_state.requests_for("x", "POST", "/finalize$")) == 1
    polls = sandbox_state.requests_for("x", "GET", "^/2/media/upload$")
    assert len(polls) == 2
    assert all("command=STATUS" in p.query for p in polls)
    [live] = sandbox_state.published_on("x")
    assert live["media_keys"][0].startswith("7_")


async def test_retry_reuses_media_uploaded_by_the_failed_attempt(
    adapter: XAdapter, base: str, sandbox_state: SandboxState
) -> None:
    sandbox_state.add_fault(Fault("x", path="^/2/tweets$", status=503))
    handles = MemoryHandles()
    post = make_post(media_urls=(media_url(base, "photo.png"),))

    with pytest.raises(PublishError) as failed:
        await adapter.publish(post, creds(), handles)
    assert failed.value.kind == ErrorKind.TRANSIENT

    await adapter.publish(replace(post, handles=handles.saved), creds(), handles)
    assert len(sandbox_state.requests_for("x", "POST", "^/2/media/upload$")) == 1
    assert len(sandbox_state.published_on("x")) == 1


# -- errors -------------------------------------------------------------


async def test_rate_limit_is_rate_limited_until_x_rate_limit_reset(
    serve_fake: Serve, http_client: httpx.AsyncClient, sandbox_state: SandboxState
) -> None:
    class OnePostX(XFake):
        tweet_limit = 1

    adapter = XAdapter(http_client, serve_fake(OnePostX))
    await adapter.publish(make_post("first"), creds(), MemoryHandles())

    with pytest.raises(PublishError) as limited:
        await adapter.publish(make_post("second"), creds(), MemoryHandles())

    [_, _refused] = sandbox_state.requests_for("x", "POST", "^/2/tweets$")
    assert limited.value.kind == ErrorKind.RATE_LIMITED
    assert limited.value.http_status == 429
    window_end = sandbox_state.requests[0].at + OnePostX.window_secs
    assert abs(limited.value.retry_at.timestamp() - window_end) <= 1
    assert len(sandbox_state.published_on("x")) == 1


async def test_usage_cap_waits_for_the_24_hour_reset(
    adapter: XAdapter, sandbox_state: SandboxState
) -> None:
    reset = int((datetime.now(UTC) + timedelta(hours=20)).timestamp())
    body = {
        "title": "UsageCapExceeded",
        "detail": "Usage cap exceeded: Monthly product cap",
        "type": "https://api.twitter.com/2/problems/usage-capped",
        "status": 429,
    }
    headers = {"x-rate-limit-reset": "1", "x-user-limit-24hour-reset": str(reset)}
    sandbox_state.add_fault(
        Fault("x", "/2/tweets", status=429, body=body, headers=headers)
    )

    with pytest.raises(PublishError) as limited:
        await adapter.publish(make_post(), creds(), MemoryHandles())

    assert limited.value.kind == ErrorKind.RATE_LIMITED
    assert limited.value.retry_at == datetime.fromtimestamp(reset, UTC)


async def test_server_error_is_transient_and_the_next_attempt_publishes(
    adapter: XAdapter, sandbox_state: SandboxState
) -> None:
    sandbox_state.add_fault(Fault("x", "^/2/tweets$", status=503))
    handles = MemoryHandles()
    post = make_post()

    with pytest.raises(PublishError) as failed:
        await adapter.publish(post, creds(), handles)
    assert failed.value.kind == ErrorKind.TRANSIENT
    assert failed.value.http_status == 503

    published = await adapter.publish(
        replace(post, attempt=2, handles=handles.saved), creds(), handles
    )
    assert [p["id"] for p in sandbox_state.published_on("x")] == [published.remote_id]


async def test_expired_token_is_refreshed_once_and_the_post_goes_out(
    adapter: XAdapter, sandbox_state: SandboxState
) -> None:
    calls = []

    async def refresh() -> Credentials:
        calls.append(1)
        grant = await adapter.refresh_token("refresh-1", "client-1", None)
        return creds(grant.access_token, refresh_token=grant.refresh_token)

    await adapter.publish(
        make_post(), creds("expired-1", refresh=refresh), MemoryHandles()
    )

    assert calls == [1]
    [token_call] = sandbox_state.requests_for("x", "POST", "/2/oauth2/token")
    form = httpx.QueryParams(token_call.body.decode())
    assert form["grant_type"] == "refresh_token"
    assert form["refresh_token"] == "refresh-1"
    assert form["client_id"] == "client-1"
    first, second = sandbox_state.requests_for("x", "POST", "^/2/tweets$")
    assert first.headers["authorization"] == "Bearer expired-1"
    assert second.headers["authorization"].startswith("Bearer x-access-")
    assert len(sandbox_state.published_on("x")) == 1


async def test_401_after_a_refresh_is_auth_and_refreshes_only_once(
    adapter: XAdapter,
) -> None:
    calls = []

    async def refresh() -> Credentials:
        calls.append(1)
        return creds("expired-2", refresh=refresh)

    with pytest.raises(PublishError) as failed:
        await adapter.publish(
            make_post(), creds("expired-1", refresh=refresh), MemoryHandles()
        )

    assert failed.value.kind == ErrorKind.AUTH
    assert calls == [1]


async def test_refresh_rotates_tokens_and_voids_the_old_access_token(
    adapter: XAdapter, base: str, http_client: httpx.AsyncClient
) -> None:
    first = await adapter.refresh_token("refresh-1", "client-1", "secret-1")
    second = await adapter.refresh_token(first.refresh_token or "", "client-1", None)

    old = await http_client.get(
        f"{base}/2/users/me", headers={"Authorization": f"Bearer {first.access_token}"}
    )
    new = await http_client.get(
        f"{base}/2/users/me", headers={"Authorization": f"Bearer {second.access_token}"}
    )
    assert (old.status_code, new.status_code) == (401, 200)
    with pytest.raises(PublishError) as reused:
        await adapter.refresh_token("refresh-1", "client-1", None)
    assert reused.value.kind == ErrorKind.AUTH


async def test_refresh_with_a_secret_uses_basic_auth(
    adapter: XAdapter, sandbox_state: SandboxState
) -> None:
    await adapter.refresh_token("refresh-1", "client-1", "secret-1")

    [call] = sandbox_state.requests_for("x", "POST", "/2/oauth2/token")
    expected = httpx.BasicAuth("client-1", "secret-1")._auth_header
    assert call.headers["authorization"] == expected


@pytest.mark.parametrize(
    ("text", "weight"),
    [
        ("a" * 280, 280),
        ("日" * 140, 280),
        ("😀", 2),
        ("e\u0301", 1),  # NFC folds e + combining acute into one code point
        ("read https://example.com/" + "p" * 200 + " now", 32),
        ("see example.com.", 28),
    ],
)
def test_weighted_length_follows_twitter_text_rules(text: str, weight: int) -> None:
    assert weighted_length(text) == weight


@pytest.mark.parametrize(
    "post",
    [
        make_post("a" * 281),
        make_post("日" * 141),
        make_post(""),
        make_post(media_urls=tuple(f"http://m/{n}.jpg" for n in range(5))),
        make_post(media_urls=("http://m/a.mp4", "http://m/b.jpg")),
    ],
    ids=["281-latin", "141-cjk", "empty", "five-images", "video-and-image"],
)
async def test_invalid_content_is_refused_before_any_request(
    adapter: XAdapter, sandbox_state: SandboxState, post: Post
) -> None:
    with pytest.raises(PublishError) as refused:
        await adapter.publish(post, creds(), MemoryHandles())

    assert refused.value.kind == ErrorKind.INVALID
    assert sandbox_state.requests_for("x") == []


def test_too_long_message_names_the_weight_and_the_limit(adapter: XAdapter) -> None:
    with pytest.raises(
        PublishError, match="text is 291 weighted characters, the limit is 280"
    ):
        adapter.validate(make_post("a" * 291))


async def test_platform_400_is_invalid(
    adapter: XAdapter, sandbox_state: SandboxState
) -> None:
    body = {
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": "https://api.twitter.com/2/problems/invalid-request",
        "errors": [{"message": "Your media IDs are invalid."}],
    }
    sandbox_state.add_fault(Fault("x", "^/2/tweets$", status=400, body=body))

    with pytest.raises(PublishError, match="media IDs are invalid") as refused:
        await adapter.publish(make_post(), creds(), MemoryHandles())

    assert refused.value.kind == ErrorKind.INVALID
    assert refused.value.http_status == 400


async def test_duplicate_text_with_no_earlier_attempt_is_invalid(
    adapter: XAdapter, sandbox_state: SandboxState
) -> None:
    await adapter.publish(make_post("same words"), creds(), MemoryHandles())

    with pytest.raises(PublishError, match="duplicate") as refused:
        await adapter.publish(make_post("same words"), creds(), MemoryHandles())

    assert refused.value.kind == ErrorKind.INVALID
    assert len(sandbox_state.published_on("x")) == 1


@pytest.mark.parametrize("body", [{"data": {}}, "<html>oops</html>"])
async def test_created_answer_without_a_post_id_is_unknown_outcome(
    adapter: XAdapter, sandbox_state: SandboxState, body: Any
) -> None:
    sandbox_state.add_fault(Fault("x", "^/2/tweets$", status=201, body=body))

    with pytest.raises(PublishError) as unknown:
        await adapter.publish(make_post(), creds(), MemoryHandles())

    assert unknown.value.kind == ErrorKind.UNKNOWN_OUTCOME


# -- unknown outcomes ---------------------------------------------------


async def test_timeout_after_send_is_unknown_outcome_and_reconcile_finds_the_post(
    adapter: XAdapter, sandbox_state: SandboxState
) -> None:
    sandbox_state.add_fault(Fault("x", "^/2/tweets$", after=True, delay=1.5))
    handles = MemoryHandles()
    post = make_post("Q&A <live> at 5 https://example.com/event")

    with pytest.raises(PublishError) as unknown:
        await adapter.publish(post, creds(), handles)
    assert unknown.value.kind == ErrorKind.UNKNOWN_OUTCOME

    found = await adapter.reconcile(replace(post, handles=handles.saved), creds())

    [live] = sandbox_state.published_on("x")
    assert found is not None and found.remote_id == live["id"]
    [lookup] = sandbox_state.requests_for(
        "x", "GET", f"/2/users/{XFake.user_id}/tweets"
    )
    assert "start_time=" in lookup.query


async def test_reconcile_is_none_when_the_post_never_appeared(
    adapter: XAdapter, sandbox_state: SandboxState
) -> None:
    await adapter.publish(make_post("another post"), creds(), MemoryHandles())
    sent_at = datetime.now(UTC).isoformat()
    post = make_post("the lost one", handles={"x_sent_at": sent_at})

    assert await adapter.reconcile(post, creds()) is None
    assert await adapter.reconcile(make_post("never sent"), creds()) is None


async def test_blind_retry_after_lost_answer_is_recognised_not_posted_twice(
    adapter: XAdapter, base: str, sandbox_state: SandboxState
) -> None:
    sandbox_state.add_fault(Fault("x", "^/2/tweets$", after=True, delay=1.5))
    handles = MemoryHandles()
    post = make_post("launch day", media_urls=(media_url(base, "photo.jpg"),))
    with pytest.raises(PublishError):
        await adapter.publish(post, creds(), handles)

    again = await adapter.publish(
        replace(post, handles=handles.saved), creds(), handles
    )

    [live] = sandbox_state.published_on("x")
    assert again.remote_id == live["id"]
