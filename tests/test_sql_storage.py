"""What only the SQL backend has: its on-disk form and its fast event insert."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from arktrack import Event, EventType
from arktrack.storage.sql import SqlStorage

WHEN = datetime(2024, 1, 15, 12, 30, 0, 5, tzinfo=timezone(timedelta(hours=2)))


def test_sqlite_rows_are_what_sqlalchemy_writes_and_compares(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    storage = SqlStorage(f"sqlite:///{path}")
    located = Event(
        EventType.OPENED,
        "m",
        "u@example.com",
        "ua",
        "192.0.2.1",
        WHEN,
        location={"city": "Lyon", "region": None, "country": "FR"},
        recipient_ref="r",
    )
    plain = Event(EventType.CLICKED, "m", None, None, None, WHEN, url="https://x.example/")
    storage.add_events([located, plain])
    storage.close()
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT occurred_at, location, recipient FROM arktrack_events ORDER BY id"
        ).fetchall()
    # UTC, in SQLAlchemy's SQLite text format (lexical order is time order); SQL NULL,
    # not the JSON text "null", for a missing location.
    assert rows == [
        (
            "2024-01-15 10:30:00.000005",
            '{"city": "Lyon", "region": null, "country": "FR"}',
            "u@example.com",
        ),
        ("2024-01-15 10:30:00.000005", None, None),
    ]


def test_sqlite_timestamp_text_matches_sqlalchemy() -> None:
    from sqlalchemy.dialects import sqlite

    from arktrack.storage.schema import events
    from arktrack.storage.sql import _sqlite_utc_text

    dialect = sqlite.dialect()
    sqlalchemys = events.c.occurred_at.type.dialect_impl(dialect).bind_processor(dialect)
    assert sqlalchemys is not None
    for moment in [
        WHEN,
        WHEN.replace(microsecond=0),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 3, 31, 1, 59, 59, tzinfo=timezone(timedelta(hours=-11))),
    ]:
        assert _sqlite_utc_text(moment) == sqlalchemys(moment)


def test_sqlite_batches_are_split_to_fit_the_parameter_limit(tmp_path: Path) -> None:
    from sqlalchemy import insert
    from sqlalchemy.dialects import sqlite

    from arktrack.storage.schema import events
    from arktrack.storage.sql import EVENT_COLUMNS, _BatchInsert

    # SQLite before 3.32 allowed 999 parameters; this one allows 40, four rows of nine.
    batch = _BatchInsert(insert(events), EVENT_COLUMNS, sqlite.dialect(), 40)
    rows = [tuple(f"{n}.{column}" for column in range(9)) for n in range(9)]
    statements = list(batch.statements(rows))
    assert [len(parameters) for _, parameters in statements] == [36, 36, 9]
    assert [sql.count("?") for sql, _ in statements] == [36, 36, 9]
    assert [value for _, parameters in statements for value in parameters] == [
        value for row in rows for value in row
    ]
    # And it stores them: through a real file, with the limit this SQLite has.
    storage = SqlStorage(f"sqlite:///{tmp_path / 'a.db'}")
    storage._insert_events = batch
    when = datetime(2024, 1, 15, tzinfo=UTC)
    storage.add_events([Event(EventType.OPENED, f"m{n}", None, None, None, when) for n in range(9)])
    assert [e.email_id for e in storage.events()] == [f"m{n}" for n in range(9)]
    storage.close()


def test_registrations_split_across_statements_keep_the_first_send_time(tmp_path: Path) -> None:
    from sqlalchemy.dialects import sqlite

    from arktrack.storage import SentMessage
    from arktrack.storage.sql import MESSAGE_COLUMNS, _BatchInsert, _insert_ignoring_duplicates

    storage = SqlStorage(f"sqlite:///{tmp_path / 'a.db'}")
    # Ten rows of four per statement; the repeat of m0 lands in the second statement.
    storage._insert_messages = _BatchInsert(
        _insert_ignoring_duplicates("sqlite"), MESSAGE_COLUMNS, sqlite.dialect(), 40
    )
    first = datetime(2024, 1, 15, tzinfo=UTC)
    sent = [SentMessage(f"m{n}", "u@example.com", "ref", first) for n in range(12)]
    again = SentMessage("m0", "u@example.com", "ref", first + timedelta(days=1))
    storage.register_messages([*sent, again])
    day = timedelta(days=1)
    assert storage.counts(first, first + day).delivered == 12
    assert storage.counts(first + day, first + 2 * day).delivered == 0
    storage.close()


@pytest.mark.postgres
def test_a_postgresql_restart_costs_one_failed_registration(pg_url: str) -> None:
    from sqlalchemy import create_engine, text

    from arktrack import StorageError
    from arktrack.storage import SentMessage

    storage = SqlStorage(pg_url)
    when = datetime(2024, 1, 15, tzinfo=UTC)
    # Three connections in the pool, as three mailer threads would leave them.
    held = [storage.engine.raw_connection() for _ in range(3)]
    for connection in held:
        connection.close()
    admin = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.connect() as conn:  # what a restart does to every session of ours
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    admin.dispose()
    failures = 0
    for n in range(3):
        try:
            storage.register_messages([SentMessage(f"m{n}", "u@example.com", "ref", when)])
        except StorageError:
            failures += 1
    assert failures <= 1
    storage.register_messages([SentMessage("after", "u@example.com", "ref", when)])
    assert storage.counts(when, when + timedelta(days=1)).delivered >= 3
    storage.close()
