"""The exceptions arktrack raises; every one derives from :class:`ArkTrackError`."""

from __future__ import annotations


class ArkTrackError(Exception):
    """Base class for everything arktrack raises on purpose."""


class ConfigError(ArkTrackError, ValueError):
    """A setting is missing or invalid. ``setting`` names it as the user wrote it
    (``secret_key`` for a keyword argument, ``ARKTRACK_SECRET_KEY`` for the environment)."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


class StorageError(ArkTrackError):
    """The storage backend failed; the original exception is chained as ``__cause__``."""


class InvalidToken(ArkTrackError):
    """A tracking token is forged, tampered with, truncated or of an unknown kind."""
