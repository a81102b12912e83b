"""Run the sandbox of fake platforms.

    python -m sandbox --port 8700 [--latency 0.1] [--failure-rate 0.1] [--seed 1]

Prints the base URL of each fake platform, to be set as `X_API_BASE_URL` and
the like, then serves until interrupted.
"""

from __future__ import annotations

import argparse

import uvicorn

from sandbox.app import ALL_FAKES, create_sandbox
from sandbox.core import LANDING_TITLE, check_failure_rate


def _share(value: str) -> float:
    try:
        return check_failure_rate(float(value))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to each request"
    )
    parser.add_argument(
        "--failure-rate",
        type=_share,
        default=0.0,
        help="share (0 to 1) of create requests that fail with a 5xx or 429",
    )
    parser.add_argument("--seed", type=int, help="makes the failures repeatable")
    args = parser.parse_args(argv)

    app = create_sandbox(
        latency=args.latency, failure_rate=args.failure_rate, seed=args.seed
    )
    root = f"http://{args.host}:{args.port}"
    print(LANDING_TITLE)
    for fake in ALL_FAKES:
        print(f"{fake.name.upper()}_API_BASE_URL={root}/{fake.name}")
    print(f"# control API: {root}/_sandbox/  sample media: {root}/media/a.jpg")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
