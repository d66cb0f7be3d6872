from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from arktrack import ConfigError, Tracker
from arktrack.stats import rate, summarize, utc_bounds
from arktrack.storage import Counts


@pytest.mark.parametrize(
    ("counts", "open_rate", "click_rate", "cto_rate"),
    [
        pytest.param(Counts(0, 0, 0), 0.0, 0.0, 0.0, id="empty"),
        pytest.param(Counts(4, 3, 2), 75.0, 50.0, 66.67, id="guide-formulas"),
        pytest.param(Counts(3, 1, 1), 33.33, 33.33, 100.0, id="rounding"),
        pytest.param(Counts(10, 0, 0), 0.0, 0.0, 0.0, id="no-opens"),
    ],
)
def test_rates(counts: Counts, open_rate: float, click_rate: float, cto_rate: float) -> None:
    summary = summarize(counts)
    assert (summary.delivered, summary.opens, summary.clicks) == (
        counts.delivered,
        counts.opened,
        counts.clicked,
    )
    assert (summary.open_rate, summary.click_rate, summary.click_to_open_rate) == (
        open_rate,
        click_rate,
        cto_rate,
    )


def test_rate_of_zero_base_is_zero() -> None:
    assert rate(5, 0) == 0.0


def test_bounds_are_inclusive_utc_days() -> None:
    low, high = utc_bounds(date(2024, 1, 1), date(2024, 1, 31))
    assert low == datetime(2024, 1, 1, tzinfo=UTC)
    assert high == datetime(2024, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "setting"),
    [
        ("2024-13-01", None, "start_date"),
        ("yesterday", None, "start_date"),
        (None, "2024/01/31", "end_date"),
        ("2024-02-01", "2024-01-31", "start_date"),
        (None, "9999-12-31", "end_date"),
    ],
)
def test_bad_dates_name_the_argument(
    tracker: Tracker, start: str | None, end: str | None, setting: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        tracker.stats(start_date=start, end_date=end)
    assert caught.value.setting == setting


def test_stats_over_a_range_end_to_end(sqlite_tracker: Tracker) -> None:
    t = sqlite_tracker
    jan = datetime(2024, 1, 10, 23, 59, tzinfo=UTC)
    feb = datetime(2024, 2, 1, 0, 0, tzinfo=UTC)
    refs = {}
    for n in range(4):
        refs[n] = t.register_message(f"jan_{n}", f"user{n}@example.com", sent_at=jan)
    t.register_message("feb_0", "user0@example.com", sent_at=feb)
    for n, times in ((0, 3), (1, 1)):
        for _ in range(times):
            assert _open(t, f"jan_{n}", f"user{n}@example.com") == 200
    assert _click(t, "jan_2", "user2@example.com") == 302
    assert _click(t, "jan_0", "user0@example.com") == 302
    t.flush()
    summary = t.stats(start_date="2024-01-01", end_date="2024-01-31").summary
    assert (summary.delivered, summary.opens, summary.clicks) == (4, 3, 2)
    assert (summary.open_rate, summary.click_rate, summary.click_to_open_rate) == (
        75.0,
        50.0,
        66.67,
    )
    assert t.stats(start_date="2024-02-01", end_date="2024-02-01").summary.delivered == 1
    assert t.stats(start_date=date(2024, 1, 11), end_date="2024-01-31").summary.delivered == 0
    assert t.stats().summary.delivered == 5


def _open(t: Tracker, mid: str, rcpt: str) -> int:
    token = t.open_url(mid, rcpt).rsplit("/", 1)[1]
    return t.handler.handle(
        "GET", "o", token, user_agent=None, forwarded_for=None, peer=None
    ).status


def _click(t: Tracker, mid: str, rcpt: str) -> int:
    url = t.click_url("https://example.com/", message_id=mid, recipient=rcpt)
    assert url is not None
    token = url.rsplit("/", 1)[1]
    return t.handler.handle(
        "GET", "c", token, user_agent=None, forwarded_for=None, peer=None
    ).status
