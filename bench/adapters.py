"""Adapter overhead per post: each adapter's publish against the sandbox.

    python bench/adapters.py [--posts 50]

Serves the sandbox in this process on a real port with no added latency (and
rate limits lifted, so every post goes through), publishes `--posts` posts per
platform (text where allowed, an image for Instagram, a 64 KiB video for TikTok
and YouTube), and counts every HTTP request the adapter sends, media download
included. As a baseline it then sends the same number of bare httpx requests
to a trivial endpoint of the same server (`GET /_sandbox/ping`). The
difference is the time a post costs beyond its round trips: our adapter code
plus the fake's own handling of richer requests, which is an upper bound of
the adapter's share.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from sandbox import ALL_FAKES, create_sandbox
from sandbox.core import FakePlatform, SandboxState, serve_in_thread
from sandbox.samples import FAST_OPTIONS, sample_credentials, sample_post
from tasks.adapters import PLATFORMS, build_adapter

# The fakes' rate limits and quotas, lifted so that a long run never waits.
UNLIMITED = {
    "tweet_limit": 10**9,
    "daily_post_limit": 10**9,
    "calls_per_hour": 10**9,
    "quota_total": 10**9,
    "init_limit_per_minute": 10**9,
    "daily_uploads": 10**9,
}
WARMUP_POSTS = 3


@dataclass
class Result:
    platform: str
    posts: int
    calls: int
    adapter_secs: float
    bare_secs: float

    @property
    def ms_per_post(self) -> float:
        return self.adapter_secs / self.posts * 1000

    @property
    def bare_ms_per_post(self) -> float:
        return self.bare_secs / self.posts * 1000


class HandleMemory:
    async def save(self, name: str, value: Any) -> None:
        pass


def unlimited(fake: type[FakePlatform]) -> type[FakePlatform]:
    limits = {key: value for key, value in UNLIMITED.items() if hasattr(fake, key)}
    return type(fake.__name__, (fake,), limits)


async def publish_many(
    platform: str, root: str, posts: int, first: int
) -> tuple[int, float]:
    """Publish `posts` posts; returns (HTTP requests sent, seconds taken)."""
    calls = 0

    async def count(request: httpx.Request) -> None:
        nonlocal calls
        calls += 1

    async with httpx.AsyncClient(event_hooks={"request": [count]}) as client:
        adapter = build_adapter(
            platform, client, f"{root}/{platform}", **FAST_OPTIONS.get(platform, {})
        )
        credentials = sample_credentials(platform, f"bench-{platform}")
        started = time.perf_counter()
        for serial in range(first, first + posts):
            post = sample_post(platform, root, serial)
            await adapter.publish(post, credentials, HandleMemory())
        return calls, time.perf_counter() - started


async def bare_requests(root: str, count: int) -> float:
    """Seconds for `count` sequential bare requests to the trivial endpoint."""
    async with httpx.AsyncClient() as client:
        await client.get(f"{root}/_sandbox/ping")  # open the connection
        started = time.perf_counter()
        for _ in range(count):
            await client.get(f"{root}/_sandbox/ping")
        return time.perf_counter() - started


async def measure(root: str, posts: int) -> list[Result]:
    results = []
    for platform in PLATFORMS:
        await publish_many(platform, root, WARMUP_POSTS, first=0)
        calls, adapter_secs = await publish_many(
            platform, root, posts, first=WARMUP_POSTS
        )
        bare_secs = await bare_requests(root, calls)
        results.append(Result(platform, posts, calls, adapter_secs, bare_secs))
    return results


def table(results: list[Result]) -> str:
    header = (
        f"{'platform':<10} {'posts':>5} {'calls/post':>10} {'ms/post':>8} "
        f"{'bare ms':>8} {'overhead ms':>11} {'ratio':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.platform:<10} {r.posts:>5} {r.calls / r.posts:>10.1f} "
            f"{r.ms_per_post:>8.2f} {r.bare_ms_per_post:>8.2f} "
            f"{r.ms_per_post - r.bare_ms_per_post:>11.2f} "
            f"{r.ms_per_post / r.bare_ms_per_post:>6.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=50, help="posts per platform")
    args = parser.parse_args()

    fakes = tuple(unlimited(fake) for fake in ALL_FAKES)
    app = create_sandbox(SandboxState(), fakes=fakes)
    with serve_in_thread(app) as root:
        results = asyncio.run(measure(root, args.posts))
    print(table(results))
    print(
        "bare ms: the same number of round trips to GET /_sandbox/ping; "
        "ratio: ms/post over bare ms"
    )


if __name__ == "__main__":
    main()
