"""Schema migrations with Alembic, for ``arktrack db upgrade`` and ``arktrack db current``.

A new database needs none of this: :class:`~arktrack.storage.sql.SqlStorage` creates the
tables on first use and stamps them with the current revision. When a later release changes
the schema, it ships a migration in ``migrations/versions`` and the tracker refuses to start
on old tables until ``arktrack db upgrade`` has run.
"""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from .schema import VERSION_TABLE


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("arktrack.storage") / "migrations"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()
