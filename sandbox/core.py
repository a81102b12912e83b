"""What every fake platform shares: a request log, injected faults, latency.

Each fake platform is a `FakePlatform` mounted under `/{name}` of one Starlette
app, so an adapter's base URL is `http://host:port/{name}` and the documented
paths follow it (`http://host:port/x/2/tweets`). A control API under
`/_sandbox/` lets tests and the dev sandbox inject faults and read what was
received:

- `POST /_sandbox/faults` with a JSON `Fault` queues a fault;
  `DELETE /_sandbox/faults` clears them.
- `GET /_sandbox/requests?platform=x` lists received requests;
  `DELETE /_sandbox/requests` clears the log.
- `GET /_sandbox/published?platform=x` lists what each fake published.
- `GET /_sandbox/settings` reads, `PUT /_sandbox/settings` changes the
  latency and the failure rate (`{"latency": 0.1, "failure_rate": 0.2}`).
- `GET /media/{name}.{ext}?bytes=N` serves generated media for the adapters
  to download (jpg, png, gif, mp4, mov).
- `GET /` says what this is: fake platforms, nothing is published anywhere.

A failure rate makes that share of each platform's create requests (the ones
that would publish) fail before the fake handles them, with the platform's own
5xx or 429 answer and rate-limit headers, so a demo shows retries without
anything being created twice.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass
class Fault:
    """One injected misbehaviour, applied to the next `times` matching requests.

    `path` is a regular expression searched in the path below the platform's
    mount (`/2/tweets`). With `status`, the fake answers that status with
    `body` and `headers` instead of handling the request; without it, the
    request is handled normally after `delay` seconds. `after=True` applies
    the delay after the fake has handled the request, which is how a timeout
    after a successful publish (an unknown outcome) is staged.
    """

    platform: str
    path: str = ""
    method: str | None = None
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    after: bool = False
    times: int = 1

    def matches(self, platform: str, method: str, path: str) -> bool:
        if self.platform != platform or self.times <= 0:
            return False
        if self.method and self.method.upper() != method:
            return False
        return re.search(self.path, path) is not None


@dataclass
class RecordedRequest:
    platform: str
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json_summary(self) -> dict[str, Any]:
        summary = asdict(self)
        summary["body"] = self.body[:2048].decode("utf-8", "replace")
        summary["body_size"] = len(self.body)
        return summary


class SandboxState:
    """Shared, thread-safe state of one sandbox: log, faults, published posts.

    `failure_rate` (0 to 1) is the share of create requests answered with an
    injected failure, drawn from a `random.Random(seed)`, so a seeded sandbox
    fails the same requests every run. `listing_lag` is how many seconds a
    new post takes to appear in the fakes' lists of recent posts (X's
    timeline, a Page's posts, an author's posts), as real timelines lag.
    """

    def __init__(
        self,
        latency: float = 0.0,
        failure_rate: float = 0.0,
        seed: int | None = None,
        listing_lag: float = 0.0,
    ) -> None:
        self.latency = latency
        self.listing_lag = listing_lag
        self.failure_rate = check_failure_rate(failure_rate)
        self.rng = random.Random(seed)
        # (platform, method, path, status) of each injected failure.
        self.injected: list[tuple[str, str, str, int]] = []
        self.requests: list[RecordedRequest] = []
        self.faults: list[Fault] = []
        self.published: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def requests_for(
        self, platform: str, method: str | None = None, path: str | None = None
    ) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.platform == platform
                and (method is None or r.method == method)
                and (path is None or re.search(path, r.path))
            ]

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def take_fault(self, platform: str, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(platform, method, path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def draw_failure(self) -> bool:
        """Whether the next create request fails, at `failure_rate`."""
        with self._lock:
            return self.failure_rate > 0 and self.rng.random() < self.failure_rate

    def publish(self, platform: str, item: dict[str, Any]) -> None:
        with self._lock:
            self.published.setdefault(platform, []).append(item)

    def listed_from(self) -> float:
        """When a post created now shows in lists of recent posts (epoch s)."""
        return time.time() + self.listing_lag

    def published_on(self, platform: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.published.get(platform, []))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.faults.clear()
            self.published.clear()
            self.injected.clear()


def check_failure_rate(rate: float) -> float:
    """`rate` if it is a share between 0 and 1, else ValueError."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"failure rate must be between 0 and 1, got {rate}")
    return rate


class FakePlatform:
    """Base of one fake platform API; subclasses define `name` and `routes`.

    `creates` lists the (method, path pattern) of the requests that publish,
    the ones a failure rate applies to; `injected_failure` is the answer such a
    request gets instead, which must be one that says nothing was created.
    """

    name: str
    creates: tuple[tuple[str, str], ...] = ()

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def is_create(self, method: str, path: str) -> bool:
        return any(
            method == wanted and re.search(pattern, path)
            for wanted, pattern in self.creates
        )

    def injected_failure(self, rng: random.Random) -> Response:
        """A temporary failure in the platform's own shape; override per fake."""
        return JSONResponse({"error": "sandbox: injected failure"}, 503)


class _FaultsAndLog:
    """ASGI middleware: records each platform request, applies faults and latency."""

    def __init__(
        self, app: ASGIApp, state: SandboxState, fakes: dict[str, FakePlatform]
    ) -> None:
        self.app = app
        self.state = state
        self.fakes = fakes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        platform, _, below = scope["path"].lstrip("/").partition("/")
        fake = self.fakes.get(platform)
        if fake is None:
            await self.app(scope, receive, send)
            return

        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        method = scope["method"]
        path = "/" + below
        self.state.record(
            RecordedRequest(
                platform=platform,
                method=method,
                path=path,
                query=scope.get("query_string", b"").decode(),
                headers={k.decode(): v.decode() for k, v in scope["headers"]},
                body=body,
                at=time.time(),
            )
        )

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        fault = self.state.take_fault(platform, method, path)
        if self.state.latency:
            await asyncio.sleep(self.state.latency)
        if fault and fault.delay and not fault.after:
            await asyncio.sleep(fault.delay)
        if fault and fault.status is not None:
            response = (
                JSONResponse(fault.body, fault.status, headers=fault.headers)
                if fault.body is not None
                else Response(b"", fault.status, headers=fault.headers)
            )
            await response(scope, replay, send)
            return
        if fault is None and fake.is_create(method, path) and self.state.draw_failure():
            response = fake.injected_failure(self.state.rng)
            with self.state._lock:
                self.state.injected.append(
                    (platform, method, path, response.status_code)
                )
            await response(scope, replay, send)
            return

        if fault and fault.after:
            # Handle the request fully (the post is created), then stall the
            # answer: the client times out not knowing it succeeded.
            started: list[dict[str, Any]] = []

            async def hold(message: dict[str, Any]) -> None:
                started.append(message)

            await self.app(scope, replay, hold)
            await asyncio.sleep(fault.delay)
            for message in started:
                await send(message)
            return

        await self.app(scope, replay, send)


MEDIA_MAGIC = {
    "jpg": (b"\xff\xd8\xff\xe0", "image/jpeg"),
    "jpeg": (b"\xff\xd8\xff\xe0", "image/jpeg"),
    "png": (b"\x89PNG\r\n\x1a\n", "image/png"),
    "gif": (b"GIF89a", "image/gif"),
    "mp4": (b"\x00\x00\x00\x18ftypmp42", "video/mp4"),
    "mov": (b"\x00\x00\x00\x14ftypqt  ", "video/quicktime"),
}


async def media(request: Request) -> Response:
    """Generated media of the requested size, with the right magic bytes."""
    ext = request.path_params["ext"].lower()
    if ext not in MEDIA_MAGIC:
        return JSONResponse({"error": f"no sample media of type {ext}"}, 404)
    try:
        size = int(request.query_params.get("bytes", "2048"))
    except ValueError:
        return JSONResponse({"error": "bytes must be a whole number"}, 400)
    size = max(16, min(size, 64 * 1024 * 1024))
    magic, content_type = MEDIA_MAGIC[ext]
    return Response(magic + b"\0" * (size - len(magic)), media_type=content_type)


LANDING_TITLE = "Social Queue sandbox — fake platforms, nothing is published anywhere"


async def landing(request: Request) -> Response:
    """What this server is, and where each fake platform lives."""
    root = str(request.base_url).rstrip("/")
    fakes = request.app.state.fakes
    return JSONResponse(
        {
            "sandbox": LANDING_TITLE,
            "platforms": {name: f"{root}/{name}" for name in fakes},
            "control": f"{root}/_sandbox/",
            "media": f"{root}/media/sample.mp4?bytes=65536",
        }
    )


async def ping(request: Request) -> Response:
    """The cheapest answer the server gives: a baseline for measurements."""
    return Response(status_code=204)


def _control_routes(state: SandboxState) -> list[BaseRoute]:
    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            with state._lock:
                state.faults.clear()
            return Response(status_code=204)
        try:
            fault = Fault(**(await request.json()))
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": f"not a fault: {exc}"}, 422)
        state.add_fault(fault)
        return JSONResponse(asdict(fault), 201)

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            with state._lock:
                state.requests.clear()
            return Response(status_code=204)
        platform = request.query_params.get("platform")
        with state._lock:
            items = [r for r in state.requests if platform in (None, r.platform)]
        return JSONResponse({"requests": [r.json_summary() for r in items]})

    async def published(request: Request) -> Response:
        platform = request.query_params.get("platform")
        with state._lock:
            items = {
                name: list(posts)
                for name, posts in state.published.items()
                if platform in (None, name)
            }
        return JSONResponse({"published": items})

    async def settings(request: Request) -> Response:
        if request.method == "PUT":
            try:
                changes = await request.json()
                latency = float(changes.get("latency", state.latency))
                rate = check_failure_rate(
                    float(changes.get("failure_rate", state.failure_rate))
                )
            except (ValueError, TypeError, AttributeError) as exc:
                return JSONResponse({"error": f"not valid settings: {exc}"}, 422)
            if latency < 0:
                return JSONResponse({"error": "latency must not be negative"}, 422)
            with state._lock:
                state.latency, state.failure_rate = latency, rate
        return JSONResponse(
            {"latency": state.latency, "failure_rate": state.failure_rate}
        )

    return [
        Route("/", landing, methods=["GET"]),
        Route("/_sandbox/ping", ping, methods=["GET"]),
        Route("/_sandbox/settings", settings, methods=["GET", "PUT"]),
        Route("/_sandbox/faults", faults, methods=["POST", "DELETE"]),
        Route("/_sandbox/requests", requests, methods=["GET", "DELETE"]),
        Route("/_sandbox/published", published, methods=["GET"]),
        Route("/media/{name}.{ext}", media, methods=["GET"]),
    ]


def create_app(
    platforms: list[type[FakePlatform]], state: SandboxState | None = None
) -> Starlette:
    """One ASGI app serving the given fake platforms and the control API."""
    state = state or SandboxState()
    fakes = [platform(state) for platform in platforms]
    routes: list[BaseRoute] = _control_routes(state)
    routes += [Mount(f"/{fake.name}", routes=fake.routes()) for fake in fakes]

    app = Starlette(routes=routes)
    app.state.sandbox = state
    app.state.fakes = {fake.name: fake for fake in fakes}
    app.add_middleware(_FaultsAndLog, state=state, fakes=app.state.fakes)
    return app


@contextmanager
def serve_in_thread(app: ASGIApp, port: int = 0) -> Iterator[str]:
    """Run `app` on 127.0.0.1 in a background thread; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("sandbox server did not start")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]

    try:
        yield f"http://127.0.0.1:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
