"""Messages and events tables.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from arktrack.storage.schema import BigId, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "arktrack_messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("recipient_ref", sa.String(16), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=False),
        sa.Column("bounced_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("message_id", "recipient_ref", name="uq_arktrack_messages_key"),
    )
    op.create_index("ix_arktrack_messages_sent_at", "arktrack_messages", ["sent_at"])
    op.create_table(
        "arktrack_events",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("recipient_ref", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("ip_address", sa.String(45), nullable=True),
        sa.Column("location", sa.JSON(), nullable=True),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
    )
    op.create_index(
        "ix_arktrack_events_key", "arktrack_events", ["message_id", "recipient_ref", "type"]
    )
    op.create_index("ix_arktrack_events_occurred_at", "arktrack_events", ["occurred_at"])


def downgrade() -> None:
    op.drop_table("arktrack_events")
    op.drop_table("arktrack_messages")
