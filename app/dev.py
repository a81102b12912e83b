"""`social-queue dev`: the whole product on one machine, publishing nowhere.

Starts (or reuses) the embedded PostgreSQL, migrates it, and runs the same
three processes the Procfile runs, plus the sandbox of fake platforms, as
child processes with their output prefixed, the way honcho would. Every
adapter is pointed at the sandbox, so nothing reaches a real platform.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

from app import migrations
from app.config import PLATFORMS, Settings
from app.database import database_url

# Identities the sandbox fakes know (see sandbox/*.py).
SANDBOX_CREDENTIALS = {
    "X_BEARER_TOKEN": "sandbox-x-token",
    "X_USER_ID": "1460000000000000001",
    "INSTAGRAM_ACCESS_TOKEN": "sandbox-instagram-token",
    "INSTAGRAM_USER_ID": "17841400000000001",
    "LINKEDIN_ACCESS_TOKEN": "sandbox-linkedin-token",
    "LINKEDIN_AUTHOR_URN": "urn:li:organization:5515715",
    "FACEBOOK_PAGE_TOKEN": "sandbox-facebook-token",
    "FACEBOOK_PAGE_ID": "104000000000001",
    "TIKTOK_ACCESS_TOKEN": "sandbox-tiktok-token",
    "YOUTUBE_ACCESS_TOKEN": "sandbox-youtube-token",
}


def sandbox_environment(
    base: Mapping[str, str], sandbox_url: str, conninfo_url: str
) -> dict[str, str]:
    """The children's environment: every platform on the sandbox."""
    env = dict(base)
    env.update(SANDBOX_CREDENTIALS)
    for platform in PLATFORMS:
        env[f"{platform.upper()}_API_BASE_URL"] = f"{sandbox_url}/{platform}"
    env["DATABASE_URL"] = conninfo_url
    env.setdefault("SOCIAL_QUEUE_SECRET_KEY", secrets.token_urlsafe(32))
    env.setdefault("OPS_API_TOKEN", f"dev:{secrets.token_urlsafe(24)}")
    # So that `social-queue send-event` can deliver signed events locally.
    env.setdefault("ICADENCE_WEBHOOK_SECRET", f"whsec_dev_{secrets.token_hex(16)}")
    if not (env.get("OPS_USERS") or env.get("OPS_PASSWORD")):
        # A login for the local user, made fresh each run and printed below.
        env["OPS_PASSWORD"] = secrets.token_urlsafe(12)
    env.setdefault("SOCIAL_QUEUE_ENV", "development")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def demo_posts(conninfo: str, media_root: str) -> int:
    """Queue a minute of varied posts so a new user sees them flow."""
    now = datetime.now(UTC)
    image = f"{media_root}/launch.jpg?bytes=40000"
    video = f"{media_root}/teaser.mp4?bytes=300000"
    posts = [
        (
            "acme",
            "x",
            {"text": "We're live! Read the launch notes https://acme.example/launch"},
        ),
        ("acme", "linkedin", {"text": "Hiring (remote): backend engineers #jobs"}),
        (
            "acme",
            "facebook",
            {"text": "Doors open at 9 tomorrow.", "mediaUrls": [image]},
        ),
        ("acme", "instagram", {"text": "Behind the scenes", "mediaUrls": [image]}),
        ("acme", "tiktok", {"text": "60 seconds of launch day", "mediaUrls": [video]}),
        (
            "acme",
            "youtube",
            {
                "text": "Launch day recap",
                "mediaUrls": [video],
                "options": {"title": "Launch day recap", "privacyStatus": "unlisted"},
            },
        ),
        ("globex", "x", {"text": "Maintenance window tonight 22:00-23:00 UTC."}),
        ("globex", "linkedin", {"text": "Q4 results are out."}),
        ("globex", "facebook", {"text": "Thanks for 10k followers!"}),
        ("globex", "x", {"text": "Status: all systems operational."}),
        ("initech", "instagram", {"text": "New office", "mediaUrls": [image, image]}),
        ("initech", "x", {"text": "Ship it."}),
    ]
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for n, (profile, platform, content) in enumerate(posts):
            conn.execute(
                "SELECT social_queue_enqueue(%s, %s, %s, %s, NULL, 'demo')",
                (profile, platform, Jsonb(content), now + timedelta(seconds=3 + n * 5)),
            )
    return len(posts)


def _pump(prefix: str, stream: object) -> None:
    for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
        sys.stdout.write(f"{prefix} | {line.decode(errors='replace')}")
        sys.stdout.flush()


def run(
    settings: Settings, *, demo: bool, sandbox_port: int, failure_rate: float
) -> int:
    conninfo = database_url(settings)
    migrations.migrate(conninfo)
    url = _as_url(conninfo)
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = sandbox_environment(os.environ, sandbox_url, url)

    commands = {
        "sandbox": [
            sys.executable,
            "-m",
            "sandbox",
            "--port",
            str(sandbox_port),
            "--latency",
            "0.3",
            "--failure-rate",
            str(failure_rate),
        ],
        "web": [sys.executable, "-m", "app.cli", "web"],
        "worker": [sys.executable, "-m", "app.cli", "worker", "--name", "dev"],
    }
    children = {
        name: subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for name, command in commands.items()
    }
    for name, child in children.items():
        threading.Thread(
            target=_pump, args=(f"{name:<7}", child.stdout), daemon=True
        ).start()

    time.sleep(2)
    web = f"http://127.0.0.1:{settings.port}"
    print(
        "\n"
        f"  Social Queue is running (sandbox: nothing is published anywhere)\n"
        f"  ops page     {web}/ops/social-queue\n"
        f"  login        {_login(env)}\n"
        f"  JSON API     {web}/api/ops/social-queue  "
        f"(Authorization: Bearer {_api_bearer(env['OPS_API_TOKEN'])})\n"
        f"  webhook      {web}/webhooks/icadence\n"
        f"               try: {_send_event_hint(os.environ, env)}\n"
        f"  sandbox      {sandbox_url}/\n"
        f"  database     {url}\n",
        flush=True,
    )
    if demo:
        print(f"  queued {demo_posts(conninfo, sandbox_url + '/media')} demo posts\n")

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.is_set() and all(
            c.poll() is None for c in children.values()
        ):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    # The sandbox goes last: the worker's calls in flight are answered first.
    for name in ("worker", "web", "sandbox"):
        child = children[name]
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
    failed = [
        n for n, c in children.items() if c.returncode not in (0, -signal.SIGTERM)
    ]
    return 1 if failed and not stopping.is_set() else 0


def _send_event_hint(base: Mapping[str, str], env: Mapping[str, str]) -> str:
    """How to deliver a signed event; shows the secret only if dev made it
    (a secret of the user's own environment is never printed)."""
    command = f"{_invoked_as()} send-event docs/examples/schedule-posted.json"
    if base.get("ICADENCE_WEBHOOK_SECRET"):
        return command
    return f"ICADENCE_WEBHOOK_SECRET={env['ICADENCE_WEBHOOK_SECRET']} {command}"


def _invoked_as() -> str:
    """`social-queue` as the user typed it (`.venv/bin/social-queue`), so the
    hint can be pasted as it is."""
    program = sys.argv[0] if sys.argv and sys.argv[0] else "social-queue"
    if os.path.basename(program) != "social-queue":
        return "social-queue"
    relative = os.path.relpath(program)
    return program if relative.startswith("..") else relative


def _login(env: Mapping[str, str]) -> str:
    if env.get("OPS_PASSWORD"):
        return f"user ops, password {env['OPS_PASSWORD']}"
    return "a user of OPS_USERS, with its password"


def _api_bearer(tokens: str) -> str:
    """The bearer to send for the first OPS_API_TOKEN entry (`label:token`
    entries name an actor; the label is not part of the token)."""
    first = tokens.split(",")[0].strip()
    label, sep, token = first.partition(":")
    return token if sep and label.replace("-", "").replace("_", "").isalnum() else first


def _as_url(conninfo: str) -> str:
    if conninfo.startswith(("postgresql://", "postgres://")):
        return conninfo
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    return (
        f"postgresql://{params.get('user', 'postgres')}@/{params['dbname']}"
        f"?host={params['host']}&port={params.get('port', 5432)}"
    )
