"""Pluggable storage. ``open_storage`` turns the ``storage`` setting into a backend."""

from __future__ import annotations

from ..errors import ConfigError
from .base import MAX_MESSAGE_ID, MAX_RECIPIENT, Counts, MessageKey, SentMessage, Storage
from .memory import MemoryStorage

__all__ = [
    "MAX_MESSAGE_ID",
    "MAX_RECIPIENT",
    "Counts",
    "MemoryStorage",
    "MessageKey",
    "SentMessage",
    "Storage",
    "open_storage",
]


def open_storage(value: str | Storage, *, setting: str = "storage") -> Storage:
    """``"memory://"`` -> :class:`MemoryStorage`; any other string is a SQLAlchemy URL;
    an object that already fulfils :class:`Storage` is used as it is."""
    if not isinstance(value, str):
        if isinstance(value, Storage):
            return value
        missing = [name for name in _STORAGE_METHODS if not callable(getattr(value, name, None))]
        if len(missing) < len(_STORAGE_METHODS):  # meant as a Storage, but incomplete
            lacking = ", ".join(missing)
            raise ConfigError(setting, f"{value!r} lacks the Storage method(s) {lacking}")
        raise ConfigError(setting, f"must be a database URL or a Storage object, got {value!r}")
    if value == "memory://":
        return MemoryStorage()
    from .sql import SqlStorage  # SQLAlchemy loads only when a SQL backend is used.

    return SqlStorage(value, setting=setting)


_STORAGE_METHODS = sorted(
    name for name in vars(Storage) if not name.startswith("_") and callable(vars(Storage)[name])
)
