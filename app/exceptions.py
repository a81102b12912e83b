"""Errors of the application layer, each mapped once at the web boundary."""

from __future__ import annotations

from typing import Any


class SocialQueueError(Exception):
    """Social Queue could not do what was asked."""

    def __init__(self, message: str | None = None, **context: Any) -> None:
        super().__init__(message or self.__doc__)
        self.context = context


class ConfigurationError(SocialQueueError):
    """The configuration in the environment is not usable."""


class PostNotFound(SocialQueueError):
    """No post has that id."""


class IllegalTransition(SocialQueueError):
    """The post's status does not allow that action."""


class InvalidInput(SocialQueueError):
    """The input was rejected; the message says what is wrong."""
