"""Instagram's own Graph error codes, on top of those `graph` classifies.

Content publishing reports most of its failures as 2207xxx subcodes, some on
an error answer and some in a container's `status` text; the same subcode
means the same in both places.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tasks.adapters import graph
from tasks.adapters.base import ErrorKind

# Meta's own processing failed or timed out fetching the media: try again.
TRANSIENT_SUBCODES = frozenset({2207001, 2207003, 2207032})
# The container expired or must be rebuilt (24: "media builder does not exist").
RECREATE_SUBCODES = frozenset({2207008, 2207020, 2207053})
# "Media ID is not available": publishing raced container processing.
NOT_READY_SUBCODE = 2207027
# The account reached its rolling 24 h publishing cap.
DAILY_CAP_SUBCODE = 2207042

INSTAGRAM = graph.GraphProduct(
    name="Instagram",
    base_url_setting="INSTAGRAM_API_BASE_URL",
    token_codes=frozenset({190}),
    # Application, user, page and API-specific call-rate limits.
    rate_limit_codes=frozenset({4, 17, 32, 613}),
    token_advice="the access token is invalid or expired: reconnect",
    permission_advice=(
        "the token lacks a permission (instagram_content_publish?): reconnect"
    ),
    # Refused content (2207004 too large, 2207009 aspect ratio, 2207010
    # caption...) falls through to here, after every temporary cause.
    invalid_advice="Instagram will not accept this post as it is: fix the media "
    "or caption",
)


def instagram_rules(daily_cap_wait: timedelta) -> graph.Rules:
    """The 2207xxx subcodes, with a capped account looked at again after
    `daily_cap_wait` (the API does not say when its 24 h window frees)."""

    def rules(error: graph.GraphError, now: datetime) -> graph.Verdict | None:
        if error.subcode == DAILY_CAP_SUBCODE:
            return graph.Verdict(
                ErrorKind.RATE_LIMITED,
                "the account reached its 24 h publishing cap: deferred",
                now + daily_cap_wait,
            )
        if error.subcode in TRANSIENT_SUBCODES or error.subcode == NOT_READY_SUBCODE:
            return graph.Verdict(
                ErrorKind.TRANSIENT, "a temporary Instagram failure: retrying"
            )
        if error.subcode in RECREATE_SUBCODES:
            # A new container on the next attempt fixes it.
            return graph.Verdict(
                ErrorKind.TRANSIENT, "the container expired: a new one is needed"
            )
        return None

    return rules
