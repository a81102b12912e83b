"""The web process: the iCadence webhook, the ops JSON API, health checks.

`create_app` builds the Starlette application; its lifespan opens one
connection pool for the database and closes it on shutdown.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.database import database_url
from app.web import api, health, openapi, ops, webhook
from app.web.errors import EXCEPTION_HANDLERS
from app.web.login import OpsSettings
from app.web.metrics import metrics
from app.web.settings import WebSettings

logger = logging.getLogger(__name__)


class RequestLog:
    """One INFO line per request: `event=http.request method=GET path=/healthz
    status=200 ms=3.1`. The query string is left out: it may carry search text
    that is nobody's business in a log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            logger.info(
                "event=http.request method=%s path=%s status=%d ms=%.1f",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
            )


def create_app(
    settings: Settings,
    web_settings: WebSettings | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    ops_settings: OpsSettings | None = None,
) -> Starlette:
    """The application; raises ConfigurationError when it must not start
    (production without a webhook secret or SOCIAL_QUEUE_SECRET_KEY).

    `environ` is where credentials are looked for by the integration status
    (os.environ by default).
    """
    web_settings = web_settings or WebSettings.from_env()
    _warn_about(web_settings)
    ops_settings = ops_settings or OpsSettings.from_env(
        os.environ if environ is None else environ,
        production=web_settings.production,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Starting the embedded server blocks for a while: not on the loop.
        conninfo = await anyio.to_thread.run_sync(database_url, settings)
        pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=web_settings.pool_max_size,
            kwargs={"autocommit": True},
            open=False,
            name="web",
        )
        await pool.open()
        app.state.pool, app.state.conninfo = pool, conninfo
        await ops.start_live(app)
        try:
            yield
        finally:
            await ops.stop_live(app)
            await pool.close()

    app = Starlette(
        routes=[
            Route("/webhooks/icadence", webhook.receive, methods=["POST"]),
            *api.routes,
            Route(
                "/api/integrations/status",
                health.integrations_status,
                methods=["GET"],
            ),
            Route("/api/openapi.json", openapi.document, methods=["GET"]),
            Route("/healthz", health.healthz, methods=["GET"]),
            *ops.routes(ops_settings),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        middleware=[Middleware(RequestLog)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.web_settings = web_settings
    app.state.environ = os.environ if environ is None else environ
    ops.setup(app, ops_settings)
    return app


def _warn_about(web_settings: WebSettings) -> None:
    """Say loudly, at every start, what is open or shut for lack of a secret."""
    if not web_settings.api_tokens:
        logger.warning(
            "event=api.disabled detail=%s",
            '"OPS_API_TOKEN is not set: every JSON API request is refused with 401"',
        )
    if web_settings.webhook_secrets:
        return
    if web_settings.allow_unsigned_webhooks:
        logger.warning(
            "event=webhook.unsigned detail=%s",
            '"ICADENCE_WEBHOOK_SECRET is not set and ICADENCE_WEBHOOK_ALLOW_UNSIGNED '
            'is on: ANYONE WHO REACHES THIS PORT CAN QUEUE POSTS"',
        )
    else:
        logger.warning(
            "event=webhook.disabled detail=%s",
            '"ICADENCE_WEBHOOK_SECRET is not set: every webhook delivery is '
            'refused with 503 until it is"',
        )
