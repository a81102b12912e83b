"""No adapter logs a token, not even through httpx's own logging."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox import create_sandbox
from sandbox.core import SandboxState, serve_in_thread
from sandbox.samples import FAST_OPTIONS, sample_credentials, sample_post
from tasks.adapters import PLATFORMS, build_adapter
from tasks.adapters.base import Credentials


class MemoryHandles:
    def __init__(self) -> None:
        self.saved: dict[str, Any] = {}

    async def save(self, name: str, value: Any) -> None:
        self.saved[name] = value


@pytest.fixture(scope="module")
def sandbox_state() -> SandboxState:
    return SandboxState()


@pytest.fixture(scope="module")
def sandbox_root(sandbox_state: SandboxState) -> Iterator[str]:
    with serve_in_thread(create_sandbox(sandbox_state)) as root:
        yield root


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_publish_with_a_refresh_logs_no_token(
    platform: str,
    sandbox_root: str,
    sandbox_state: SandboxState,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The first token is refused as expired, so the refreshed one is sent too.
    expired = f"expired-{platform}-Zq81sEcReT"
    fresh = f"{platform}-Kp27fReShToKeN"

    async def refresh() -> Credentials:
        return sample_credentials(platform, fresh)

    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient(timeout=5.0) as client:
        adapter = build_adapter(
            platform,
            client,
            f"{sandbox_root}/{platform}",
            **FAST_OPTIONS.get(platform, {}),
        )
        published = await adapter.publish(
            sample_post(platform, sandbox_root),
            sample_credentials(platform, expired, refresh),
            MemoryHandles(),
        )

    assert published.remote_id
    sent = [r.headers.get("authorization", "") for r in sandbox_state.requests]
    assert any(expired in header for header in sent)
    assert any(fresh in header for header in sent), "the refresh was exercised"
    assert any(r.name == "httpx" for r in caplog.records), "httpx was captured"
    for record in caplog.records:
        logged = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        assert "Zq81sEcReT" not in logged, record.name
        assert "Kp27fReShToKeN" not in logged, record.name
