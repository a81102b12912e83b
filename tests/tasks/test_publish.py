"""One publish attempt end to end: SQL claim, adapter, fake platform, SQL report."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from sandbox.core import Fault
from tasks.accounts import Accounts
from tasks.environment import EnvironmentAccounts
from tasks.publish import Publisher
from tasks.store import Store
from tasks.tokens import TokenCipher
from tests.sql.helpers import call, enqueue, events, make_due, post, rows
from tests.tasks.conftest import SECRET_KEY, Sandbox


def attempts_of(db: psycopg.Connection, post_id: object) -> list[dict]:
    return rows(
        db,
        "SELECT * FROM social_queue_attempts WHERE post_id = %s ORDER BY number",
        post_id,
    )


async def test_a_post_inserted_with_plain_sql_is_published(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    post_id = db.execute(
        "INSERT INTO social_queue (profile_id, platform, content, scheduled_at) "
        "VALUES ('acme', 'x', '{\"text\": \"Hello from SQL\"}', now()) RETURNING id"
    ).fetchone()[0]

    assert await publisher.publish(post_id) == "posted"

    row = post(db, post_id)
    assert row["status"] == "posted"
    assert row["remote_url"].endswith(row["remote_id"])
    [published] = sandbox.state.published_on("x")
    assert published["text"] == "Hello from SQL"
    [attempt] = attempts_of(db, post_id)
    assert (attempt["outcome"], attempt["worker"], attempt["remote_id"]) == (
        "published",
        "test-worker",
        row["remote_id"],
    )
    assert [e[2] for e in events(db, post_id)] == ["queued", "posting", "posted"]


async def test_a_job_that_finds_its_post_not_due_does_nothing(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    post_id = enqueue(db, at="2099-01-01T00:00:00Z")

    assert await publisher.publish(post_id) == "not_claimed"
    assert sandbox.state.requests == []
    assert post(db, post_id)["attempts"] == 0


async def test_a_5xx_is_retried_with_backoff_then_published(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    post_id = enqueue(db, content={"text": "second time lucky"})
    sandbox.state.add_fault(
        Fault(platform="x", path="^/2/tweets$", status=503, body={})
    )

    assert await publisher.publish(post_id) == "retrying"
    failed = post(db, post_id)
    assert (failed["error_kind"], failed["budget_used"]) == ("transient", 1)
    assert failed["next_attempt_at"] > failed["updated_at"]

    make_due(db, post_id)
    assert await publisher.publish(post_id) == "posted"
    assert sandbox.creates("x") == 1
    assert [a["http_status"] for a in attempts_of(db, post_id)] == [503, None]


async def test_a_429_waits_for_the_reset_without_spending_budget(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    post_id = enqueue(db, profile="acme")
    reset = int(time.time()) + 900
    sandbox.state.add_fault(
        Fault(
            platform="x",
            path="^/2/tweets$",
            status=429,
            body={"title": "Too Many Requests", "status": 429},
            headers={"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)},
        )
    )

    assert await publisher.publish(post_id) == "retrying"

    row = post(db, post_id)
    assert row["error_kind"] == "rate_limited"
    assert row["budget_used"] == 0
    assert row["next_attempt_at"] == datetime.fromtimestamp(reset, UTC)
    account = call(
        db, "SELECT * FROM social_accounts WHERE profile_id = 'acme' AND platform = 'x'"
    )
    assert account["rate_limited_until"] == datetime.fromtimestamp(reset, UTC)


async def test_a_permanent_rejection_is_not_retried(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    post_id = enqueue(db)
    sandbox.state.add_fault(
        Fault(
            platform="x",
            path="^/2/tweets$",
            status=400,
            body={"title": "Invalid Request", "detail": "bad", "status": 400},
        )
    )

    assert await publisher.publish(post_id) == "failed"
    row = post(db, post_id)
    assert (row["status"], row["error_kind"]) == ("failed", "invalid")
    assert row["next_attempt_at"] is None


async def test_content_the_adapter_rejects_costs_no_request(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    # 140 CJK characters pass the database's character count (280) but weigh
    # 280 + 2 on X.
    post_id = enqueue(db, content={"text": "漢" * 141})

    assert await publisher.publish(post_id) == "failed"
    assert post(db, post_id)["error_kind"] == "invalid"
    assert sandbox.state.requests_for("x") == []


async def test_the_budget_runs_out_after_the_last_attempt(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    db.execute("UPDATE social_queue_settings SET max_attempts = 2")
    post_id = enqueue(db)
    sandbox.state.add_fault(
        Fault(platform="x", path="^/2/tweets$", status=502, body={}, times=2)
    )

    assert await publisher.publish(post_id) == "retrying"
    make_due(db, post_id)
    assert await publisher.publish(post_id) == "failed"

    row = post(db, post_id)
    assert row["last_error"].startswith("gave up after 2 attempts")
    assert sandbox.creates("x") == 0


async def test_a_paused_platform_is_published_once_resumed(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    post_id = enqueue(db, platform="linkedin", content={"text": "when resumed"})
    db.execute("SELECT social_platform_pause('linkedin', 'maintenance')")

    assert await publisher.publish(post_id) == "not_claimed"
    db.execute("SELECT social_platform_resume('linkedin')")

    assert await publisher.publish(post_id) == "posted"
    assert sandbox.creates("linkedin") == 1


async def test_a_timeout_after_sending_is_reconciled_not_retried(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    post_id = enqueue(db, content={"text": "did it go out?"})
    # X creates the post, then the answer takes longer than the read timeout.
    sandbox.state.add_fault(
        Fault(platform="x", path="^/2/tweets$", method="POST", delay=2, after=True)
    )

    assert await publisher.publish(post_id) == "posted"

    assert sandbox.creates("x") == 1
    row = post(db, post_id)
    assert row["remote_id"] == sandbox.state.published_on("x")[0]["id"]


async def test_a_post_the_timeline_does_not_show_yet_is_looked_for_again(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    # X creates the post but answers after the read timeout (1 s), and its
    # timeline shows the post only 1.5 s after it was made. Read at once, the
    # search would say "not published" and a retry would post it twice.
    post_id = enqueue(db, content={"text": "slow to show"})
    sandbox.state.listing_lag = 1.5
    publisher.adapters["x"].search_lag = 2.5
    sandbox.state.add_fault(
        Fault(platform="x", path="^/2/tweets$", method="POST", delay=2, after=True)
    )

    assert await publisher.publish(post_id) == "posted"

    assert sandbox.creates("x") == 1
    searches = sandbox.state.requests_for("x", "GET", "/tweets$")
    assert len(searches) == 2


async def test_a_post_still_missing_after_the_lag_is_retried(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    # The answer is lost before X created anything: after the lag the search
    # still comes back empty, which now means not published.
    post_id = enqueue(db, content={"text": "never arrived"})
    publisher.adapters["x"].search_lag = 1.5
    sandbox.state.add_fault(
        Fault(platform="x", path="^/2/tweets$", method="POST", delay=2, times=1)
    )

    assert await publisher.publish(post_id) == "retrying"

    assert sandbox.creates("x") == 0
    assert len(sandbox.state.requests_for("x", "GET", "/tweets$")) == 2
    make_due(db, post_id)
    assert await publisher.publish(post_id) == "posted"
    assert sandbox.creates("x") == 1


async def test_an_unknown_outcome_that_cannot_be_checked_waits_for_an_operator(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    post_id = enqueue(db, content={"text": "did it go out?"})
    sandbox.state.add_fault(
        Fault(platform="x", path="^/2/tweets$", method="POST", delay=2, after=True)
    )
    # The lookup fails too: nothing can tell whether the post is live.
    sandbox.state.add_fault(
        Fault(platform="x", path="/tweets$", method="GET", status=503, body={}, times=5)
    )

    assert await publisher.publish(post_id) == "failed"

    row = post(db, post_id)
    assert (row["status"], row["error_kind"]) == ("failed", "unknown_outcome")
    assert sandbox.creates("x") == 1


async def test_missing_credentials_fail_as_configuration(
    db: psycopg.Connection, publisher: Publisher
) -> None:
    publisher.accounts.environment.env = {}
    post_id = enqueue(db)

    assert await publisher.publish(post_id) == "failed"
    row = post(db, post_id)
    assert row["error_kind"] == "config"
    assert "X_BEARER_TOKEN" in row["last_error"]


async def test_stored_credentials_are_used_and_encrypted_at_rest(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    await publisher.accounts.store(
        "acme", "x", access_token="stored-acme-token", account_id="1460000000000000001"
    )
    post_id = enqueue(db, profile="acme")

    assert await publisher.publish(post_id) == "posted"

    [create] = sandbox.state.requests_for("x", "POST", "^/2/tweets$")
    assert create.headers["authorization"] == "Bearer stored-acme-token"
    stored = db.execute(
        "SELECT access_token FROM social_accounts WHERE profile_id = 'acme'"
    ).fetchone()[0]
    assert b"stored-acme-token" not in bytes(stored)


async def test_a_token_refresh_raced_by_two_workers_happens_once(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    await publisher.accounts.store(
        "acme",
        "x",
        access_token="expired-acme-token",
        refresh_token="acme-refresh-token",
        account_id="1460000000000000001",
        expires_at=datetime.now(UTC) - timedelta(minutes=1),
    )
    publisher.accounts.environment.env = {
        **publisher.accounts.environment.env,
        "X_CLIENT_ID": "client-1",
    }
    adapter = publisher.adapters["x"]

    first, second = await asyncio.gather(
        publisher.accounts.credentials("acme", "x", adapter),
        publisher.accounts.credentials("acme", "x", adapter),
    )

    assert first.access_token == second.access_token != "expired-acme-token"
    assert len(sandbox.state.requests_for("x", "POST", "/oauth2/token")) == 1
    version = db.execute(
        "SELECT token_version FROM social_accounts WHERE profile_id = 'acme'"
    ).fetchone()[0]
    assert version == 1


TIKTOK_ENV = {
    "TIKTOK_ACCESS_TOKEN": "expired-env-token",
    "TIKTOK_REFRESH_TOKEN": "rft.from-the-environment",
    "TIKTOK_CLIENT_KEY": "sandbox-client",
    "TIKTOK_CLIENT_SECRET": "sandbox-secret",
}


def tiktok_posts(db: psycopg.Connection, sandbox: Sandbox, count: int) -> list:
    media = [f"{sandbox.url}/media/clip.mp4?bytes=4096"]
    return [
        enqueue(db, platform="tiktok", content={"text": f"clip{n}", "mediaUrls": media})
        for n in range(count)
    ]


def with_tiktok_account(publisher: Publisher) -> EnvironmentAccounts:
    """The publisher's environment accounts, with a TikTok account whose
    access token has expired."""
    environment = publisher.accounts.environment
    environment.env = {**environment.env, **TIKTOK_ENV}
    return environment


def token_requests(sandbox: Sandbox) -> int:
    return len(sandbox.state.requests_for("tiktok", "POST", "/oauth/token"))


@pytest.mark.parametrize("secret_key", [True, False], ids=["stored", "in-process"])
async def test_an_environment_account_refreshes_once_and_keeps_the_rotated_token(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox, secret_key: bool
) -> None:
    # TikTok rotates refresh tokens: a second refresh with the token from the
    # environment would be refused as a revoked grant.
    environment = with_tiktok_account(publisher)
    if not secret_key:
        environment.cipher = None
    first, second, third = tiktok_posts(db, sandbox, 3)

    outcomes = await asyncio.gather(publisher.publish(first), publisher.publish(second))
    later = await publisher.publish(third)

    assert outcomes == ["posted", "posted"] and later == "posted"
    assert token_requests(sandbox) == 1
    stored = db.execute("SELECT count(*) FROM social_environment_grants").fetchone()
    assert stored == (1 if secret_key else 0,)


def other_process(pool: AsyncConnectionPool, publisher: Publisher) -> Publisher:
    """A second worker process: its own accounts, the same database."""
    env = publisher.accounts.environment.env
    return Publisher(
        Store(pool, "other-worker"),
        Accounts(pool, TokenCipher(SECRET_KEY), env),
        publisher.adapters,
    )


async def test_worker_processes_share_an_environment_accounts_rotated_token(
    db: psycopg.Connection,
    pool: AsyncConnectionPool,
    publisher: Publisher,
    sandbox: Sandbox,
) -> None:
    with_tiktok_account(publisher)
    other = other_process(pool, publisher)
    first, second, third = tiktok_posts(db, sandbox, 3)

    # Both find the environment's token expired at the same moment.
    outcomes = await asyncio.gather(publisher.publish(first), other.publish(second))
    # A process started after the refresh never uses the revoked token.
    late = other_process(pool, publisher)
    assert [*outcomes, await late.publish(third)] == ["posted"] * 3

    assert token_requests(sandbox) == 1
    creates = sandbox.state.requests_for("tiktok", "POST", "/video/init/")
    tokens = {r.headers["authorization"] for r in creates}
    assert len(tokens) == 1 and "Bearer expired-env-token" not in tokens
    access, refresh, version = db.execute(
        "SELECT access_token, refresh_token, token_version"
        " FROM social_environment_grants WHERE platform = 'tiktok'"
    ).fetchone()
    assert version == 1
    assert tokens.pop().removeprefix("Bearer ").encode() not in bytes(access)
    assert b"rft." not in bytes(refresh)


async def test_an_environment_grant_about_to_expire_is_refreshed_before_publishing(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    with_tiktok_account(publisher)
    first, second = tiktok_posts(db, sandbox, 2)
    assert await publisher.publish(first) == "posted"
    db.execute("UPDATE social_environment_grants SET token_expires_at = now()")

    assert await publisher.publish(second) == "posted"

    assert token_requests(sandbox) == 2
    assert db.execute(
        "SELECT token_version, token_expires_at > now() + interval '1 hour'"
        " FROM social_environment_grants"
    ).fetchone() == (2, True)


async def test_new_tokens_in_the_environment_start_a_new_chain(
    db: psycopg.Connection,
    pool: AsyncConnectionPool,
    publisher: Publisher,
    sandbox: Sandbox,
) -> None:
    environment = with_tiktok_account(publisher)
    first, second = tiktok_posts(db, sandbox, 2)
    assert await publisher.publish(first) == "posted"

    # The operator re-authorised and set the new tokens: they win over the
    # grant stored from the old ones.
    environment.env = {
        **environment.env,
        "TIKTOK_ACCESS_TOKEN": "operator-set-token",
        "TIKTOK_REFRESH_TOKEN": "rft.operator-set",
    }
    assert await other_process(pool, publisher).publish(second) == "posted"

    last = sandbox.state.requests_for("tiktok", "POST", "/video/init/")[-1]
    assert last.headers["authorization"] == "Bearer operator-set-token"


async def test_a_refresh_that_cannot_reach_the_platform_keeps_the_grant(
    db: psycopg.Connection, publisher: Publisher, sandbox: Sandbox
) -> None:
    await publisher.accounts.store(
        "acme",
        "x",
        access_token="expired-acme-token",
        refresh_token="acme-refresh-token",
        expires_at=datetime.now(UTC) - timedelta(minutes=1),
    )
    before = db.execute("SELECT refresh_token FROM social_accounts").fetchone()[0]
    sandbox.state.add_fault(
        Fault(platform="x", path="/oauth2/token", status=503, body={}, times=3)
    )
    post_id = enqueue(db, profile="acme")

    outcome = await publisher.publish(post_id)

    assert outcome == "retrying"
    assert post(db, post_id)["error_kind"] == "transient"
    assert (
        db.execute("SELECT refresh_token FROM social_accounts").fetchone()[0] == before
    )


@pytest.mark.parametrize(
    ("platform", "content"),
    [
        ("instagram", {"text": "pic", "mediaUrls": ["{media}/photo.jpg"]}),
        ("linkedin", {"text": "text (with) #reserved *chars*"}),
        ("facebook", {"text": "page post"}),
        ("tiktok", {"text": "clip", "mediaUrls": ["{media}/clip.mp4?bytes=4096"]}),
        (
            "youtube",
            {"text": "Video title", "mediaUrls": ["{media}/clip.mp4?bytes=4096"]},
        ),
    ],
)
async def test_every_platform_publishes_through_its_adapter(
    db: psycopg.Connection,
    publisher: Publisher,
    sandbox: Sandbox,
    platform: str,
    content: dict,
) -> None:
    media = f"{sandbox.url}/media"
    if "mediaUrls" in content:
        content = {
            **content,
            "mediaUrls": [u.format(media=media) for u in content["mediaUrls"]],
        }
    post_id = enqueue(db, platform=platform, content=content)

    assert await publisher.publish(post_id) == "posted", post(db, post_id)["last_error"]
    assert sandbox.creates(platform) == 1


async def test_each_state_change_is_one_logfmt_line_at_its_level(
    db: psycopg.Connection,
    publisher: Publisher,
    sandbox: Sandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tasks.publish")
    post_id = enqueue(db, content={"text": "logged"})
    sandbox.state.add_fault(
        Fault(platform="x", path="^/2/tweets$", status=503, body={}, times=1)
    )

    await publisher.publish(post_id)
    make_due(db, post_id)
    await publisher.publish(post_id)

    lines = [
        (r.levelname, r.getMessage().split(" ")[0])
        for r in caplog.records
        if r.name == "tasks.publish"
    ]
    assert lines == [
        ("INFO", "event=post.posting"),
        ("WARNING", "event=post.retrying"),
        ("INFO", "event=post.posting"),
        ("INFO", "event=post.posted"),
    ]
    posted = caplog.records[-1].getMessage()
    assert f"id={post_id}" in posted and "platform=x attempt=2" in posted
    assert "remote_id=" in posted and "ms=" in posted
    assert "sandbox-x-token" not in caplog.text
