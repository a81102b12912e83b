"""A bare procrastinate worker running a no-op task: the engine's ceiling.

python -m bench.noop_worker DATABASE_URL CONCURRENCY
"""

from __future__ import annotations

import asyncio
import sys

import procrastinate


async def main(url: str, concurrency: int) -> None:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop", queue="bench")
    async def noop() -> None:
        return None

    async with app.open_async():
        await app.run_worker_async(concurrency=concurrency, queues=["bench"])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
