"""Platform adapters, one per platform, behind the interface in `base`.

`build_adapter("x", client)` gives the adapter for a platform name as stored in
`social_queue.platform`. The adapter modules are imported on first use, so
importing this package (or `tasks.adapters.base`) does not load all six;
`ADAPTERS` imports them all when it is first read.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from tasks.adapters.base import Adapter

    ADAPTERS: dict[str, type[Adapter]]

# platform name -> (module, class)
_LOCATIONS = {
    "x": ("tasks.adapters.x", "XAdapter"),
    "instagram": ("tasks.adapters.instagram", "InstagramAdapter"),
    "linkedin": ("tasks.adapters.linkedin", "LinkedInAdapter"),
    "facebook": ("tasks.adapters.facebook", "FacebookAdapter"),
    "tiktok": ("tasks.adapters.tiktok", "TikTokAdapter"),
    "youtube": ("tasks.adapters.youtube", "YouTubeAdapter"),
}
PLATFORMS = tuple(_LOCATIONS)


def adapter_class(platform: str) -> type[Adapter]:
    """The adapter class for `platform`; ValueError if there is none."""
    try:
        module_name, class_name = _LOCATIONS[platform]
    except KeyError:
        raise ValueError(
            f"no adapter for platform {platform!r}; known platforms: "
            + ", ".join(PLATFORMS)
        ) from None
    return getattr(importlib.import_module(module_name), class_name)


def build_adapter(
    platform: str,
    client: httpx.AsyncClient,
    base_url: str | None = None,
    **options: Any,
) -> Adapter:
    """The adapter for `platform`, sending through `client` to `base_url`.

    `base_url` replaces the platform's API host (None: the real one);
    `options` are the adapter's own keyword settings, such as
    `poll_interval` for Instagram or `version` for LinkedIn.
    """
    return adapter_class(platform)(client, base_url, **options)


def __getattr__(name: str) -> Any:
    if name == "ADAPTERS":
        return {platform: adapter_class(platform) for platform in PLATFORMS}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
