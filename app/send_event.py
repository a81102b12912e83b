"""`social-queue send-event`: deliver an iCadence event, signed as iCadence
signs it, to try the webhook locally or check a deployment's secret.

    social-queue send-event docs/examples/schedule-posted.json
    echo '{"id": "evt_1", "type": "schedule.deleted", ...}' | social-queue send-event -

The secret comes from ICADENCE_WEBHOOK_SECRET (the first one, if several are
set for rotation), never from the command line, and is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import httpx

from app.config import Settings
from app.exceptions import ConfigurationError
from app.web.signature import HEADER, sign


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    send = commands.add_parser(
        "send-event",
        help="POST an iCadence event (a JSON file, or - for standard input), signed",
    )
    send.add_argument("file", help="the event as JSON; - reads standard input")
    send.add_argument(
        "--url",
        help="the webhook (default: http://127.0.0.1:$PORT/webhooks/icadence)",
    )
    send.set_defaults(run=cmd_send_event)


def cmd_send_event(settings: Settings, args: argparse.Namespace) -> int:
    secret = os.environ.get("ICADENCE_WEBHOOK_SECRET", "").split(",")[0].strip()
    if not secret:
        raise ConfigurationError(
            "ICADENCE_WEBHOOK_SECRET is not set: it signs the event (social-queue "
            "dev prints the one it made)"
        )
    body = _read(args.file)
    try:
        json.loads(body)
    except ValueError as error:
        raise ConfigurationError(f"{args.file} is not JSON: {error}") from None

    url = args.url or f"http://127.0.0.1:{settings.port}/webhooks/icadence"
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        HEADER: f"t={timestamp},v1={sign(secret, timestamp, body)}",
    }
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=30)
    except httpx.HTTPError as error:
        raise ConfigurationError(f"could not reach {url}: {error}") from None

    print(f"HTTP {response.status_code}")
    print(response.text)
    return 0 if response.is_success else 1


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        with open(name, "rb") as file:
            return file.read()
    except OSError as error:
        raise ConfigurationError(f"cannot read {name}: {error.strerror}") from None
