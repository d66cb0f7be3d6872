"""Table definitions. The Alembic migrations in ``migrations/`` build exactly this schema;
a test compares the two. Names carry an ``arktrack_`` prefix so the tables can live in the
application's own database beside its tables and its own Alembic history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

from .base import MAX_MESSAGE_ID, MAX_RECIPIENT

#: The Alembic revision this schema corresponds to; bump it with every new migration.
SCHEMA_REVISION = "0001"
VERSION_TABLE = "arktrack_alembic_version"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend. SQLite keeps no
    zone, so values are normalised to UTC before they are written."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("arktrack stores aware datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

messages = Table(
    "arktrack_messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("message_id", String(MAX_MESSAGE_ID), nullable=False),
    Column("recipient", String(MAX_RECIPIENT), nullable=False),
    Column("recipient_ref", String(16), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=False),
    Column("bounced_at", UTCDateTime(), nullable=True),
    UniqueConstraint("message_id", "recipient_ref", name="uq_arktrack_messages_key"),
    Index("ix_arktrack_messages_sent_at", "sent_at"),
)

events = Table(
    "arktrack_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("type", String(32), nullable=False),
    Column("message_id", String(MAX_MESSAGE_ID), nullable=False),
    Column("recipient_ref", String(16), nullable=False),
    Column("recipient", String(MAX_RECIPIENT), nullable=True),
    Column("url", Text(), nullable=True),
    Column("user_agent", Text(), nullable=True),
    Column("ip_address", String(45), nullable=True),
    # SQL NULL, not the JSON text "null", for an unknown location.
    Column("location", JSON(none_as_null=True), nullable=True),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Index("ix_arktrack_events_key", "message_id", "recipient_ref", "type"),
    Index("ix_arktrack_events_occurred_at", "occurred_at"),
)
