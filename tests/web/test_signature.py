"""The webhook signature: HMAC-SHA256 over "{t}.{body}", 5 minutes either way."""

from __future__ import annotations

import json
import time

import httpx
import psycopg
import pytest

from app.exceptions import ConfigurationError
from app.web.errors import ApiError
from app.web.settings import WebSettings
from app.web.signature import sign, verify
from tests.web.conftest import Deliver
from tests.web.helpers import SECRET, count_posts, posted_event

NOW = 1_900_000_000
BODY = b'{"type":"schedule.posted"}'
SETTINGS = WebSettings(webhook_secrets=(SECRET,))


def header(t: int = NOW, *signatures: str) -> str:
    return ",".join([f"t={t}", *(f"v1={s}" for s in signatures)])


def rejection(header: str | None, body: bytes = BODY) -> str:
    """The error code of the 401 that `header` gets."""
    with pytest.raises(ApiError) as caught:
        verify(header, body, SETTINGS, now=NOW)
    assert caught.value.status == 401
    return caught.value.code


def test_a_correct_signature_passes() -> None:
    verify(header(NOW, sign(SECRET, NOW, BODY)), BODY, SETTINGS, now=NOW)


def test_uppercase_hex_and_spaces_after_commas_pass() -> None:
    signature = sign(SECRET, NOW, BODY).upper()
    verify(f"t={NOW}, v1={signature}", BODY, SETTINGS, now=NOW)


def test_wrong_secret_is_a_mismatch() -> None:
    assert rejection(header(NOW, sign("other", NOW, BODY))) == "signature_mismatch"


def test_tampered_body_is_a_mismatch() -> None:
    signed = header(NOW, sign(SECRET, NOW, BODY))
    assert rejection(signed, BODY.replace(b"posted", b"deleted")) == (
        "signature_mismatch"
    )


def test_timestamp_is_part_of_what_is_signed() -> None:
    # A signature lifted from an older delivery cannot be re-dated.
    old = sign(SECRET, NOW - 10, BODY)
    assert rejection(header(NOW, old)) == "signature_mismatch"


@pytest.mark.parametrize("offset", [-301, 301, -86_400, 86_400])
def test_a_timestamp_more_than_5_minutes_off_either_way_is_expired(
    offset: int,
) -> None:
    t = NOW + offset
    assert rejection(header(t, sign(SECRET, t, BODY))) == "signature_expired"


@pytest.mark.parametrize("offset", [-300, 300])
def test_a_timestamp_exactly_5_minutes_off_passes(offset: int) -> None:
    t = NOW + offset
    verify(header(t, sign(SECRET, t, BODY)), BODY, SETTINGS, now=NOW)


@pytest.mark.parametrize(
    "value",
    [
        f"v1={'0' * 64}",  # no timestamp
        f"t={NOW}",  # no signature
        f"t={NOW},v1=",  # empty signature
        f"t=soon,v1={'0' * 64}",  # timestamp not a number
        f"t=-5,v1={'0' * 64}",
        "garbage",
        f"t={NOW};v1={'0' * 64}",  # wrong separator
        f"t=\u00b2,v1={'0' * 64}",  # a digit to str.isdigit, not to int()
        f"t={NOW},v1={'é' * 64}",  # not hex
        f"t={NOW},v1={'0' * 63}",  # too short for SHA-256
    ],
)
def test_a_header_missing_parts_is_malformed(value: str) -> None:
    assert rejection(value) == "signature_malformed"


@pytest.mark.parametrize("value", [None, ""])
def test_no_header_is_missing(value: str | None) -> None:
    assert rejection(value) == "signature_missing"


def test_any_of_several_v1_values_may_match_during_icadence_rotation() -> None:
    good = sign(SECRET, NOW, BODY)
    verify(header(NOW, "ab" * 32, good), BODY, SETTINGS, now=NOW)
    verify(header(NOW, good, "ab" * 32), BODY, SETTINGS, now=NOW)


def test_several_v1_values_none_matching_is_a_mismatch() -> None:
    assert rejection(header(NOW, "ab" * 32, "cd" * 32)) == "signature_mismatch"


def test_either_of_our_secrets_is_accepted_during_our_rotation() -> None:
    settings = WebSettings(webhook_secrets=("old-secret", "new-secret"))
    for secret in settings.webhook_secrets:
        verify(header(NOW, sign(secret, NOW, BODY)), BODY, settings, now=NOW)


def test_without_a_secret_deliveries_are_refused_with_503() -> None:
    with pytest.raises(ApiError) as caught:
        verify(header(NOW, "00"), BODY, WebSettings(), now=NOW)
    assert caught.value.status == 503


def test_without_a_secret_the_dev_flag_accepts_unsigned_deliveries() -> None:
    verify(None, BODY, WebSettings(allow_unsigned_webhooks=True), now=NOW)


def test_with_a_secret_the_dev_flag_does_not_skip_verification() -> None:
    settings = WebSettings(webhook_secrets=(SECRET,), allow_unsigned_webhooks=True)
    with pytest.raises(ApiError):
        verify(None, BODY, settings, now=NOW)


def test_production_refuses_to_start_without_a_secret() -> None:
    with pytest.raises(ConfigurationError, match="ICADENCE_WEBHOOK_SECRET"):
        WebSettings.from_env({"DYNO": "web.1"})
    with pytest.raises(ConfigurationError, match="ICADENCE_WEBHOOK_SECRET"):
        WebSettings.from_env({"SOCIAL_QUEUE_ENV": "production"})


def test_production_refuses_the_unsigned_dev_flag() -> None:
    with pytest.raises(ConfigurationError, match="ALLOW_UNSIGNED"):
        WebSettings.from_env(
            {
                "DYNO": "web.1",
                "ICADENCE_WEBHOOK_SECRET": SECRET,
                "ICADENCE_WEBHOOK_ALLOW_UNSIGNED": "1",
            }
        )


async def test_an_old_delivery_is_401_and_writes_nothing(
    deliver: Deliver, db: psycopg.Connection
) -> None:
    response = await deliver(posted_event(), timestamp=int(time.time()) - 600)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "signature_expired"
    assert count_posts(db) == 0


async def test_an_unsigned_delivery_is_401(deliver: Deliver) -> None:
    response = await deliver(posted_event(), signature="t=1")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "signature_malformed"


async def test_a_header_with_non_ascii_bytes_is_401_not_500(
    client: httpx.AsyncClient, db: psycopg.Connection
) -> None:
    # Header bytes arrive as Latin-1: b"\xb2" is "²", and "é" is not hex.
    for raw in (b"t=\xb2,v1=" + b"0" * 64, b"t=1,v1=" + b"\xe9" * 64):
        response = await client.post(
            "/webhooks/icadence",
            content=json.dumps(posted_event()).encode(),
            headers=[
                (b"x-icadence-signature", raw),
                (b"content-type", b"application/json"),
            ],
        )

        assert response.status_code == 401
        assert response.json()["error"]["code"] == "signature_malformed"
    assert count_posts(db) == 0
