"""The OpenAPI document is true: schemathesis against a real uvicorn server.

Every operation gets generated requests (valid and invalid) with the bearer
token, and webhook bodies are signed as iCadence signs them, so the
webhook's 200 answers are checked too. No answer may be a 5xx, and every
answer must match the document: status, content type, headers and body.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import Settings
from app.web import create_app
from app.web.openapi import SPEC
from app.web.settings import WebSettings
from app.web.signature import sign
from sandbox.core import serve_in_thread
from tests.web.helpers import AUTH, SECRET

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def served(database_url: str, web_settings: WebSettings) -> Iterator[str]:
    """The app on a real port, with its lifespan, in a background thread."""
    application = create_app(
        Settings(database_url=database_url), web_settings, environ={}
    )
    with serve_in_thread(application) as url:
        yield url


# The document as built; the first test proves it is what the app serves.
schema = schemathesis.openapi.from_dict(SPEC)


def test_the_document_is_served_as_openapi_3_1(served: str) -> None:
    document = httpx.get(f"{served}/api/openapi.json").json()

    assert document == json.loads(json.dumps(SPEC))
    assert document["openapi"] == "3.1.0"
    assert "/webhooks/icadence" in document["paths"]


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_matches_the_document(
    case: schemathesis.Case, served: str
) -> None:
    headers = dict(AUTH)
    if case.operation.path == "/webhooks/icadence" and isinstance(case.body, dict):
        # Sign the bytes requests will send, so generated events get past
        # the signature and their answers are checked as well.
        raw = json.dumps(case.body, allow_nan=False).encode()
        t = int(time.time())
        headers["X-ICadence-Signature"] = f"t={t},v1={sign(SECRET, t, raw)}"
    case.call_and_validate(base_url=served, headers=headers, checks=CHECKS)
