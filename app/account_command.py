"""`social-queue account`: store and list the credentials of accounts.

Tokens are read from standard input (access token on the first line, an
optional refresh token on the second), never from the command line, where
they would end up in shell history and in the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg_pool import AsyncConnectionPool

from app.config import PLATFORMS, Settings
from app.database import database_url
from app.exceptions import ConfigurationError
from tasks.accounts import Accounts
from tasks.tokens import TokenCipher


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    account = commands.add_parser("account", help="store or list platform accounts")
    actions = account.add_subparsers(dest="action", required=True, metavar="ACTION")

    store = actions.add_parser(
        "set", help="store an account's tokens, read from standard input"
    )
    store.add_argument("profile_id")
    store.add_argument("platform", choices=PLATFORMS)
    store.add_argument(
        "--account-id",
        help="the platform's id of the identity: X user id, Instagram user id, "
        "Facebook page id, LinkedIn author URN",
    )
    store.add_argument("--expires-in", type=int, help="access token lifetime, seconds")
    store.add_argument("--scopes")
    store.set_defaults(run=cmd_set)

    listing = actions.add_parser("list", help="list accounts (never their tokens)")
    listing.set_defaults(run=cmd_list)


def cmd_set(settings: Settings, args: argparse.Namespace) -> int:
    secret = os.environ.get("SOCIAL_QUEUE_SECRET_KEY", "")
    if not secret:
        raise ConfigurationError("SOCIAL_QUEUE_SECRET_KEY must be set to store tokens")
    lines = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    if not lines:
        raise ConfigurationError("give the access token on standard input")
    access, refresh = lines[0], (lines[1] if len(lines) > 1 else None)
    expires = (
        datetime.now(UTC) + timedelta(seconds=args.expires_in)
        if args.expires_in
        else None
    )

    async def store() -> None:
        async with AsyncConnectionPool(
            database_url(settings), min_size=1, max_size=1, open=False
        ) as pool:
            await Accounts(pool, TokenCipher(secret), os.environ).store(
                args.profile_id,
                args.platform,
                access_token=access,
                refresh_token=refresh,
                account_id=args.account_id,
                expires_at=expires,
                scopes=args.scopes,
            )

    asyncio.run(store())
    print(f"stored the {args.platform} account of {args.profile_id}")
    return 0


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    with psycopg.connect(database_url(settings)) as conn:
        rows = conn.execute(
            "SELECT profile_id, platform, account_id, access_token IS NOT NULL, "
            "token_expires_at, rate_limited_until, paused "
            "FROM social_accounts ORDER BY profile_id, platform"
        ).fetchall()
    print(
        f"{'profile':<20}{'platform':<11}{'account':<28}{'token':<7}{'expires':<26}state"
    )
    for profile, platform, account, has_token, expires, limited, paused in rows:
        state = "paused" if paused else ""
        if limited and limited > datetime.now(UTC):
            state = f"rate limited until {limited:%H:%M:%S}"
        print(
            f"{profile:<20}{platform:<11}{account or '-':<28}"
            f"{'yes' if has_token else 'env':<7}{expires or '-'!s:<26}{state}"
        )
    return 0
