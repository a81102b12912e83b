"""The ops JSON API: list, inspect and steer posts with a bearer token."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest

from tests.web.helpers import AUTH, TOKEN, fail, insert_post, make_due, publish

LIST = "/api/ops/social-queue"
# A post id no test creates (test ids must not change between runs).
UNKNOWN = "0b6e4c1e-0000-4000-8000-000000000000"


async def test_a_row_inserted_with_plain_sql_is_listed(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    post_id = insert_post(db, text="written by another system")

    response = await client.get(LIST, headers=AUTH)

    assert response.status_code == 200
    [item] = response.json()["items"]
    assert item["id"] == post_id
    assert item["content"] == {"text": "written by another system"}
    assert item["status"] == "queued"
    assert item["scheduled_at"] == "2030-01-01T09:00:00+00:00"
    assert set(item) >= {
        "id",
        "profile_id",
        "platform",
        "content",
        "scheduled_at",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "created_at",
        "updated_at",
        "error_kind",
        "remote_id",
        "remote_url",
        "posted_at",
    }
    assert response.json()["next_cursor"] is None


async def test_pages_follow_the_cursor_newest_first_without_gaps(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    # Two posts share a time, so the id must break the tie.
    times = ["2030-01-01T09:00:00Z"] * 2 + [f"2030-01-0{d}T09:00:00Z" for d in (2, 3)]
    ids = [insert_post(db, at=t) for t in times]

    seen, cursor = [], None
    while True:
        params = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(LIST, params=params, headers=AUTH)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert sorted(seen) == sorted(ids)
    assert seen[:2] == [ids[3], ids[2]]
    assert seen[2:] == sorted(ids[:2], reverse=True)


async def test_filters_by_status_platform_profile_and_text(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    a = insert_post(db, profile="p1", platform="x", text="Summer SALE 50%")
    b = insert_post(db, profile="p2", platform="linkedin", text="hiring")
    c = insert_post(db, profile="p1", platform="linkedin", text="sale ends")
    fail(db, c)

    async def ids(**params: str) -> set[str]:
        response = await client.get(LIST, params=params, headers=AUTH)
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.json()["items"]}

    assert await ids(status="failed") == {c}
    assert await ids(status="queued,failed") == {a, b, c}
    assert await ids(platform="linkedin") == {b, c}
    assert await ids(profile="p1") == {a, c}
    assert await ids(q="sale") == {a, c}
    assert await ids(q="50%") == {a}
    assert await ids(q="5_%") == set()
    assert await ids(profile="p1", platform="linkedin", status="failed") == {c}


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"status": "done"}, "status", "allowed: queued, posting"),
        ({"platform": "myspace"}, "platform", "allowed: facebook, instagram"),
        ({"limit": "0"}, "limit", "1 to 200"),
        ({"limit": "201"}, "limit", "1 to 200"),
        ({"limit": "ten"}, "limit", "1 to 200"),
        ({"limit": "\u00b2"}, "limit", "1 to 200"),  # a digit to isdigit() only
        ({"cursor": "not-a-cursor"}, "cursor", "cursor"),
        ({"cursor": "WyJ4IiwgInkiXQ"}, "cursor", "cursor"),
        ({"q": "x" * 201}, "q", "200"),
        ({"profile": "a\x00b"}, "profile", "200"),
    ],
)
async def test_bad_list_parameters_are_422_naming_the_parameter(
    client: httpx.AsyncClient, params: dict[str, str], field: str, words: str
) -> None:
    response = await client.get(LIST, params=params, headers=AUTH)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == field
    assert words in error["message"]


BAD_CREDENTIALS = [
    {},
    {"Authorization": "Bearer wrong-token-0123456789"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": "Bearer "},
    {"Authorization": f"Bearer {TOKEN}x"},
]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", LIST),
        ("GET", f"{LIST}/{UNKNOWN}"),
        ("POST", f"{LIST}/{UNKNOWN}/cancel"),
        ("POST", f"{LIST}/bulk"),
        ("POST", "/api/ops/platforms/x/pause"),
        ("GET", "/api/integrations/status"),
    ],
)
async def test_every_api_route_refuses_requests_without_a_valid_token(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    for headers in BAD_CREDENTIALS:
        response = await client.request(method, path, headers=headers)

        assert response.status_code == 401, headers
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="social-queue"')
        assert response.json()["error"]["code"] == "unauthorized"


async def test_one_post_comes_with_its_attempts_and_events(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    post_id = insert_post(db)
    fail(db, post_id, message="text rejected")

    response = await client.get(f"{LIST}/{post_id}", headers=AUTH)

    assert response.status_code == 200
    body = response.json()
    assert body["post"]["status"] == "failed"
    [attempt] = body["attempts"]
    assert attempt["number"] == 1
    assert attempt["error_message"] == "text rejected"
    assert attempt["http_status"] == 400
    assert [(e["from_status"], e["to_status"]) for e in body["events"]] == [
        (None, "queued"),
        ("queued", "posting"),
        ("posting", "failed"),
    ]


async def test_unknown_post_is_404_and_malformed_id_is_422(
    client: httpx.AsyncClient,
) -> None:
    unknown = await client.get(f"{LIST}/{uuid.uuid4()}", headers=AUTH)
    malformed = await client.get(f"{LIST}/not-a-uuid", headers=AUTH)

    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert malformed.status_code == 422
    assert malformed.json()["error"]["field"] == "id"


async def test_pause_resume_retry_cancel_go_through_the_state_machine(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    post_id = insert_post(db)

    async def act(action: str) -> httpx.Response:
        return await client.post(f"{LIST}/{post_id}/{action}", headers=AUTH)

    assert (await act("pause")).json()["post"]["status"] == "paused"
    assert (await act("resume")).json()["post"]["status"] == "queued"
    assert (await act("pause")).json()["post"]["status"] == "paused"
    assert (await act("retry")).json()["post"]["status"] == "queued"
    assert (await act("cancel")).json()["post"]["status"] == "cancelled"


async def test_the_token_label_is_recorded_as_the_actor_never_the_token(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    post_id = insert_post(db)

    await client.post(f"{LIST}/{post_id}/pause", headers=AUTH)

    actors = [r[0] for r in db.execute("SELECT actor FROM social_queue_events")]
    assert actors[-1] == "api:tests"
    assert not any(TOKEN in actor for actor in actors)


async def test_an_illegal_transition_is_409_with_the_reason(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    post_id = insert_post(db)
    publish(db, post_id)

    response = await client.post(f"{LIST}/{post_id}/cancel", headers=AUTH)

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "illegal_transition"
    assert f"cannot cancel post {post_id}: it is posted" in error["message"]


def may_be_live(db: psycopg.Connection) -> str:
    """A post whose last attempt timed out after it was sent."""
    post_id = insert_post(db)
    make_due(db, post_id)
    db.execute("SELECT social_queue_claim(%s, 'w1')", (post_id,))
    db.execute(
        "SELECT social_queue_fail(%s, 1, 'unknown_outcome', 'timed out')", (post_id,)
    )
    return post_id


async def test_a_post_that_may_be_live_is_retried_only_with_outcome_checked(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    post_id = may_be_live(db)
    retry = f"{LIST}/{post_id}/retry"

    blind = await client.post(retry, headers=AUTH)
    unchecked = await client.post(retry, json={"outcome_checked": False}, headers=AUTH)
    wrong_type = await client.post(retry, json={"outcome_checked": "yes"}, headers=AUTH)
    checked = await client.post(retry, json={"outcome_checked": True}, headers=AUTH)

    assert blind.status_code == unchecked.status_code == 409
    assert "may have published" in blind.json()["error"]["message"]
    assert wrong_type.status_code == 422
    assert wrong_type.json()["error"]["field"] == "outcome_checked"
    assert checked.status_code == 200
    assert checked.json()["post"]["status"] == "queued"


async def test_bulk_retry_leaves_posts_that_may_be_live_unless_checked(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    post_id = may_be_live(db)
    body = {"action": "retry", "ids": [post_id]}

    blind = await client.post(f"{LIST}/bulk", json=body, headers=AUTH)
    checked = await client.post(
        f"{LIST}/bulk", json=body | {"outcome_checked": True}, headers=AUTH
    )
    misplaced = await client.post(
        f"{LIST}/bulk",
        json={"action": "cancel", "ids": [post_id], "outcome_checked": True},
        headers=AUTH,
    )

    [refused] = blind.json()["results"]
    assert not refused["changed"] and "may have published" in refused["reason"]
    [retried] = checked.json()["results"]
    assert retried["changed"] and retried["status"] == "queued"
    assert misplaced.status_code == 422


@pytest.mark.parametrize("action", ["pause", "resume", "retry", "cancel"])
async def test_an_action_on_an_unknown_post_is_404(
    client: httpx.AsyncClient, action: str
) -> None:
    response = await client.post(f"{LIST}/{uuid.uuid4()}/{action}", headers=AUTH)

    assert response.status_code == 404


async def test_bulk_cancel_reports_each_id(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    queued = insert_post(db)
    posted = insert_post(db, at="2030-01-02T09:00:00Z")
    publish(db, posted)
    missing = str(uuid.uuid4())

    response = await client.post(
        f"{LIST}/bulk",
        json={"action": "cancel", "ids": [queued, posted, missing, queued]},
        headers=AUTH,
    )

    assert response.status_code == 200
    results = {r["id"]: r for r in response.json()["results"]}
    assert len(results) == 3
    assert results[queued]["changed"] and results[queued]["status"] == "cancelled"
    assert not results[posted]["changed"]
    assert "it is posted" in results[posted]["reason"]
    assert results[missing] == {
        "id": missing,
        "status": None,
        "changed": False,
        "reason": "no such post",
    }


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"action": "delete", "ids": [UNKNOWN]}, 422, "action"),
        ({"action": "cancel", "ids": []}, 422, "ids"),
        ({"action": "cancel", "ids": "all"}, 422, "ids"),
        ({"action": "cancel", "ids": [UNKNOWN, "nope"]}, 422, "ids[1]"),
        ({"action": "cancel", "ids": [UNKNOWN] * 501}, 422, "ids"),
        ([1], 400, None),
    ],
)
async def test_bad_bulk_requests_are_refused_precisely(
    client: httpx.AsyncClient, body: object, status: int, field: str | None
) -> None:
    response = await client.post(f"{LIST}/bulk", json=body, headers=AUTH)

    assert response.status_code == status
    assert response.json()["error"]["field"] == field


async def test_a_platform_is_paused_with_a_reason_and_resumed(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    paused = await client.post(
        "/api/ops/platforms/x/pause", json={"reason": "API outage"}, headers=AUTH
    )
    assert paused.status_code == 200
    assert paused.json()["platform"]["paused"] is True
    assert paused.json()["platform"]["paused_reason"] == "API outage"
    assert paused.json()["platform"]["paused_by"] == "api:tests"

    resumed = await client.post("/api/ops/platforms/x/resume", headers=AUTH)
    assert resumed.json()["platform"]["paused"] is False


async def test_pausing_a_platform_needs_no_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/ops/platforms/linkedin/pause", headers=AUTH)

    assert response.status_code == 200
    assert response.json()["platform"]["paused_reason"] is None


async def test_an_unknown_platform_is_422_naming_the_known_ones(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/ops/platforms/myspace/pause", headers=AUTH)

    assert response.status_code == 422
    assert "known platforms: facebook" in response.json()["error"]["message"]


async def test_unknown_routes_and_methods_answer_in_the_error_shape(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.get("/api/nothing", headers=AUTH)
    wrong_method = await client.delete(LIST, headers=AUTH)

    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert "GET" in wrong_method.headers["Allow"]
