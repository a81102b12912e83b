"""`social-queue web`."""

from __future__ import annotations

from app import cli


def test_web_listens_on_all_interfaces_by_default() -> None:
    args = cli.parser().parse_args(["web"])

    assert args.run is cli.cmd_web
    assert args.host == "0.0.0.0"


def test_the_existing_commands_are_kept() -> None:
    assert cli.parser().parse_args(["migrate"]).run is cli.cmd_migrate
    assert cli.parser().parse_args(["database-url"]).run is cli.cmd_database_url
