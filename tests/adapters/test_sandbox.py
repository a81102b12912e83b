"""The combined sandbox app: six fakes, the control API, injected failures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from starlette.applications import Starlette

from sandbox import ALL_FAKES, create_sandbox
from sandbox.core import SandboxState

PLATFORMS = {"x", "instagram", "linkedin", "facebook", "tiktok", "youtube"}


@asynccontextmanager
async def TestClient(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client that calls `app` in-process, without a port."""
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver"
    ) as client:
        yield client


async def tweet(client: httpx.AsyncClient, text: str) -> int:
    response = await client.post(
        "/x/2/tweets", json={"text": text}, headers={"Authorization": "Bearer t"}
    )
    return response.status_code


async def test_landing_page_says_it_is_a_sandbox_and_lists_all_six() -> None:
    async with TestClient(create_sandbox()) as client:
        body = (await client.get("/")).json()

    assert "sandbox" in body["sandbox"]
    assert "nothing is published anywhere" in body["sandbox"]
    assert set(body["platforms"]) == PLATFORMS
    assert body["platforms"]["x"] == "http://testserver/x"


async def test_all_six_fakes_are_mounted_under_their_names() -> None:
    assert {fake.name for fake in ALL_FAKES} == PLATFORMS
    state = SandboxState()
    probes = {
        "x": ("GET", "/x/2/users/me"),
        "instagram": ("GET", "/instagram/v23.0/17841400000000000/media"),
        "linkedin": ("GET", "/linkedin/rest/posts/urn:li:share:1"),
        "facebook": ("GET", "/facebook/v23.0/1234/published_posts"),
        "tiktok": ("POST", "/tiktok/v2/post/publish/creator_info/query/"),
        "youtube": ("POST", "/youtube/token"),
    }

    async with TestClient(create_sandbox(state)) as client:
        for method, path in probes.values():
            # Each fake answers in its own shape: not the app's 404.
            response = await client.request(method, path)
            assert response.headers["content-type"].startswith("application/json")

    assert {r.platform for r in state.requests} == PLATFORMS


async def test_control_api_records_requests_and_applies_faults() -> None:
    async with TestClient(create_sandbox()) as client:
        fault = {"platform": "x", "path": "^/2/tweets$", "status": 503}
        added = await client.post("/_sandbox/faults", json=fault)
        assert added.status_code == 201
        assert await tweet(client, "first") == 503
        assert await tweet(client, "second") == 201

        logged = (await client.get("/_sandbox/requests?platform=x")).json()
        published = (await client.get("/_sandbox/published")).json()["published"]

    assert [r["path"] for r in logged["requests"]] == ["/2/tweets", "/2/tweets"]
    assert [post["text"] for post in published["x"]] == ["second"]


async def test_settings_change_latency_and_failure_rate_within_bounds() -> None:
    state = SandboxState()
    async with TestClient(create_sandbox(state)) as client:
        changed = await client.put(
            "/_sandbox/settings", json={"latency": 0.01, "failure_rate": 0.25}
        )
        too_high = await client.put("/_sandbox/settings", json={"failure_rate": 1.5})
        negative = await client.put("/_sandbox/settings", json={"failure_rate": -0.1})

    assert changed.json() == {"latency": 0.01, "failure_rate": 0.25}
    assert too_high.status_code == negative.status_code == 422
    assert (state.latency, state.failure_rate) == (0.01, 0.25)


@pytest.mark.parametrize("rate", [-0.01, 1.01])
def test_failure_rate_outside_zero_to_one_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        create_sandbox(failure_rate=rate)


async def test_failure_rate_fails_that_share_of_creates_and_nothing_else() -> None:
    state = SandboxState(failure_rate=0.3, seed=7)
    async with TestClient(create_sandbox(state)) as client:
        statuses = [await tweet(client, f"post {n}") for n in range(90)]
        reads = [
            await client.get("/x/2/users/me", headers={"Authorization": "Bearer t"})
            for _ in range(20)
        ]

    failed = [s for s in statuses if s != 201]
    assert 0.2 * 90 <= len(failed) <= 0.4 * 90
    assert set(failed) <= {429, 503}
    assert len(state.injected) == len(failed)
    assert all(read.status_code == 200 for read in reads)
    # A failed create created nothing.
    assert len(state.published_on("x")) == statuses.count(201)


async def test_injected_429_carries_the_platform_reset_header() -> None:
    state = SandboxState(failure_rate=1.0, seed=1)
    async with TestClient(create_sandbox(state)) as client:
        answers = [
            await client.post(
                "/x/2/tweets",
                json={"text": f"t{n}"},
                headers={"Authorization": "Bearer t"},
            )
            for n in range(10)
        ]

    limited = [a for a in answers if a.status_code == 429]
    assert limited, "a seeded run of ten draws both kinds"
    assert all(a.headers["x-rate-limit-remaining"] == "0" for a in limited)
    assert all(a.headers["x-rate-limit-reset"].isdigit() for a in limited)
    assert state.published_on("x") == []


async def test_same_seed_fails_the_same_requests() -> None:
    async def run() -> list[int]:
        state = SandboxState(failure_rate=0.5, seed=42)
        async with TestClient(create_sandbox(state)) as client:
            return [await tweet(client, f"post {n}") for n in range(30)]

    assert await run() == await run()
