"""Tracking events and the in-process hooks that receive them.

An :class:`Event` renders exactly the guide's webhook payload::

    {"type": "email.opened", "data": {"emailId", "to", "userAgent", "ipAddress",
                                      "location", "timestamp"}}
    {"type": "email.clicked", "data": {"emailId", "to", "url", "userAgent",
                                       "ipAddress", "timestamp"}}
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypedDict

logger = logging.getLogger("arktrack")


class EventType(enum.StrEnum):
    OPENED = "email.opened"
    CLICKED = "email.clicked"


class Location(TypedDict):
    city: str | None
    region: str | None
    country: str | None


# A named tuple, not a frozen dataclass: the writer thread makes one per hit, holding the
# GIL the request threads wait for, and a frozen dataclass costs three times as much.
class Event(NamedTuple):
    type: EventType
    email_id: str
    #: The registered recipient; ``None`` when the message was never registered here.
    to: str | None
    user_agent: str | None
    ip_address: str | None
    timestamp: datetime
    #: The destination of a click; ``None`` for opens.
    url: str | None = None
    #: Geolocation of an open; ``None`` until a geolocation source is configured.
    location: Location | None = None
    #: The keyed hash of the recipient carried by the token; joins events to messages.
    recipient_ref: str = ""

    @property
    def data(self) -> dict[str, Any]:
        stamp = format_timestamp(self.timestamp)
        if self.type is EventType.OPENED:
            return {
                "emailId": self.email_id,
                "to": self.to,
                "userAgent": self.user_agent,
                "ipAddress": self.ip_address,
                "location": self.location,
                "timestamp": stamp,
            }
        return {
            "emailId": self.email_id,
            "to": self.to,
            "url": self.url,
            "userAgent": self.user_agent,
            "ipAddress": self.ip_address,
            "timestamp": stamp,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type.value, "data": self.data}


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, to the second, as in the guide's payloads."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Hook = Callable[[Event], object]


class Hooks:
    """Callables run for each event after it is stored. A hook that raises is logged and
    skipped: one broken hook must not cost the others their events."""

    def __init__(self) -> None:
        self._hooks: dict[EventType, list[Hook]] = {kind: [] for kind in EventType}

    def add(self, kind: EventType, hook: Hook) -> None:
        self._hooks[kind].append(hook)

    def __bool__(self) -> bool:
        return any(self._hooks.values())

    def dispatch(self, event: Event) -> None:
        for hook in self._hooks[event.type]:
            try:
                hook(event)
            except Exception:
                logger.exception(
                    "arktrack hook %r failed on %s for %s",
                    getattr(hook, "__qualname__", hook),
                    event.type.value,
                    event.email_id,
                )
