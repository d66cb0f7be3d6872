"""Alembic environment for arktrack's own tables. Run through ``arktrack db upgrade``
(see :mod:`arktrack.storage.migrate`), which passes the connection in."""

from __future__ import annotations

from alembic import context

from arktrack.storage.schema import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    # Only our tables: the database may be the application's own.
    include_name=lambda name, type_, parent: type_ != "table" or name in metadata.tables,
)
with context.begin_transaction():
    context.run_migrations()
