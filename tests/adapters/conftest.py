"""Fixtures for adapter tests: a real HTTP server running the fake platforms."""

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest

from sandbox.core import FakePlatform, SandboxState, create_app, serve_in_thread


@pytest.fixture
def sandbox_state() -> SandboxState:
    return SandboxState()


@pytest.fixture
def serve_fake(
    sandbox_state: SandboxState,
) -> Iterator[Callable[[type[FakePlatform]], str]]:
    """Start a fake platform on a real port; returns its base URL.

    The URL includes the platform's mount, so it is what an adapter takes as
    its base URL (`http://127.0.0.1:PORT/x`). Media samples are served at
    `http://127.0.0.1:PORT/media/name.jpg?bytes=N`.
    """
    servers = []

    def serve(fake: type[FakePlatform]) -> str:
        context = serve_in_thread(create_app([fake], sandbox_state))
        root = context.__enter__()
        servers.append(context)
        return f"{root}/{fake.name}"

    yield serve
    for context in servers:
        context.__exit__(None, None, None)


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    """The client an adapter gets, with a read timeout short enough to stage
    timeouts after a request was sent (a `Fault(after=True, delay=2)`)."""
    timeout = httpx.Timeout(5.0, read=1.0)
    async with httpx.AsyncClient(timeout=timeout) as client:
        yield client
