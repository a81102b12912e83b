"""`social-queue send-event`: a signed delivery to the real webhook."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from app import cli
from app.config import Settings
from app.web import create_app
from app.web.settings import WebSettings
from sandbox.core import serve_in_thread
from tests.web.helpers import SECRET, count_posts, posted_event

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "schedule-posted.json"


@pytest.fixture
def webhook_url(database_url: str) -> str:
    app = create_app(
        Settings(database_url=database_url),
        WebSettings(webhook_secrets=(SECRET,), pool_max_size=2),
        environ={},
    )
    with serve_in_thread(app) as url:
        yield f"{url}/webhooks/icadence"


def test_the_example_event_is_delivered_signed_and_queued(
    webhook_url: str,
    db: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ICADENCE_WEBHOOK_SECRET", f"{SECRET},whsec_older")

    code = cli.main(["send-event", str(EXAMPLE), "--url", webhook_url])

    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("HTTP 200")
    assert json.loads(out.split("\n", 1)[1])["result"] == "enqueued"
    assert SECRET not in out
    assert count_posts(db) == 1


def test_a_wrong_secret_is_refused_and_the_command_fails(
    webhook_url: str,
    db: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps(posted_event()))
    monkeypatch.setenv("ICADENCE_WEBHOOK_SECRET", "whsec_not_the_one")

    code = cli.main(["send-event", str(event), "--url", webhook_url])

    assert code == 1
    assert "HTTP 401" in capsys.readouterr().out
    assert count_posts(db) == 0


@pytest.mark.parametrize(
    ("secret", "content", "message"),
    [
        ("", b"{}", "ICADENCE_WEBHOOK_SECRET is not set"),
        ("whsec_x", b"{not json", "is not JSON"),
    ],
)
def test_bad_local_input_is_refused_before_sending(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    secret: str,
    content: bytes,
    message: str,
) -> None:
    event = tmp_path / "event.json"
    event.write_bytes(content)
    monkeypatch.setenv("ICADENCE_WEBHOOK_SECRET", secret)

    # Nothing listens on port 9: reaching it would fail differently.
    code = cli.main(["send-event", str(event), "--url", "http://127.0.0.1:9/"])

    assert code == 2
    assert message in capsys.readouterr().err
