"""The guide's metrics over a date range.

The base is the *cohort* of messages sent in the range (UTC dates, both ends included),
less those that bounced: ``delivered``. Among them, ``opens`` counts the (message,
recipient) pairs with any event (a click implies an open whose image was blocked), and
``clicks`` those with a click. Rates are percentages rounded to two places, 0 when their
base is 0; counting a cohort keeps every rate within 0-100.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from .errors import ConfigError
from .storage import Counts, Storage


@dataclass(frozen=True, slots=True)
class Summary:
    opens: int
    clicks: int
    delivered: int
    open_rate: float
    click_rate: float
    click_to_open_rate: float

    def labelled(self) -> list[tuple[str, str]]:
        """The metrics as (label, value) pairs for a person to read, rates with a %."""
        return [
            ("Delivered", str(self.delivered)),
            ("Opens (unique)", str(self.opens)),
            ("Clicks (unique)", str(self.clicks)),
            ("Open rate", f"{self.open_rate}%"),
            ("Click rate", f"{self.click_rate}%"),
            ("Click-to-open rate", f"{self.click_to_open_rate}%"),
        ]


@dataclass(frozen=True, slots=True)
class Stats:
    start_date: date | None
    end_date: date
    summary: Summary


def summarize(counts: Counts) -> Summary:
    return Summary(
        opens=counts.opened,
        clicks=counts.clicked,
        delivered=counts.delivered,
        open_rate=rate(counts.opened, counts.delivered),
        click_rate=rate(counts.clicked, counts.delivered),
        click_to_open_rate=rate(counts.clicked, counts.opened),
    )


def rate(part: int, whole: int) -> float:
    return round(part * 100 / whole, 2) if whole else 0.0


def parse_date(value: str | date | None, name: str) -> date | None:
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(name, f"must be a date as YYYY-MM-DD, got {value!r}")


def utc_bounds(start: date | None, end: date) -> tuple[datetime, datetime]:
    """``[start 00:00, end+1 00:00)`` in UTC: the end date is included whole."""
    if start is not None and start > end:
        raise ConfigError("start_date", f"{start} is after end_date {end}")
    low = datetime.combine(start or date(1970, 1, 1), time(), UTC)
    if end >= date.max:
        raise ConfigError("end_date", f"{end} is too far in the future")
    return low, datetime.combine(end + timedelta(days=1), time(), UTC)


def compute(storage: Storage, start_date: str | date | None, end_date: str | date | None) -> Stats:
    """Stats for messages sent from ``start_date`` to ``end_date`` (``YYYY-MM-DD``, UTC,
    both included; default: from the first message to today)."""
    start = parse_date(start_date, "start_date")
    end = parse_date(end_date, "end_date") or datetime.now(UTC).date()
    low, high = utc_bounds(start, end)
    return Stats(start, end, summarize(storage.counts(low, high)))
