"""Bearer tokens for the JSON API: no anonymous access."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from app.web.errors import ApiError
from app.web.settings import ApiToken

Endpoint = Callable[[Request], Awaitable[Response]]
CHALLENGE = 'Bearer realm="social-queue"'


def actor_for(tokens: tuple[ApiToken, ...], authorization: str | None) -> str:
    """The actor recorded for a request, `api:<label>`; raises 401 without one.

    Every configured token is compared, in constant time, so the answer's
    timing says nothing about which token came close.
    """
    if not tokens:
        raise _unauthorized(
            "invalid_token", "the JSON API is disabled: OPS_API_TOKEN is not set"
        )
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise _unauthorized(None, "send Authorization: Bearer <token>")

    given = presented.strip().encode()
    found: ApiToken | None = None
    for token in tokens:
        if hmac.compare_digest(token.token.encode(), given):
            found = token
    if found is None:
        raise _unauthorized("invalid_token", "the bearer token is not valid")
    return f"api:{found.label}"


def protected(endpoint: Endpoint) -> Endpoint:
    """Require a bearer token; the endpoint finds its actor in `request.state`."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        tokens = request.app.state.web_settings.api_tokens
        request.state.actor = actor_for(tokens, request.headers.get("authorization"))
        return await endpoint(request)

    return wrapper


def _unauthorized(error: str | None, message: str) -> ApiError:
    # RFC 6750: a request without credentials gets a bare challenge; a bad
    # token gets error="invalid_token".
    challenge = CHALLENGE if error is None else f'{CHALLENGE}, error="{error}"'
    return ApiError(
        401, "unauthorized", message, headers={"WWW-Authenticate": challenge}
    )
