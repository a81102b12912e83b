"""An attempt that breaks unexpectedly: may it have published?"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import psycopg
import pytest

from tasks.adapters.base import ErrorKind, Post, tracking_creates
from tasks.publish import Publisher, _crash
from tests.tasks.conftest import Sandbox


class Handles:
    async def save(self, name: str, value: Any) -> None:
        self.saved = {name: value}


async def test_the_create_requests_of_an_attempt_are_tracked(
    publisher: Publisher, sandbox: Sandbox
) -> None:
    adapter = publisher.adapters["x"]
    post = Post(id=uuid4(), profile_id="p", platform="x", text="tracked")
    credentials = await publisher.accounts.credentials("p", "x", adapter)

    with tracking_creates() as sent:
        await adapter.publish(post, credentials, Handles())

    assert sent == ["POST /x/2/tweets"]


def test_a_crash_after_a_create_request_is_an_unknown_outcome() -> None:
    error = _crash("x", KeyError("data"), ["POST /2/tweets"])

    assert error.kind is ErrorKind.UNKNOWN_OUTCOME
    assert "after POST /2/tweets" in error.message


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (psycopg.OperationalError("server closed the connection"), ErrorKind.TRANSIENT),
        (ConnectionResetError(), ErrorKind.TRANSIENT),
        (ValueError("invalid literal for int()"), ErrorKind.INVALID),
    ],
)
def test_a_crash_before_any_create_request_published_nothing(
    raised: Exception, kind: ErrorKind
) -> None:
    error = _crash("tiktok", raised, [])

    assert error.kind is kind
    assert "may" not in error.message
