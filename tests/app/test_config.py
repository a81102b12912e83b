"""Configuration from the environment."""

from __future__ import annotations

import pytest

from app.config import Settings, normalise_database_url
from app.exceptions import ConfigurationError


def test_heroku_database_urls_are_accepted() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgres://u:p@db.internal:5432/q"})
    assert settings.database_url == "postgresql://u:p@db.internal:5432/q"


def test_without_database_url_the_embedded_server_is_used() -> None:
    assert Settings.from_env({}).database_url is None


@pytest.mark.parametrize("url", ["mysql://u@h/db", "db.internal:5432"])
def test_a_database_url_of_another_kind_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="must start with postgres://"):
        normalise_database_url(url)


def test_numbers_are_checked() -> None:
    with pytest.raises(
        ConfigurationError, match="PORT must be a whole number, not 'eighty'"
    ):
        Settings.from_env({"PORT": "eighty"})


def test_platform_base_urls_replace_the_real_hosts() -> None:
    settings = Settings.from_env(
        {"X_API_BASE_URL": "http://127.0.0.1:8700/x/", "TIKTOK_API_BASE_URL": " "}
    )
    assert settings.base_urls == {"x": "http://127.0.0.1:8700/x"}
