"""One logfmt line per request; never a token."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from tests.web.helpers import AUTH, TOKEN


async def test_each_request_is_one_info_line_in_logfmt(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.web")

    await client.get("/api/ops/social-queue?q=secret+plans", headers=AUTH)

    [record] = [r for r in caplog.records if r.name == "app.web"]
    assert record.levelno == logging.INFO
    assert re.fullmatch(
        r"event=http\.request method=GET path=/api/ops/social-queue status=200 "
        r"ms=\d+\.\d",
        record.getMessage(),
    )
    assert "secret plans" not in caplog.text
    assert TOKEN not in caplog.text


async def test_a_refused_request_is_logged_with_its_status(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.web")

    await client.get("/api/ops/social-queue")

    [record] = [r for r in caplog.records if r.name == "app.web"]
    assert "status=401" in record.getMessage()
