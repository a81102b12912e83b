"""Fixtures for the web layer: the app on a fresh database, signed deliveries."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.config import Settings
from app.web import create_app
from app.web.login import OpsSettings
from app.web.passwords import Users, hash_password
from app.web.settings import WebSettings, parse_api_tokens
from app.web.signature import sign
from tests.web.helpers import SECRET, TOKEN
from tests.web.ops_helpers import OPS_PASSWORD

Deliver = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture
def web_settings() -> WebSettings:
    return WebSettings(
        webhook_secrets=(SECRET,),
        api_tokens=parse_api_tokens(f"tests:{TOKEN}"),
        webhook_max_body_bytes=64 * 1024,
        pool_max_size=4,
    )


@pytest.fixture
def environ() -> dict[str, str]:
    """Where the integration status looks for credentials; empty by default."""
    return {}


@pytest.fixture
async def app(
    database_url: str, web_settings: WebSettings, environ: dict[str, str]
) -> AsyncIterator[Starlette]:
    """The application with its lifespan running (ASGITransport runs none)."""
    application = create_app(
        Settings(database_url=database_url), web_settings, environ=environ
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sq") as http:
        yield http


@pytest.fixture
def deliver(client: httpx.AsyncClient) -> Deliver:
    """POST an event to the webhook, signed as iCadence signs it."""

    async def send(
        event: dict[str, Any] | bytes,
        *,
        secret: str = SECRET,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        t = int(time.time()) if timestamp is None else timestamp
        header = signature or f"t={t},v1={sign(secret, t, body)}"
        return await client.post(
            "/webhooks/icadence",
            content=body,
            headers={
                "X-ICadence-Signature": header,
                "Content-Type": "application/json",
            },
        )

    return send


@pytest.fixture
async def ops_app(
    database_url: str, web_settings: WebSettings
) -> AsyncIterator[Starlette]:
    """The application with two ops logins: `ops` (OPS_PASSWORD) and `ana`."""
    application = create_app(
        Settings(database_url=database_url),
        web_settings,
        environ={},
        ops_settings=OpsSettings(
            users=Users(
                hashes={"ana": hash_password("ana's secret")}, password=OPS_PASSWORD
            ),
            session_key="test-session-key-0123456789",
            login_attempts=3,
        ),
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def ops(ops_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client of the ops page, not logged in yet."""
    transport = httpx.ASGITransport(app=ops_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sq") as http:
        yield http
