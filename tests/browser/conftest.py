"""The whole product for a browser: the web app under uvicorn, a real worker
process publishing to the sandbox platforms, and Debian's Chromium.

Everything is module-scoped: one database, one server, one worker and one
logged-in page serve every test of a module, which keeps the browser tests
within a minute. Each test makes its own posts and looks only at those.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from app.config import Settings
from app.web import create_app
from app.web.login import OpsSettings
from app.web.passwords import Users
from app.web.settings import WebSettings
from sandbox.core import SandboxState, serve_in_thread
from sandbox.core import create_app as create_sandbox
from sandbox.facebook import FacebookFake
from sandbox.instagram import InstagramFake
from sandbox.linkedin import LinkedInFake
from sandbox.tiktok import TikTokFake
from sandbox.x import XFake
from sandbox.youtube import YouTubeFake
from tests.conftest import Server
from tests.tasks.conftest import Sandbox

PASSWORD = "browser-test-password"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def browser_database(pg_server: Server, template_database: str) -> Iterator[str]:
    """A fresh migrated database for the module."""
    name = f"sq_browser_{uuid.uuid4().hex[:12]}"
    janitor = pg_server.janitor(name, template_dbname=template_database)
    janitor.init()
    try:
        yield name
    finally:
        janitor.drop()


@pytest.fixture(scope="module")
def sql(pg_server: Server, browser_database: str) -> Iterator[psycopg.Connection]:
    """Another system's connection: plain SQL, autocommit."""
    with psycopg.connect(pg_server.url(browser_database), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def sandbox_platforms() -> Iterator[Sandbox]:
    state = SandboxState()
    fakes = [XFake, InstagramFake, LinkedInFake, FacebookFake, TikTokFake, YouTubeFake]
    with serve_in_thread(create_sandbox(fakes, state)) as url:
        yield Sandbox(url, state)


@pytest.fixture(scope="module")
def base_url(
    pg_server: Server, browser_database: str, sandbox_platforms: Sandbox
) -> Iterator[str]:
    """The web app under a real uvicorn, in a thread."""
    app = create_app(
        Settings(
            database_url=pg_server.url(browser_database),
            base_urls=sandbox_platforms.base_urls(),
        ),
        WebSettings(webhook_secrets=("whsec_browser_0123456789",), pool_max_size=4),
        environ={},
        ops_settings=OpsSettings(
            users=Users(password=PASSWORD), session_key="browser-session-key-0123"
        ),
    )
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def worker(
    pg_server: Server,
    browser_database: str,
    sandbox_platforms: Sandbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker process publishing to the sandbox."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--name", "browser-w1"],
            env={
                **os.environ,
                **sandbox_platforms.env(),
                "DATABASE_URL": pg_server.database_url(browser_database),
                "SOCIAL_WORKER_POLL_MS": "500",
            },
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    yield proc
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright, base_url: str) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def page(browser: Browser, base_url: str, worker: object) -> Iterator[Page]:
    """A page logged in as `ops`, at a laptop's size, in Berlin's time zone."""
    context = browser.new_context(
        base_url=base_url,
        viewport={"width": 1366, "height": 768},
        timezone_id="Europe/Berlin",
        locale="en-GB",
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto("/ops/login")
    page.fill("input[name=user]", "ops")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/ops/social-queue")
    yield page
    context.close()
