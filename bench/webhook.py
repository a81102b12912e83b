"""Webhook throughput: signed, distinct schedule.posted events, committed.

    python bench/webhook.py [--events 3000] [--concurrency 16]

Starts one uvicorn process serving the real app against a database (the
embedded PostgreSQL in a temporary folder, or DATABASE_URL, migrated first),
then a load generator in another process that fires N distinct signed events
over loopback with httpx at the given concurrency. Prints requests per second
and latency percentiles, checks that every event is a committed row, and runs
the same load against a trivial Starlette endpoint as a baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret-0123456789"


def web_app():  # type: ignore[no-untyped-def]
    """uvicorn factory: the real app, logging at INFO as in production."""
    from app import logs
    from app.config import Settings
    from app.web import create_app

    logs.configure("INFO")
    return create_app(Settings.from_env())


def baseline_app():  # type: ignore[no-untyped-def]
    """uvicorn factory: the same route answering 200 without any work."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def ok(request):  # type: ignore[no-untyped-def]
        await request.body()
        return JSONResponse({"result": "ok"})

    return Starlette(
        routes=[
            Route("/webhooks/icadence", ok, methods=["POST"]),
            Route("/healthz", ok, methods=["GET"]),
        ]
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(factory: str, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{factory} did not become healthy")


def _generate(url: str, events: int, concurrency: int) -> dict[str, object]:
    """Run the load generator in its own process; returns its figures."""
    output = subprocess.run(
        [
            sys.executable,
            __file__,
            "--generate",
            url,
            "--events",
            str(events),
            "--concurrency",
            str(concurrency),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return json.loads(output)


async def _load(url: str, events: int, concurrency: int) -> dict[str, object]:
    """The generator: bodies built and signed up front, then fired."""
    import httpx

    from app.web.signature import sign

    run = uuid.uuid4().hex[:8]
    bodies = [
        json.dumps(
            {
                "id": f"evt_{run}_{i}",
                "type": "schedule.posted",
                "data": {
                    "scheduleId": f"sch_{run}_{i}",
                    "profileId": f"profile-{i % 50}",
                    "platform": "x",
                    "scheduledAt": "2031-01-01T09:00:00Z",
                    "content": {"text": f"bench post {i}", "mediaUrls": []},
                },
            }
        ).encode()
        for i in range(events)
    ]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            t = int(time.time())
            headers = {
                "X-ICadence-Signature": f"t={t},v1={sign(SECRET, t, body)}",
                "Content-Type": "application/json",
            }
            started = time.perf_counter()
            response = await client.post(
                "/webhooks/icadence", content=body, headers=headers
            )
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started

    cuts = statistics.quantiles(latencies, n=100)
    return {
        "requests": events,
        "seconds": round(elapsed, 3),
        "rps": round(events / elapsed, 1),
        "p50_ms": round(cuts[49] * 1000, 2),
        "p95_ms": round(cuts[94] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
        "statuses": statuses,
    }


def _database(temp: Path) -> tuple[str, object | None]:
    """DATABASE_URL, or an embedded server in `temp`; migrated either way."""
    from app import embedded, migrations
    from app.config import normalise_database_url

    server = None
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        url = normalise_database_url(url)
    else:
        server = embedded.start(temp)
        url = embedded.database_url(server)
    migrations.migrate(url)
    return url, server


def _committed(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM social_queue WHERE source = 'icadence'"
        ).fetchone()
    return row[0] if row else 0


def _print(name: str, figures: dict[str, object]) -> None:
    print(
        f"{name:<9} {figures['rps']:>8} req/s  p50 {figures['p50_ms']} ms  "
        f"p95 {figures['p95_ms']} ms  p99 {figures['p99_ms']} ms  "
        f"statuses {figures['statuses']}"
    )


def measure(events: int = 3000, concurrency: int = 16) -> dict[str, Any]:
    """Figures for the real app and the trivial baseline, and how many of
    the accepted events are committed posts."""
    # /tmp, not a home folder: as root the embedded server runs as another
    # user, which must reach the data folder.
    with tempfile.TemporaryDirectory(prefix="sq-bench-", dir="/tmp") as temp:
        os.chmod(temp, 0o755)
        url, server = _database(Path(temp))
        before = _committed(url)
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "ICADENCE_WEBHOOK_SECRET": SECRET,
            "PYTHONPATH": str(ROOT),
        }
        env.pop("DYNO", None)

        results: dict[str, Any] = {}
        for name, factory in (
            ("webhook", "bench.webhook:web_app"),
            ("baseline", "bench.webhook:baseline_app"),
        ):
            process, base = _serve(factory, env)
            try:
                # A short warm-up fills the pool and the caches.
                _generate(base, min(200, events), concurrency)
                results[name] = _generate(base, events, concurrency)
            finally:
                process.terminate()
                process.wait(timeout=30)

        results["committed"] = _committed(url) - before
        results["expected"] = events + min(200, events)
        if server is not None:
            server.cleanup()  # type: ignore[attr-defined]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--generate", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.generate:
        figures = asyncio.run(_load(args.generate, args.events, args.concurrency))
        print(json.dumps(figures))
        return

    results = measure(args.events, args.concurrency)
    print(f"events={args.events} concurrency={args.concurrency} cpus={os.cpu_count()}")
    for name in ("webhook", "baseline"):
        _print(name, results[name])
    print(f"committed posts: {results['committed']} of {results['expected']} accepted")
    ratio = float(results["webhook"]["rps"]) / float(results["baseline"]["rps"])
    print(f"webhook / baseline: {ratio:.2f}")


if __name__ == "__main__":
    main()
