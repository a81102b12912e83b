"""`/healthz` and `/api/integrations/status`."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest

from app.web.health import HEALTH_CACHE_SECONDS
from tests.web.helpers import AUTH, fail, insert_post, publish


async def test_healthz_is_200_when_the_database_is_reachable_and_current(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"database": "ok", "migrations": "current"}


async def test_healthz_is_503_naming_a_pending_migration(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    db.execute("DELETE FROM social_queue_migrations WHERE name = '0005_webhook.sql'")

    response = await client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["migrations"] == "pending"
    assert response.json()["pending"] == ["0005_webhook.sql"]


async def test_healthz_notices_a_missing_procrastinate_migration(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    [name] = db.execute(
        "DELETE FROM social_queue_migrations WHERE name = ("
        " SELECT max(name) FROM social_queue_migrations"
        " WHERE name LIKE 'procrastinate/%' AND name <> 'procrastinate/schema.sql')"
        " RETURNING name"
    ).fetchone()

    response = await client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["pending"] == [name]


async def test_healthz_answers_a_burst_from_its_cache(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    # Unauthenticated: a flood of checks must not become a flood of queries.
    # Within the cache window a change in the database goes unseen.
    first = await client.get("/healthz")
    db.execute("DELETE FROM social_queue_migrations WHERE name = '0005_webhook.sql'")
    burst = [await client.get("/healthz") for _ in range(20)]
    await asyncio.sleep(HEALTH_CACHE_SECONDS + 0.1)
    after = await client.get("/healthz")

    assert first.status_code == 200
    assert {a.status_code for a in burst} == {200}
    assert after.status_code == 503


@pytest.fixture
def environ() -> dict[str, str]:
    return {"X_BEARER_TOKEN": "secret-bearer", "LINKEDIN_CLIENT_ID": ""}


async def test_integration_status_reports_each_platform(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    posted = insert_post(db, platform="x")
    publish(db, posted)
    older = insert_post(db, platform="x", at="2030-01-03T09:00:00Z")
    fail(db, older, message="an older failure")
    failed = insert_post(db, platform="x", at="2030-01-02T09:00:00Z")
    fail(db, failed, message="duplicate content")
    # A later failure of another platform is not x's.
    fail(db, insert_post(db, platform="facebook"), message="page gone")
    insert_post(db, platform="linkedin")
    db.execute("SELECT social_platform_pause('linkedin', 'quota', 'ops')")

    response = await client.get("/api/integrations/status", headers=AUTH)

    assert response.status_code == 200
    platforms = {p["platform"]: p for p in response.json()["platforms"]}
    assert set(platforms) == {
        "x",
        "instagram",
        "linkedin",
        "facebook",
        "tiktok",
        "youtube",
    }
    x = platforms["x"]
    assert x["configured"] is True
    assert x["credentials"] == {"env": ["X_BEARER_TOKEN"], "accounts": 0}
    assert x["counts"]["posted"] == 1 and x["counts"]["failed"] == 2
    assert x["last_success_at"] is not None
    assert x["last_error"]["message"] == "duplicate content"
    assert x["last_error"]["kind"] == "invalid"
    assert x["mode"] == "live"
    assert platforms["facebook"]["last_error"]["message"] == "page gone"
    linkedin = platforms["linkedin"]
    assert linkedin["configured"] is False  # an empty variable is not a credential
    assert linkedin["paused"] is True and linkedin["paused_reason"] == "quota"
    assert linkedin["counts"]["queued"] == 1
    assert linkedin["last_success_at"] is None and linkedin["last_error"] is None
    assert "secret-bearer" not in response.text


async def test_integration_status_counts_accounts_with_stored_tokens(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    db.execute(
        "INSERT INTO social_accounts (profile_id, platform, access_token)"
        " VALUES ('p1', 'tiktok', 'encrypted')"
    )

    response = await client.get("/api/integrations/status", headers=AUTH)

    tiktok = next(p for p in response.json()["platforms"] if p["platform"] == "tiktok")
    assert tiktok["configured"] is True
    assert tiktok["credentials"]["accounts"] == 1


@pytest.mark.parametrize(
    ("base_url", "mode"),
    [
        (None, "live"),
        ("http://127.0.0.1:8765/x", "sandbox"),
        ("http://localhost:8765/x", "sandbox"),
        ("https://proxy.example.com", "custom"),
    ],
)
def test_a_base_url_on_this_machine_means_the_sandbox(
    base_url: str | None, mode: str
) -> None:
    from app.web.health import integration_mode

    assert integration_mode(base_url) == mode
