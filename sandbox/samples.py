"""One publishable post and matching credentials per platform, for the sandbox.

What the smallest real post is differs by platform: text where the platform
allows it, an image for Instagram, a small video for TikTok and YouTube. The
media come from the sandbox's own `/media` route, so nothing leaves the host.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from tasks.adapters.base import Credentials, Post

# The account each fake publishes as.
ACCOUNT_IDS = {
    "x": "1460000000000000001",
    "instagram": "17841400000000001",
    "linkedin": "urn:li:person:sandbox",
    "facebook": "100000000000001",
    "tiktok": None,
    "youtube": None,
}
# Adapter settings that skip the waits a real platform needs between polls.
FAST_OPTIONS: dict[str, dict[str, float]] = {
    "instagram": {"poll_interval": 0.0},
    "linkedin": {"poll_interval": 0.0},
    "tiktok": {"poll_interval": 0.0},
}
VIDEO_BYTES = 64 * 1024


def sample_post(platform: str, root: str, serial: int = 0) -> Post:
    """A post for `platform` whose media are served by the sandbox at `root`.

    `serial` goes into the text, since most platforms refuse a duplicate.
    """
    text = f"Hello from the Social Queue sandbox #{serial}"
    media: tuple[str, ...] = ()
    if platform == "instagram":
        media = (f"{root}/media/photo-{serial}.jpg?bytes=4096",)
    elif platform in ("tiktok", "youtube"):
        media = (f"{root}/media/clip-{serial}.mp4?bytes={VIDEO_BYTES}",)
    return Post(uuid.uuid4(), "sandbox", platform, text=text, media_urls=media)


def sample_credentials(
    platform: str,
    token: str,
    refresh: Callable[[], Awaitable[Credentials]] | None = None,
) -> Credentials:
    """Credentials the sandbox accepts (any token not starting `expired-`)."""
    return Credentials(
        access_token=token, account_id=ACCOUNT_IDS[platform], refresh=refresh
    )
