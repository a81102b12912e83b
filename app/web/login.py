"""Who is looking at the ops page: login, logout, the session and CSRF.

The session is a cookie signed with a key derived from
SOCIAL_QUEUE_SECRET_KEY (Starlette's SessionMiddleware, itsdangerous). It
holds the user, a CSRF token and pending flash messages. Every POST under
`/ops` must carry the token, as form field `csrf` or header `X-CSRF-Token`
(htmx sends the header from `hx-headers` on `<body>`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.exceptions import ConfigurationError
from app.web import templating
from app.web.passwords import Users

logger = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
SESSION_COOKIE = "sq_ops"
SESSION_MAX_AGE = 12 * 3600  # one working day; then log in again
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class OpsSettings:
    """Who may log in, and the key that signs their sessions."""

    users: Users = field(default_factory=Users)
    session_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    production: bool = False
    login_attempts: int = 10
    login_window_seconds: float = 300.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, production: bool) -> OpsSettings:
        """Raises ConfigurationError in production without
        SOCIAL_QUEUE_SECRET_KEY: sessions signed with a key made at start
        would end at every restart and differ between dynos."""
        secret = env.get("SOCIAL_QUEUE_SECRET_KEY", "").strip()
        users = Users.from_env(env)
        if not secret:
            if production:
                raise ConfigurationError(
                    "SOCIAL_QUEUE_SECRET_KEY is required in production: it signs "
                    "ops page sessions"
                )
            logger.warning(
                "event=ops.ephemeral_key detail=%s",
                '"SOCIAL_QUEUE_SECRET_KEY is not set: ops sessions end at restart"',
            )
            return cls(users=users, production=production)
        # Its own key, so a session signature says nothing about the key
        # that encrypts platform tokens.
        derived = hmac.new(secret.encode(), b"ops-session", hashlib.sha256).hexdigest()
        return cls(users=users, session_key=derived, production=production)

    def middleware(self) -> Middleware:
        return Middleware(
            SessionMiddleware,
            secret_key=self.session_key,
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE,
            path="/ops",
            same_site="lax",
            https_only=self.production,
        )


class LoginThrottle:
    """Failed logins per client address, in memory: at most `limit` in
    `window` seconds. Per process, which is enough to make guessing slow."""

    def __init__(self, limit: int, window: float, max_clients: int = 10_000) -> None:
        self.limit, self.window, self.max_clients = limit, window, max_clients
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> int:
        """Seconds until `client` may try again; 0 when it may now."""
        failures = self._failures.get(client)
        if not failures:
            return 0
        now = time.monotonic()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) < self.limit:
            return 0
        return int(failures[0] + self.window - now) + 1

    def failed(self, client: str) -> None:
        if client not in self._failures and len(self._failures) >= self.max_clients:
            # Forget the oldest client rather than grow without bound.
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(client, deque()).append(time.monotonic())

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def flash(request: Request, level: str, text: str) -> None:
    """A message shown once, on the next page this session renders."""
    request.session.setdefault("flash", []).append([level, text])
    request.session["flash"] = request.session["flash"][-5:]


def take_flashes(request: Request) -> list[list[str]]:
    return request.session.pop("flash", None) or []


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def login_required(endpoint: Endpoint) -> Endpoint:
    """Send the anonymous to the login page, and refuse a POST without the
    session's CSRF token. The endpoint finds `request.state.user` and
    `request.state.actor` (`ops:<user>`, as events record it)."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        user = request.session.get("user")
        if not user:
            return _to_login(request)
        if request.method == "POST" and not await _csrf_ok(request):
            logger.warning("event=ops.csrf_refused user=%s", user)
            return HTMLResponse(
                "<p>This form has expired or did not come from this site. "
                "Reload the page and try again.</p>",
                status_code=403,
            )
        request.state.user = user
        request.state.actor = f"ops:{user}"
        return await endpoint(request)

    return wrapper


async def login_page(request: Request) -> Response:
    settings: OpsSettings = request.app.state.ops_settings
    next_path = _safe_next(request.query_params.get("next"))
    if request.method == "GET":
        return _login_form(request, next_path)

    throttle: LoginThrottle = request.app.state.login_throttle
    client = request.client.host if request.client else "unknown"
    wait = throttle.retry_after(client)
    if wait:
        logger.warning("event=ops.login_throttled client=%s", client)
        return _login_form(
            request,
            next_path,
            error=f"Too many failed attempts. Try again in {wait} s.",
            status=429,
            headers={"Retry-After": str(wait)},
        )
    if not await _csrf_ok(request):
        return _login_form(
            request, next_path, error="The form expired; try again.", status=403
        )

    form = await request.form()
    user = str(form.get("user", "")).strip()
    password = str(form.get("password", ""))
    next_path = _safe_next(str(form.get("next", ""))) or next_path
    if not (settings.users and user and settings.users.check(user, password)):
        throttle.failed(client)
        logger.warning("event=ops.login_failed client=%s", client)
        return _login_form(
            request, next_path, error="Wrong user name or password.", status=401
        )

    throttle.succeeded(client)
    # A new session on login: nothing chosen before it (a planted cookie)
    # survives into the logged-in one.
    request.session.clear()
    request.session["user"] = user
    csrf_token(request)
    logger.info("event=ops.login user=%s", user)
    target = next_path or str(request.app.url_path_for("ops:posts"))
    return RedirectResponse(target, status_code=303)


@login_required
async def logout(request: Request) -> Response:
    logger.info("event=ops.logout user=%s", request.state.user)
    request.session.clear()
    return RedirectResponse(request.app.url_path_for("ops:login"), status_code=303)


def _login_form(
    request: Request,
    next_path: str | None,
    *,
    error: str | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    settings: OpsSettings = request.app.state.ops_settings
    html = templating.render(
        request.app,
        "login.html",
        {
            "csrf": csrf_token(request),
            "next": next_path or "",
            "error": error,
            "configured": bool(settings.users),
            "user": None,
            "sandbox": None,
        },
    )
    return HTMLResponse(html, status_code=status, headers=headers)


def _to_login(request: Request) -> Response:
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    login = str(request.app.url_path_for("ops:login"))
    if request.method == "GET":
        login += "?" + urlencode({"next": path})
    if is_htmx(request):
        # A redirect would be followed inside the XHR and swapped into a row.
        return Response(status_code=401, headers={"HX-Redirect": login})
    if request.headers.get("accept", "").startswith("text/event-stream"):
        # An EventSource cannot show a login page; it stops on a 401.
        return Response(status_code=401)
    return RedirectResponse(login, status_code=303)


async def _csrf_ok(request: Request) -> bool:
    expected = request.session.get("csrf")
    if not expected:
        return False
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        form = await request.form()
        given = str(form.get("csrf", ""))
    return hmac.compare_digest(given.encode(), str(expected).encode())


def _safe_next(value: str | None) -> str | None:
    """Only a path of this site's ops pages: never an open redirect."""
    if value and value.startswith("/ops/") and not value.startswith("//"):
        return value if "\\" not in value else None
    return None
