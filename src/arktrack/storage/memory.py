"""An in-memory backend: for tests and throwaway processes. Nothing survives a restart."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from ..events import Event, EventType
from .base import Counts, MessageKey, SentMessage

ZERO = timedelta(0)


class MemoryStorage:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: dict[MessageKey, SentMessage] = {}
        self._bounced: dict[MessageKey, datetime] = {}
        self._events: list[Event] = []

    def register_messages(self, batch: Sequence[SentMessage]) -> None:
        with self._lock:
            for message in batch:
                self._messages.setdefault((message.message_id, message.recipient_ref), message)

    def mark_bounced(self, message_id: str, recipient: str | None, at: datetime) -> int:
        with self._lock:
            keys = [
                key
                for key, message in self._messages.items()
                if key[0] == message_id and recipient in (None, message.recipient)
            ]
            for key in keys:
                self._bounced.setdefault(key, at)
            return len(keys)

    def recipients(self, keys: Iterable[MessageKey]) -> dict[MessageKey, str]:
        with self._lock:
            return {key: self._messages[key].recipient for key in keys if key in self._messages}

    def add_events(self, events: Sequence[Event]) -> None:
        # Stored as the SQL backends give them back: in UTC.
        utc = [
            item
            if item.timestamp.utcoffset() == ZERO
            else item._replace(timestamp=item.timestamp.astimezone(UTC))
            for item in events
        ]
        with self._lock:
            self._events.extend(utc)

    def events(
        self, *, message_id: str | None = None, type: EventType | None = None
    ) -> list[Event]:
        with self._lock:
            return [
                event
                for event in self._events
                if message_id in (None, event.email_id) and type in (None, event.type)
            ]

    def counts(self, start: datetime, end: datetime) -> Counts:
        with self._lock:
            delivered = {
                key
                for key, message in self._messages.items()
                if start <= message.sent_at < end and key not in self._bounced
            }
            opened: set[MessageKey] = set()
            clicked: set[MessageKey] = set()
            for event in self._events:
                key = (event.email_id, event.recipient_ref)
                if key in delivered:
                    opened.add(key)
                    if event.type is EventType.CLICKED:
                        clicked.add(key)
            return Counts(len(delivered), len(opened), len(clicked))

    def close(self) -> None:
        pass
