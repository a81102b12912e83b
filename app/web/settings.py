"""The web process's own settings, read from the environment.

Kept apart from `app.config.Settings`, which every process reads: only the
web process needs these secrets, and it validates them itself (refusing to
start in production without them).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from app.exceptions import ConfigurationError

TRUE = {"1", "true", "yes", "on"}
LABEL = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


@dataclass(frozen=True)
class ApiToken:
    """One bearer token of the JSON API and the label recorded as its actor."""

    label: str
    token: str = field(repr=False)


def parse_api_tokens(raw: str) -> tuple[ApiToken, ...]:
    """`OPS_API_TOKEN` as tokens with labels.

    Each comma-separated entry is a token, or `label:token` to name it in the
    event log; an unnamed token is known by a hash prefix, never by itself.

    >>> [t.label for t in parse_api_tokens("ops:0123456789abcdef")]
    ['ops']
    """
    tokens = []
    for entry in raw.split(","):
        entry = entry.strip()
        if not entry:
            continue
        label, sep, token = entry.partition(":")
        if not (sep and LABEL.match(label) and token):
            token = entry
            label = "sha256-" + hashlib.sha256(entry.encode()).hexdigest()[:8]
        if len(token) < 16:
            raise ConfigurationError(
                f"OPS_API_TOKEN entry {label!r} is shorter than 16 characters; "
                "use a long random token (python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        tokens.append(ApiToken(label, token))
    return tuple(tokens)


def is_production(env: Mapping[str, str]) -> bool:
    """Production is declared (SOCIAL_QUEUE_ENV) or implied by a Heroku dyno."""
    declared = env.get("SOCIAL_QUEUE_ENV", "").strip().lower()
    if declared:
        return declared == "production"
    return bool(env.get("DYNO", "").strip())


@dataclass(frozen=True)
class WebSettings:
    """What the web layer needs beyond `app.config.Settings`.

    `webhook_secrets` may hold several secrets while one is being rotated on
    our side (comma-separated in ICADENCE_WEBHOOK_SECRET); a delivery signed
    with any of them is accepted.
    """

    webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    allow_unsigned_webhooks: bool = False
    production: bool = False
    api_tokens: tuple[ApiToken, ...] = field(default=(), repr=False)
    webhook_max_body_bytes: int = 1024 * 1024
    webhook_tolerance_seconds: int = 300
    pool_max_size: int = 10

    def __post_init__(self) -> None:
        if self.production and not self.webhook_secrets:
            raise ConfigurationError(
                "ICADENCE_WEBHOOK_SECRET is required in production: without it "
                "anyone could queue posts on any account"
            )
        if self.production and self.allow_unsigned_webhooks:
            raise ConfigurationError(
                "ICADENCE_WEBHOOK_ALLOW_UNSIGNED is for development only; unset it"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebSettings:
        env = os.environ if env is None else env
        secrets = tuple(
            s.strip() for s in env.get("ICADENCE_WEBHOOK_SECRET", "").split(",")
        )
        return cls(
            webhook_secrets=tuple(s for s in secrets if s),
            allow_unsigned_webhooks=(
                env.get("ICADENCE_WEBHOOK_ALLOW_UNSIGNED", "").strip().lower() in TRUE
            ),
            production=is_production(env),
            api_tokens=parse_api_tokens(env.get("OPS_API_TOKEN", "")),
            webhook_max_body_bytes=_positive(
                env, "WEBHOOK_MAX_BODY_BYTES", 1024 * 1024
            ),
            pool_max_size=_positive(env, "WEB_DB_POOL_SIZE", 10),
        )


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ConfigurationError(f"{name} must be a positive whole number, not {raw!r}")
    return int(raw)
