"""One contract, every backend: memory, SQLite (a real file) and PostgreSQL (a real server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from arktrack import Event, EventType
from arktrack.storage import Counts, SentMessage, Storage

T0 = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
DAY = timedelta(days=1)


def message(mid: str, rcpt: str = "a@example.com", sent: datetime = T0) -> SentMessage:
    return SentMessage(mid, rcpt, f"ref-{rcpt[:8]}", sent)


def event(kind: EventType, msg: SentMessage, at: datetime = T0, url: str | None = None) -> Event:
    return Event(
        type=kind,
        email_id=msg.message_id,
        to=msg.recipient,
        user_agent="Mozilla/5.0",
        ip_address="192.0.2.1",
        timestamp=at,
        url=url,
        recipient_ref=msg.recipient_ref,
    )


def test_events_round_trip_exactly(storage: Storage) -> None:
    msg = message("msg_1")
    opened = event(EventType.OPENED, msg, T0)
    clicked = event(
        EventType.CLICKED,
        msg,
        T0 + timedelta(seconds=61, microseconds=5),
        url="https://example.com/ü?a=1&b=2",
    )
    storage.add_events([opened, clicked])
    assert storage.events() == [opened, clicked]
    assert storage.events(type=EventType.CLICKED) == [clicked]
    assert storage.events(message_id="other") == []
    stored = storage.events()[1]
    assert stored.timestamp.tzinfo is not None
    assert stored.to_dict()["data"]["timestamp"] == "2024-01-15T10:31:01Z"


def test_non_utc_timestamps_come_back_in_utc(storage: Storage) -> None:
    local = datetime(2024, 1, 15, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    storage.add_events([event(EventType.OPENED, message("m"), local)])
    [stored] = storage.events()
    assert stored.timestamp == T0
    assert stored.timestamp.utcoffset() == timedelta(0)


def test_a_batch_registers_all_and_ignores_repeats_within_it(storage: Storage) -> None:
    first = message("msg_1", "a@example.com")
    again = SentMessage("msg_1", "a@example.com", first.recipient_ref, T0 + DAY)
    # A batch as the writer hands one over, with a repeat inside it.
    batch = [first] + [message(f"m{n}", f"u{n}@example.com") for n in range(150)] + [again]
    storage.register_messages(batch)
    storage.register_messages([])
    assert storage.counts(T0 - DAY, T0 + DAY).delivered == 151
    assert storage.counts(T0 + DAY, T0 + 2 * DAY).delivered == 0


def test_register_is_idempotent_and_resolves_recipients(storage: Storage) -> None:
    first = message("msg_1", "a@example.com")
    storage.register_messages([first])
    storage.register_messages(
        [SentMessage("msg_1", "a@example.com", first.recipient_ref, T0 + DAY)]
    )
    storage.register_messages([message("msg_1", "b@example.com")])
    keys = [("msg_1", first.recipient_ref), ("msg_1", "ref-b@exampl"), ("nope", "x")]
    assert storage.recipients(keys) == {
        ("msg_1", first.recipient_ref): "a@example.com",
        ("msg_1", "ref-b@exampl"): "b@example.com",
    }
    # The first send time stands: the message still counts on its first day only.
    assert storage.counts(T0 - DAY, T0 + DAY).delivered == 2
    assert storage.counts(T0 + DAY, T0 + 2 * DAY).delivered == 0


def test_recipients_handles_large_lookups(storage: Storage) -> None:
    sent = [message(f"msg_{i}", f"user{i}@example.com") for i in range(1200)]
    storage.register_messages(sent)
    found = storage.recipients((m.message_id, m.recipient_ref) for m in sent)
    assert len(found) == 1200


def test_counts_are_unique_per_message_and_recipient(storage: Storage) -> None:
    a, b, c, d = (message(f"msg_{n}", f"{n}@example.com") for n in "abcd")
    storage.register_messages([a, b, c, d])
    storage.add_events(
        [event(EventType.OPENED, a)] * 3  # many opens by one person count once
        + [event(EventType.CLICKED, a, url="https://x.example/")] * 2
        + [event(EventType.OPENED, b)]
        + [event(EventType.CLICKED, c, url="https://x.example/")]  # a click implies an open
    )
    assert storage.counts(T0 - DAY, T0 + DAY) == Counts(delivered=4, opened=3, clicked=2)


def test_counts_respect_the_range_bounds(storage: Storage) -> None:
    inside = message("in", sent=T0)
    edge = message("edge", sent=T0 + DAY)  # exactly at the exclusive end
    storage.register_messages([inside])
    storage.register_messages([edge])
    storage.add_events([event(EventType.OPENED, edge)])
    assert storage.counts(T0, T0 + DAY) == Counts(1, 0, 0)
    assert storage.counts(T0 + DAY, T0 + 2 * DAY) == Counts(1, 1, 0)


def test_bounces_stop_counting_as_delivered(storage: Storage) -> None:
    a = message("msg_1", "a@example.com")
    b = message("msg_1", "b@example.com")
    storage.register_messages([a])
    storage.register_messages([b])
    storage.add_events([event(EventType.OPENED, a)])
    assert storage.mark_bounced("msg_1", "b@example.com", T0) == 1
    assert storage.counts(T0 - DAY, T0 + DAY) == Counts(1, 1, 0)
    assert storage.mark_bounced("msg_1", None, T0) == 2
    assert storage.counts(T0 - DAY, T0 + DAY) == Counts(0, 0, 0)
    assert storage.mark_bounced("unknown", None, T0) == 0


def test_events_of_unregistered_messages_are_kept_but_not_counted(storage: Storage) -> None:
    stray = message("never-registered")
    storage.add_events([event(EventType.CLICKED, stray, url="https://x.example/")])
    assert len(storage.events()) == 1
    assert storage.counts(T0 - DAY, T0 + DAY) == Counts(0, 0, 0)


def test_empty_batch_is_fine(storage: Storage) -> None:
    storage.add_events([])
    assert storage.events() == []
    assert storage.counts(T0, T0 + DAY) == Counts(0, 0, 0)
