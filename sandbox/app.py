"""The whole sandbox: the six fake platforms in one Starlette app.

Each fake is mounted under its platform's name, so the base URL to give an
adapter is `http://host:port/{platform}`: `X_API_BASE_URL=http://127.0.0.1:8700/x`
and so on. Nothing here talks to a real platform.
"""

from __future__ import annotations

from starlette.applications import Starlette

from sandbox.core import FakePlatform, SandboxState, create_app
from sandbox.facebook import FacebookFake
from sandbox.instagram import InstagramFake
from sandbox.linkedin import LinkedInFake
from sandbox.tiktok import TikTokFake
from sandbox.x import XFake
from sandbox.youtube import YouTubeFake

ALL_FAKES: tuple[type[FakePlatform], ...] = (
    XFake,
    InstagramFake,
    LinkedInFake,
    FacebookFake,
    TikTokFake,
    YouTubeFake,
)


def create_sandbox(
    state: SandboxState | None = None,
    latency: float = 0.0,
    failure_rate: float = 0.0,
    seed: int | None = None,
    fakes: tuple[type[FakePlatform], ...] = ALL_FAKES,
) -> Starlette:
    """The sandbox app: every fake in `fakes`, the control API and `/media`.

    `latency` (seconds added to every platform request), `failure_rate` and
    `seed` set up a new `SandboxState`; pass `state` instead to share one.
    """
    if state is None:
        state = SandboxState(latency=latency, failure_rate=failure_rate, seed=seed)
    return create_app(list(fakes), state)
