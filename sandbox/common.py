"""Pieces more than one fake platform needs: tokens and Graph error bodies."""

from __future__ import annotations

import json
import random
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse


def bearer_token(request: Request, *schemes: str) -> str:
    """The token of the `Authorization` header, or "" if there is none.

    `schemes` are the accepted schemes, case-insensitive (default ``bearer``):
    ``Authorization: Bearer abc`` gives ``"abc"``.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() in (schemes or ("bearer",)) else ""


def graph_error(
    status: int,
    message: str,
    *,
    code: int,
    subcode: int | None = None,
    kind: str = "OAuthException",
    is_transient: bool = False,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A Graph API error answer, as Meta documents it.

    With a subcode, Meta also sends `error_user_msg`, text meant for the
    account owner; here it repeats `message`.
    """
    error: dict[str, Any] = {
        "message": message,
        "type": kind,
        "code": code,
        "is_transient": is_transient,
        "fbtrace_id": secrets.token_urlsafe(8),
    }
    if subcode is not None:
        error["error_subcode"] = subcode
        error["error_user_msg"] = message
    return JSONResponse({"error": error}, status, headers=headers)


def graph_injected_failure(
    rng: random.Random, usage_type: str, limit_code: int, limit_message: str
) -> JSONResponse:
    """A failure the sandbox injects into a Graph product's create request.

    Half of them Graph's transient code 2, half the call limit `limit_code`
    with usage headers that say access returns in a minute.
    """
    if rng.random() < 0.5:
        usage = {"type": usage_type, "call_count": 100}
        usage["estimated_time_to_regain_access"] = 1
        headers = {
            "X-App-Usage": json.dumps({"call_count": 100}),
            "X-Business-Use-Case-Usage": json.dumps({"sandbox": [usage]}),
        }
        return graph_error(400, limit_message, code=limit_code, headers=headers)
    return graph_error(
        500,
        "An unexpected error has occurred. Please retry your request later.",
        code=2,
        is_transient=True,
    )


def graph_expired_token() -> JSONResponse:
    """Graph's answer to an expired token (code 190, subcode 463)."""
    return graph_error(
        400,
        "Error validating access token: Session has expired.",
        code=190,
        subcode=463,
    )
