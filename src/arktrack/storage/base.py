"""The storage contract every backend fulfils (memory, SQLAlchemy on SQLite/PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from ..events import Event, EventType

#: The longest message id and recipient address storage keeps (its column widths;
#: PostgreSQL refuses longer values).
MAX_MESSAGE_ID = 255
MAX_RECIPIENT = 320

MessageKey = tuple[str, str]
"""``(message_id, recipient_ref)``: one message as one recipient received it."""


@dataclass(frozen=True, slots=True)
class SentMessage:
    message_id: str
    recipient: str
    recipient_ref: str
    sent_at: datetime


@dataclass(frozen=True, slots=True)
class Counts:
    """Unique per (message, recipient), over messages sent in a date range."""

    delivered: int
    opened: int
    clicked: int


@runtime_checkable
class Storage(Protocol):
    def register_messages(self, batch: Sequence[SentMessage]) -> None:
        """Record messages as sent, all or none. Registering the same (message, recipient)
        again, in one batch or another, changes nothing: the first send time stands."""

    def mark_bounced(self, message_id: str, recipient: str | None, at: datetime) -> int:
        """Mark a message (for one recipient, or all of them) as bounced; returns how many
        (message, recipient) rows were marked."""

    def recipients(self, keys: Iterable[MessageKey]) -> dict[MessageKey, str]:
        """Resolve recipient refs from tokens to the registered addresses; unknown keys
        are left out of the result."""

    def add_events(self, events: Sequence[Event]) -> None:
        """Store events, all or none."""

    def events(
        self, *, message_id: str | None = None, type: EventType | None = None
    ) -> list[Event]:
        """Stored events, oldest first."""

    def counts(self, start: datetime, end: datetime) -> Counts:
        """Counts over messages sent in ``[start, end)``, excluding bounced ones. An open
        is a message with any event (a click implies the image was seen or blocked);
        a click is a message with a click event."""

    def close(self) -> None:
        """Release connections."""
