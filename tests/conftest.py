from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from arktrack import Tracker
from arktrack.storage import MemoryStorage, Storage

SECRET = "test-secret-key-0123456789"
BASE_URL = "https://track.example.com"
POSTGRES_URL = os.environ.get("ARKTRACK_TEST_POSTGRES_URL")
SHARED = Path(__file__).resolve().parents[2] / "shared"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_url() -> str:
    """The test PostgreSQL server. CI must run these tests, so there a missing server is a
    failure; on a developer machine without one they skip."""
    if POSTGRES_URL:
        return POSTGRES_URL
    if os.environ.get("CI"):
        pytest.fail("CI needs ARKTRACK_TEST_POSTGRES_URL (.ci/run sets it)")
    pytest.skip("no PostgreSQL server: set ARKTRACK_TEST_POSTGRES_URL")


def drop_arktrack_tables(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        for table in ("arktrack_events", "arktrack_messages", "arktrack_alembic_version"):
            conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = postgres_url()
    drop_arktrack_tables(url)
    yield url
    drop_arktrack_tables(url)


def _storage_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'arktrack.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """Every storage backend, for the shared contract tests."""
    from arktrack.storage.sql import SqlStorage

    if request.param == "memory":
        backend: Storage = MemoryStorage()
    else:
        backend = SqlStorage(_storage_url(request.param, tmp_path, request))
    yield backend
    backend.close()


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    made = Tracker(secret_key=SECRET, base_url=BASE_URL, storage="memory://")
    yield made
    made.close()


@pytest.fixture
def sqlite_tracker(tmp_path: Path) -> Iterator[Tracker]:
    made = Tracker(secret_key=SECRET, base_url=BASE_URL, storage=f"sqlite:///{tmp_path / 'a.db'}")
    yield made
    made.close()
