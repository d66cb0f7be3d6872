"""The Alembic history builds exactly the schema that first use creates."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from arktrack import StorageError
from arktrack.storage.migrate import alembic_config, current_revision, upgrade
from arktrack.storage.schema import SCHEMA_REVISION, VERSION_TABLE, metadata
from arktrack.storage.sql import SqlStorage, create_engine_for


def sqlite_url(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name}"


def test_schema_revision_is_alembic_head() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_REVISION


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_migrations_match_the_models(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = sqlite_url(tmp_path, "m.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    engine = create_engine_for(url)
    upgrade(engine)
    assert current_revision(engine) == SCHEMA_REVISION
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, metadata) == []
    # First use on migrated tables is happy and changes nothing.
    SqlStorage(url).close()
    assert current_revision(engine) == SCHEMA_REVISION
    engine.dispose()


def test_first_use_creates_and_stamps(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path, "fresh.db")
    SqlStorage(url).close()
    SqlStorage(url).close()  # and a second start finds everything in place
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) == {
        "arktrack_messages",
        "arktrack_events",
        VERSION_TABLE,
    }
    assert current_revision(engine) == SCHEMA_REVISION
    engine.dispose()


def test_tables_at_another_revision_refuse_to_start(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path, "old.db")
    SqlStorage(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0000'"))
    engine.dispose()
    with pytest.raises(StorageError, match="arktrack db upgrade"):
        SqlStorage(url)


def test_unreachable_database_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="cannot reach"):
        SqlStorage("postgresql+psycopg://nobody:nothing@127.0.0.1:9/none?connect_timeout=2")
