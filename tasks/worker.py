"""The worker process: procrastinate, supervised.

procrastinate's worker stops when its database connection is lost for good;
on a Heroku-style host a dyno that exits is restarted, but slowly and with a
crash on the dashboard. This supervisor instead keeps one HTTP client and
restarts the procrastinate worker (with a fresh connection pool) after a
short backoff until the database answers again. SIGTERM stops claiming, lets
in-flight calls finish within the grace period, and exits; a call still
running then is reported as an unknown outcome (see tasks/publish.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from procrastinate import PsycopgConnector
from procrastinate.worker import Worker
from psycopg_pool import AsyncConnectionPool

from tasks import timekeeper
from tasks.accounts import Accounts
from tasks.adapters import build_adapter
from tasks.adapters.base import Adapter
from tasks.app import app
from tasks.publish import Publisher
from tasks.store import Store
from tasks.tokens import TokenCipher

logger = logging.getLogger(__name__)

PLATFORMS = ("x", "instagram", "linkedin", "facebook", "tiktok", "youtube")


@dataclass(frozen=True)
class WorkerOptions:
    conninfo: str
    concurrency: int = 20
    poll_seconds: float = 5.0
    grace_seconds: float = 25.0
    name: str = ""
    base_urls: Mapping[str, str] | None = None

    @property
    def worker_name(self) -> str:
        return self.name or f"{socket.gethostname()}.{os.getpid()}"


def http_client(concurrency: int) -> httpx.AsyncClient:
    """The one client every adapter call shares.

    Connecting must be quick (a refused connection is retried later anyway);
    a slow platform may take a while to answer an upload, but not forever:
    past the read timeout the outcome is unknown and reconciled.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=5.0, pool=10.0),
        limits=httpx.Limits(
            max_connections=concurrency * 2, max_keepalive_connections=concurrency
        ),
        headers={"User-Agent": "SocialQueue/0.1"},
        follow_redirects=False,
    )


async def run(options: WorkerOptions, env: Mapping[str, str]) -> None:
    """Run until SIGTERM or SIGINT, restarting after database outages."""
    stopping = asyncio.Event()
    current: list[Worker] = []

    def stop() -> None:
        logger.info("event=worker.stopping grace_s=%s", options.grace_seconds)
        stopping.set()
        for worker in current:
            worker.stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)

    secret = env.get("SOCIAL_QUEUE_SECRET_KEY") or None
    cipher = TokenCipher(secret) if secret else None
    backoff = 0.5
    async with http_client(options.concurrency) as client:
        base_urls = options.base_urls or {}
        adapters = {
            platform: build_adapter(platform, client, base_urls.get(platform))
            for platform in PLATFORMS
        }
        while not stopping.is_set():
            try:
                await _run_once(options, env, cipher, adapters, current)
                backoff = 0.5
            except Exception as error:
                logger.error("event=worker.crashed reason=%r", error)
            if stopping.is_set():
                break
            logger.warning("event=worker.restarting wait_ms=%d", backoff * 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), backoff)
            backoff = min(backoff * 2, 10.0)
    logger.info("event=worker.stopped")


async def _run_once(
    options: WorkerOptions,
    env: Mapping[str, str],
    cipher: TokenCipher | None,
    adapters: Mapping[str, Adapter],
    current: list[Worker],
) -> None:
    pool = AsyncConnectionPool(
        options.conninfo,
        min_size=2,
        max_size=options.concurrency + 4,
        open=False,
        check=AsyncConnectionPool.check_connection,
    )
    await pool.open(wait=True, timeout=10)
    try:
        store = Store(pool, options.worker_name)
        publisher = Publisher(store, Accounts(pool, cipher, env), adapters)
        # A fresh connector per run: procrastinate keeps an external pool it
        # was given, and this run's pool is closed when the run ends.
        with app.replace_connector(PsycopgConnector()) as run_app:
            await run_app.open_async(pool=pool)
            worker = Worker(
                run_app,
                name=options.worker_name,
                concurrency=options.concurrency,
                fetch_job_polling_interval=options.poll_seconds,
                shutdown_graceful_timeout=options.grace_seconds,
                install_signal_handlers=False,
                delete_jobs="successful",
                additional_context={"publisher": publisher},
            )
            current[:] = [worker]
            keeper = asyncio.create_task(_keep_time(options.conninfo))
            try:
                logger.info(
                    "event=worker.started name=%s concurrency=%d",
                    options.worker_name,
                    options.concurrency,
                )
                await worker.run()
            finally:
                current.clear()
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
    finally:
        await pool.close()


async def _keep_time(conninfo: str) -> None:
    """Run the timekeeper, re-entering the election after a lost connection."""
    while True:
        try:
            await timekeeper.run(conninfo)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.warning("event=timekeeper.lost reason=%r", error)
            await asyncio.sleep(1)
