"""The SQLAlchemy backend: SQLite (a file, by default) or PostgreSQL via psycopg 3.

Tables are created on first use and stamped with the Alembic revision they correspond to;
later schema changes ship as migrations run with ``arktrack db upgrade``.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import chain
from typing import Any

from sqlalchemy import (
    Dialect,
    Engine,
    Row,
    bindparam,
    case,
    create_engine,
    event,
    exists,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlalchemy.schema import CreateIndex, CreateTable

from ..errors import ConfigError, StorageError
from ..events import Event, EventType, Location
from .base import Counts, MessageKey, SentMessage
from .schema import SCHEMA_REVISION, VERSION_TABLE, events, messages, metadata

# Long enough for a PostgreSQL IN list, short enough that one slow batch stays cheap.
LOOKUP_CHUNK = 500
# SQLite's oldest limit on bound parameters in one statement.
PORTABLE_VARIABLES = 999
# As many as the recorder's largest batch (its MAX_BATCH).
MAX_ROWS_PER_STATEMENT = 1000
# Serialises first-use schema creation across processes (pg_advisory_xact_lock key).
SCHEMA_LOCK_KEY = 0x61726B74

# The column order of the rows register_messages() and add_events() build.
MESSAGE_COLUMNS = ["message_id", "recipient", "recipient_ref", "sent_at"]
EVENT_COLUMNS = [
    "type", "message_id", "recipient_ref", "recipient", "url", "user_agent",
    "ip_address", "location", "occurred_at",
]  # fmt: skip

_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _dispose_inherited_engines() -> None:
    # A forked worker (gunicorn --preload) must not share its parent's connections.
    for engine in list(_engines):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_dispose_inherited_engines)


class SqlStorage:
    def __init__(self, url: str | URL, *, setting: str = "storage", **engine_options: Any) -> None:
        self.engine = create_engine_for(url, setting, engine_options)
        _engines.add(self.engine)
        variables = self._ensure_schema()
        dialect = self.engine.dialect
        self._stamp = _timestamp_processor(dialect)
        self._as_json = events.c.location.type.dialect_impl(dialect).bind_processor(dialect)
        self._insert_messages = _BatchInsert(
            _insert_ignoring_duplicates(dialect.name), MESSAGE_COLUMNS, dialect, variables
        )
        self._insert_events = _BatchInsert(insert(events), EVENT_COLUMNS, dialect, variables)

    # -- writes -------------------------------------------------------------------------

    def register_messages(self, batch: Sequence[SentMessage]) -> None:
        stamp = self._stamp
        rows = [
            (
                item.message_id,
                item.recipient,
                item.recipient_ref,
                stamp(item.sent_at) if stamp else item.sent_at,
            )
            for item in batch
        ]
        self._insert(self._insert_messages, rows)

    def mark_bounced(self, message_id: str, recipient: str | None, at: datetime) -> int:
        statement = (
            update(messages)
            .where(messages.c.message_id == message_id)
            .values(bounced_at=func.coalesce(messages.c.bounced_at, at))
        )
        if recipient is not None:
            statement = statement.where(messages.c.recipient == recipient)
        with self._connect() as conn:
            marked: int = conn.execute(statement).rowcount
            return marked

    def add_events(self, batch: Sequence[Event]) -> None:
        stamp, as_json = self._stamp, self._as_json
        rows = [
            (
                item.type.value,
                item.email_id,
                item.recipient_ref,
                item.to,
                item.url,
                item.user_agent,
                item.ip_address,
                None if item.location is None or as_json is None else as_json(item.location),
                stamp(item.timestamp) if stamp else item.timestamp,
            )
            for item in batch
        ]
        self._insert(self._insert_events, rows)

    # -- reads --------------------------------------------------------------------------

    def recipients(self, keys: Iterable[MessageKey]) -> dict[MessageKey, str]:
        wanted = list(dict.fromkeys(keys))
        found: dict[MessageKey, str] = {}
        key_columns = tuple_(messages.c.message_id, messages.c.recipient_ref)
        with self._connect() as conn:
            for start in range(0, len(wanted), LOOKUP_CHUNK):
                chunk = wanted[start : start + LOOKUP_CHUNK]
                query = select(
                    messages.c.message_id, messages.c.recipient_ref, messages.c.recipient
                ).where(key_columns.in_(chunk))
                for message_id, ref, recipient in conn.execute(query):
                    found[(message_id, ref)] = recipient
        return found

    def events(
        self, *, message_id: str | None = None, type: EventType | None = None
    ) -> list[Event]:
        query = select(events).order_by(events.c.id)
        if message_id is not None:
            query = query.where(events.c.message_id == message_id)
        if type is not None:
            query = query.where(events.c.type == type.value)
        with self._connect() as conn:
            return [_event_from_row(row) for row in conn.execute(query)]

    def counts(self, start: datetime, end: datetime) -> Counts:
        same_key = (events.c.message_id == messages.c.message_id) & (
            events.c.recipient_ref == messages.c.recipient_ref
        )
        opened = exists().where(same_key)
        clicked = exists().where(same_key, events.c.type == EventType.CLICKED.value)
        query = select(
            func.count(),
            func.coalesce(func.sum(case((opened, 1), else_=0)), 0),
            func.coalesce(func.sum(case((clicked, 1), else_=0)), 0),
        ).where(
            messages.c.sent_at >= start,
            messages.c.sent_at < end,
            messages.c.bounced_at.is_(None),
        )
        with self._connect() as conn:
            delivered, opens, clicks = conn.execute(query).one()
        return Counts(int(delivered), int(opens), int(clicks))

    def close(self) -> None:
        self.engine.dispose()

    # -- plumbing -----------------------------------------------------------------------

    def _connect(self) -> _Transaction:
        return _Transaction(self.engine)

    def _insert(self, insert: _BatchInsert, rows: list[tuple[Any, ...]]) -> None:
        # Straight to the driver: a mailer registers every message it sends, one by one
        # outside Tracker.batch(), and a SQLAlchemy Connection and its transaction cost
        # a third of that.
        if not rows:
            return
        try:
            connection = self.engine.raw_connection()
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot reach the database: {exc}") from exc
        cursor = None
        try:
            cursor = connection.cursor()
            for sql, parameters in insert.statements(rows):
                if isinstance(parameters, list):
                    cursor.executemany(sql, parameters)
                else:
                    cursor.execute(sql, parameters)
            cursor.close()
            connection.commit()
        except self.engine.dialect.loaded_dbapi.Error as exc:
            if self.engine.dialect.is_disconnect(exc, connection.dbapi_connection, cursor):
                # What a SQLAlchemy Connection would do: the server went away (a restart,
                # a failover), so every pooled connection is as dead as this one.
                connection.invalidate(exc)
                self.engine.dispose()
            raise StorageError(f"database error: {exc}") from exc
        finally:
            connection.close()  # back to the pool, which rolls back what is left open

    def _ensure_schema(self) -> int:
        """Create the tables if they are missing and check their revision; returns how
        many bound parameters one statement may carry."""
        with self._connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            for table in metadata.sorted_tables:
                conn.execute(CreateTable(table, if_not_exists=True))
                for index in table.indexes:
                    conn.execute(CreateIndex(index, if_not_exists=True))
            conn.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} ("
                    "version_num VARCHAR(32) NOT NULL PRIMARY KEY)"
                )
            )
            # Several workers may start on an empty database at once (SQLite has no
            # advisory lock): the first stamp wins and the others find it in place.
            conn.execute(
                text(
                    f"INSERT INTO {VERSION_TABLE} (version_num) SELECT :v "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {VERSION_TABLE}) "
                    "ON CONFLICT DO NOTHING"
                ),
                {"v": SCHEMA_REVISION},
            )
            current = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
            if current != SCHEMA_REVISION:
                raise StorageError(
                    f"the arktrack tables are at schema revision {current}, this version "
                    f"of arktrack expects {SCHEMA_REVISION}: run `arktrack db upgrade`"
                )
            if conn.dialect.name != "sqlite":
                return PORTABLE_VARIABLES
            import sqlite3

            getlimit = getattr(conn.connection.driver_connection, "getlimit", None)
            if getlimit is None:  # a driver other than the standard library's
                return PORTABLE_VARIABLES
            return int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))


class _Transaction:
    """``with storage._connect() as conn``: one transaction, and every database error
    surfaces as :class:`StorageError` so callers handle one exception type."""

    def __init__(self, engine: Engine) -> None:
        self._context = engine.begin()

    def __enter__(self) -> Any:
        try:
            return self._context.__enter__()
        except SQLAlchemyError as exc:
            raise StorageError(f"cannot reach the database: {exc}") from exc

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._context.__exit__(*exc_info)
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {exc}") from exc
        error = exc_info[1]
        if isinstance(error, SQLAlchemyError):
            raise StorageError(f"database error: {error}") from error


def _timestamp_processor(dialect: Dialect) -> Callable[[Any], Any] | None:
    """How a timestamp is bound on ``dialect``: as SQLAlchemy's own types would bind it
    (on SQLite, DATETIME formats the text SQLAlchemy reads back and compares in
    queries), with the SQLite text written by _sqlite_utc_text for a third less."""
    if dialect.name == "sqlite":
        return _sqlite_utc_text
    return events.c.occurred_at.type.dialect_impl(dialect).bind_processor(dialect)


def _compiled(statement: Any, names: list[str], dialect: Dialect) -> tuple[str, bool]:
    """``statement`` with a bound parameter per name, as driver SQL; and whether its
    parameters are positional (in ``names`` order) rather than named."""
    compiled = statement.values({name: bindparam(name) for name in names}).compile(dialect=dialect)
    positional = compiled.positiontup is not None
    if positional and list(compiled.positiontup or ()) != names:
        raise AssertionError(f"unexpected parameter order: {compiled.positiontup}")
    return str(compiled), positional


class _BatchInsert:
    """An INSERT compiled once, for rows given as tuples in ``names`` order.

    The writer thread stores every registration and hit through here, so two costs
    matter. Going round SQLAlchemy's per-row parameter processing halves the Python work
    per row. And on SQLite, ``executemany`` releases and retakes the GIL for every row;
    inside a busy web server or mailer each retake waits for the busy thread, which made
    a 500-row batch take 100 ms. One multi-row ``VALUES`` statement per chunk retakes it
    once.
    """

    def __init__(self, statement: Any, names: list[str], dialect: Dialect, variables: int) -> None:
        self._names = names
        # A full batch in one statement where SQLite allows it (32,766 parameters since
        # 3.32): each statement is one more time the writer takes the GIL back from a
        # busy server. Batches under load are full, so that one statement stays prepared.
        self._rows_per_statement = max(1, min(MAX_ROWS_PER_STATEMENT, variables // len(names)))
        self._sql, self._positional = _compiled(statement, names, dialect)
        head, _, values = self._sql.partition(" VALUES ")
        # "(?, ?, ?) ON CONFLICT ...": the row, then what follows every row.
        row_end = values.find(")") + 1
        self._multi_row = dialect.name == "sqlite" and self._positional and row_end > 0
        self._head, self._row, self._tail = head + " VALUES ", values[:row_end], values[row_end:]

    def statements(self, rows: list[tuple[Any, ...]]) -> Iterator[tuple[str, Any]]:
        """``(sql, parameters)`` pairs that insert ``rows``."""
        if not self._positional:  # a named paramstyle (psycopg's "%(name)s")
            yield self._sql, [dict(zip(self._names, row, strict=True)) for row in rows]
        elif not self._multi_row:
            yield self._sql, rows
        else:
            step = self._rows_per_statement
            for start in range(0, len(rows), step):
                chunk = rows[start : start + step]
                sql = self._head + ", ".join([self._row] * len(chunk)) + self._tail
                yield sql, tuple(chain.from_iterable(chunk))


def _sqlite_utc_text(moment: datetime) -> str:
    """What SQLAlchemy's SQLite ``DATETIME`` writes for ``moment`` in UTC:
    ``YYYY-MM-DD HH:MM:SS.ffffff``, microseconds always present so text order is time order."""
    if moment.tzinfo is None:
        raise ValueError("arktrack stores aware datetimes only")
    return moment.astimezone(UTC).isoformat(" ", "microseconds")[:26]


def _insert_ignoring_duplicates(dialect: str) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    keys = ["message_id", "recipient_ref"]
    if dialect == "postgresql":
        return postgresql.insert(messages).on_conflict_do_nothing(index_elements=keys)
    return sqlite.insert(messages).on_conflict_do_nothing(index_elements=keys)


def _event_from_row(row: Row[Any]) -> Event:
    location: Location | None = row.location
    return Event(
        type=EventType(row.type),
        email_id=row.message_id,
        to=row.recipient,
        user_agent=row.user_agent,
        ip_address=row.ip_address,
        timestamp=row.occurred_at,
        url=row.url,
        location=location,
        recipient_ref=row.recipient_ref,
    )


def create_engine_for(
    url: str | URL, setting: str = "storage", options: dict[str, Any] | None = None
) -> Engine:
    """An engine for the ``storage`` setting; errors name ``setting``."""
    options = options or {}
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            setting, f"{url!r} is not a database URL (e.g. sqlite:///arktrack.db)"
        ) from None
    if parsed.drivername == "postgresql":
        # psycopg 3 is what arktrack[postgres] installs; SQLAlchemy would pick psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            setting, f"arktrack stores to SQLite or PostgreSQL, not {parsed.drivername}"
        )
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite and parsed.database in (None, "", ":memory:"):
        # One shared connection, or each thread would see its own empty database.
        options = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}} | options
    try:
        engine = create_engine(parsed, **options)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        hint = " (pip install 'arktrack[postgres]')" if "postgres" in parsed.drivername else ""
        raise ConfigError(setting, f"no driver for {parsed.drivername}{hint}: {exc}") from None
    except (ArgumentError, TypeError) as exc:
        raise ConfigError(setting, f"cannot use {parsed!r}: {exc}") from None
    if is_sqlite:
        event.listen(engine, "connect", _tune_sqlite)
    return engine


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the tracking endpoints write while stats read; NORMAL is durable across
    # application crashes (not power loss), the usual trade for WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
