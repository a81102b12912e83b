"""The ops page's door: login, logout, redirects, CSRF, throttling, hashes."""

from __future__ import annotations

import httpx
import pytest

from app.exceptions import ConfigurationError
from app.web.login import OpsSettings
from app.web.passwords import Users, hash_password, verify_password
from tests.web.ops_helpers import OPS_PASSWORD, OPS_USERS, csrf_in, log_in


async def test_the_page_without_a_login_redirects_to_the_login(
    ops: httpx.AsyncClient,
) -> None:
    response = await ops.get("/ops/social-queue?status=failed")

    assert response.status_code == 303
    assert response.headers["location"] == (
        "/ops/login?next=%2Fops%2Fsocial-queue%3Fstatus%3Dfailed"
    )


async def test_an_htmx_request_without_a_login_gets_hx_redirect(
    ops: httpx.AsyncClient,
) -> None:
    response = await ops.get("/ops/social-queue", headers={"HX-Request": "true"})

    assert response.status_code == 401
    assert response.headers["hx-redirect"].startswith("/ops/login")


async def test_the_event_stream_without_a_login_is_refused(
    ops: httpx.AsyncClient,
) -> None:
    response = await ops.get(
        "/ops/social-queue/events", headers={"Accept": "text/event-stream"}
    )
    assert response.status_code == 401


async def test_logging_in_with_ops_password_opens_the_page(
    ops: httpx.AsyncClient,
) -> None:
    response = await log_in(ops)

    assert response.status_code == 303
    assert response.headers["location"] == "/ops/social-queue"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/ops" in cookie
    page = await ops.get("/ops/social-queue")
    assert page.status_code == 200
    assert "Signed in as <b>ops</b>" in page.text


async def test_logging_in_returns_to_the_page_asked_for(
    ops: httpx.AsyncClient,
) -> None:
    form = await ops.get("/ops/login?next=/ops/social-queue%3Fstatus%3Dfailed")
    response = await ops.post(
        "/ops/login",
        data={
            "user": "ana",
            "password": "ana's secret",
            "csrf": csrf_in(form.text),
            "next": "/ops/social-queue?status=failed",
        },
    )
    assert response.headers["location"] == "/ops/social-queue?status=failed"


async def test_login_never_redirects_off_the_site(ops: httpx.AsyncClient) -> None:
    form = await ops.get("/ops/login")
    response = await ops.post(
        "/ops/login",
        data={
            "user": "ops",
            "password": OPS_PASSWORD,
            "csrf": csrf_in(form.text),
            "next": "//evil.example/ops/",
        },
    )
    assert response.headers["location"] == "/ops/social-queue"


async def test_a_wrong_password_is_refused(ops: httpx.AsyncClient) -> None:
    response = await log_in(ops, "ana", "guess")

    assert response.status_code == 401
    assert "Wrong user name or password" in response.text
    assert (await ops.get("/ops/social-queue")).status_code == 303


async def test_login_attempts_are_throttled_per_address(
    ops: httpx.AsyncClient,
) -> None:
    for _ in range(3):
        assert (await log_in(ops, "ana", "guess")).status_code == 401

    response = await log_in(ops, "ana", "ana's secret")

    assert response.status_code == 429
    assert int(response.headers["retry-after"]) > 0


async def test_a_login_without_its_csrf_token_is_refused(
    ops: httpx.AsyncClient,
) -> None:
    await ops.get("/ops/login")
    response = await ops.post(
        "/ops/login", data={"user": "ops", "password": OPS_PASSWORD}
    )
    assert response.status_code == 403


async def test_a_post_without_csrf_token_is_refused(ops: httpx.AsyncClient) -> None:
    await log_in(ops)

    response = await ops.post(
        "/ops/social-queue/platforms/x/pause", data={"csrf": "forged"}
    )
    assert response.status_code == 403
    missing = await ops.post("/ops/social-queue/platforms/x/pause")
    assert missing.status_code == 403


async def test_logout_ends_the_session(ops: httpx.AsyncClient) -> None:
    await log_in(ops)
    page = await ops.get("/ops/social-queue")

    response = await ops.post("/ops/logout", data={"csrf": csrf_in(page.text)})

    assert response.status_code == 303
    assert (await ops.get("/ops/social-queue")).status_code == 303


def test_password_hashes_verify_and_differ_per_salt() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")

    assert first != second
    assert verify_password("s3cret", first) and verify_password("s3cret", second)
    assert not verify_password("S3cret", first)
    assert not verify_password("s3cret", "scrypt$broken")
    assert ":" not in first and "," not in first


def test_ops_users_are_read_from_the_environment() -> None:
    users = Users.from_env({"OPS_USERS": f"ana:{hash_password('a')}, "})

    assert users.check("ana", "a") and not users.check("bob", "a")
    with pytest.raises(ConfigurationError, match="hash-password"):
        Users.from_env({"OPS_USERS": "bob:plaintext"})


def test_production_refuses_to_start_without_a_secret_key() -> None:
    with pytest.raises(ConfigurationError, match="SOCIAL_QUEUE_SECRET_KEY"):
        OpsSettings.from_env({"OPS_PASSWORD": "x"}, production=True)


def test_production_sessions_are_secure_cookies() -> None:
    settings = OpsSettings.from_env(
        {"SOCIAL_QUEUE_SECRET_KEY": "k" * 32}, production=True
    )
    assert settings.middleware().kwargs["https_only"] is True
    assert settings.session_key != "k" * 32


def test_the_ops_password_user_is_ops() -> None:
    assert OPS_USERS.check("ops", OPS_PASSWORD)
    assert not OPS_USERS.check("ana", OPS_PASSWORD)
