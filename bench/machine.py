"""What a benchmark ran on, for its JSON report: shared by http_bench and rewrite_bench."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sqlite3
from typing import Any


def describe(*distributions: str) -> dict[str, Any]:
    """Python, platform, CPU count, SQLite, and the version of each distribution (None when
    it is not installed)."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
    }
    for name in distributions:
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = None
    return info
