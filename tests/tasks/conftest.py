"""Fixtures for the worker: the six fake platforms on a real port, a pool,
and a Publisher wired exactly as the worker wires it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from sandbox.core import SandboxState, create_app, serve_in_thread
from sandbox.facebook import FacebookFake
from sandbox.instagram import InstagramFake
from sandbox.linkedin import LinkedInFake
from sandbox.tiktok import TikTokFake
from sandbox.x import XFake
from sandbox.youtube import YouTubeFake
from tasks.accounts import Accounts
from tasks.adapters import build_adapter
from tasks.publish import Publisher
from tasks.store import Store
from tasks.tokens import TokenCipher

PLATFORMS = ("x", "instagram", "linkedin", "facebook", "tiktok", "youtube")
SECRET_KEY = "test-only-secret-key-0123456789"


@dataclass(frozen=True)
class Sandbox:
    url: str
    state: SandboxState

    def base_urls(self) -> dict[str, str]:
        return {p: f"{self.url}/{p}" for p in PLATFORMS}

    def env(self) -> dict[str, str]:
        """Environment of a worker publishing to this sandbox."""
        env = {f"{p.upper()}_API_BASE_URL": f"{self.url}/{p}" for p in PLATFORMS}
        env.update(
            {
                "X_BEARER_TOKEN": "sandbox-x-token",
                "X_USER_ID": "1460000000000000001",
                "INSTAGRAM_ACCESS_TOKEN": "sandbox-ig-token",
                "INSTAGRAM_USER_ID": "17841400000000001",
                "LINKEDIN_ACCESS_TOKEN": "sandbox-li-token",
                "LINKEDIN_AUTHOR_URN": "urn:li:organization:5515715",
                "FACEBOOK_PAGE_TOKEN": "sandbox-fb-token",
                "FACEBOOK_PAGE_ID": "104000000000001",
                "TIKTOK_ACCESS_TOKEN": "sandbox-tt-token",
                "YOUTUBE_ACCESS_TOKEN": "sandbox-yt-token",
                "SOCIAL_QUEUE_SECRET_KEY": SECRET_KEY,
            }
        )
        return env

    def creates(self, platform: str = "x") -> int:
        return len(self.state.published_on(platform))


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    state = SandboxState()
    fakes = [XFake, InstagramFake, LinkedInFake, FacebookFake, TikTokFake, YouTubeFake]
    with serve_in_thread(create_app(fakes, state)) as url:
        yield Sandbox(url, state)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(
        database_url, min_size=1, max_size=8, open=False, kwargs={"autocommit": True}
    ) as pool:
        yield pool


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=1.0)) as client:
        yield client


@pytest.fixture
def publisher(
    pool: AsyncConnectionPool, http_client: httpx.AsyncClient, sandbox: Sandbox
) -> Publisher:
    env = sandbox.env()
    adapters = {
        p: build_adapter(p, http_client, url) for p, url in sandbox.base_urls().items()
    }
    return Publisher(
        Store(pool, "test-worker"),
        Accounts(pool, TokenCipher(SECRET_KEY), env),
        adapters,
    )
