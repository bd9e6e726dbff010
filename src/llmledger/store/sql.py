"""The ledger store on SQLAlchemy Core: one class for SQLite and PostgreSQL.

Reads go through SQLAlchemy Core.  Writes are the hot path and use the raw
DBAPI connection inside the SQLAlchemy connection's transaction: on SQLite
multi-row INSERTs compiled once per shape from the Core table, so a batch
crosses into SQLite a few times, not once per row (a per-row ``executemany``
gives the GIL away at every row and starves behind a busy caller thread); on
PostgreSQL COPY into temporary tables (``llmledger.store.pgcopy``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from itertools import chain, compress
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine

from llmledger.core.errors import StoreError
from llmledger.core.events import UsageEvent
from llmledger.store import budget, migrator, pgcopy
from llmledger.store.alerting import AlertRows
from llmledger.store.catalogs import CatalogRows
from llmledger.store.codec import (
    FIXED_COLUMNS,
    OPTIONAL_COLUMNS,
    EncodedBatch,
    decode_event,
    encode_batch,
    to_micros,
)
from llmledger.store.content import ContentRecord, ContentRows, write_content
from llmledger.store.engines import WRITE_OPTION, postgres_engine, sqlite_engine, sqlite_path
from llmledger.store.errors import (
    InvalidQueryError,
    WriteError,
    is_transient,
    one_line,
    translate_database_errors,
)
from llmledger.store.keys import KeyRows
from llmledger.store.limits import LimitRows
from llmledger.store.lookup import EventLookups
from llmledger.store.prices import PriceRows
from llmledger.store.protocol import WriteResult
from llmledger.store.reports import StoreReports
from llmledger.store.reprice import RepriceRows
from llmledger.store.rollups import apply_rollups
from llmledger.store.schema import FILTER_COLUMNS, event_tags, events
from llmledger.store.tombstones import TombstoneRows, without_tombstoned

__all__ = ["SqlStore", "WriteHook"]

#: Called inside the write transaction with the events it has just inserted
#: (never a duplicate), e.g. to keep rollups in step; raising rolls the batch back.
WriteHook = Callable[[Connection, Sequence[UsageEvent]], object]

_LAST_ROWID = f"SELECT coalesce(max(rowid), 0) FROM {events.name}"
#: Most rows in one multi-row INSERT: a batch crosses into SQLite in a few calls.
_ROWS_PER_INSERT = 256
#: Guards the making of a store's limits pool (two threads may ask for it at once).
_POOL_LOCK = threading.Lock()
_IDS_AFTER = f"SELECT id FROM {events.name} WHERE rowid > ?"
_TAGS_FROM_JSON = (
    f"INSERT OR IGNORE INTO {event_tags.name} (key, value, ts_us, event_id, cost_nanos) "
    f"SELECT j.key, j.value, e.ts_us, e.id, e.cost_nanos "
    f"FROM {events.name} AS e, json_each(e.tags) AS j "
    "WHERE e.rowid > ? AND e.tags IS NOT NULL ORDER BY 1, 2, 3, 4"
)


@translate_database_errors
class SqlStore(
    StoreReports,
    ContentRows,
    KeyRows,
    LimitRows,
    PriceRows,
    CatalogRows,
    RepriceRows,
    EventLookups,
    AlertRows,
    TombstoneRows,
):
    """The ledger in a SQLite file or a PostgreSQL database (a :class:`~llmledger.store.Store`).

    Args:
        url: SQLAlchemy URL: ``sqlite:///path/ledger.db`` or
            ``postgresql+psycopg://user@host/db`` (plain ``postgresql://`` means psycopg 3).
        create_parent: Create the SQLite file's folder when it is missing.
        write_hooks: Run inside each write transaction after the inserts, with
            the events inserted (see :data:`WriteHook`).

    Raises:
        StoreError: when the URL is not supported or the database cannot be opened.

    Example:
        >>> from datetime import datetime, timezone
        >>> store = SqlStore("sqlite://")
        >>> store.migrate()
        >>> e = UsageEvent(provider="openai", model="gpt-4o",
        ...                ts=datetime(2025, 1, 1, tzinfo=timezone.utc))
        >>> store.write([e, e]).count
        1
        >>> store.get(e.id) == e
        True
        >>> store.close()
    """

    def __init__(
        self,
        url: str,
        *,
        create_parent: bool = False,
        write_hooks: Sequence[WriteHook] = (),
    ) -> None:
        try:
            parsed = sa.engine.make_url(url)
        except sa.exc.ArgumentError:
            raise StoreError(f"not a database URL: {url!r}") from None
        backend = parsed.get_backend_name()
        self._url = parsed
        self._pid = os.getpid()
        self._path: Path | None = None
        self._insert_sql: dict[tuple[tuple[bool, ...], int], str] = {}
        self.write_hooks: list[WriteHook] = list(write_hooks)
        # Hourly rollups are kept in the same transaction as the events they count.
        self.write_hooks.insert(0, apply_rollups)
        if backend == "sqlite":
            self._path = sqlite_path(parsed, create_parent)
            self._engine = sqlite_engine(parsed, memory=self._path is None)
        elif backend == "postgresql":
            # PostgreSQL writes go through COPY (llmledger.store.pgcopy).
            self._engine = postgres_engine(parsed)
        else:
            raise StoreError(
                f"unsupported database {parsed.drivername!r}: use sqlite:///PATH or "
                "postgresql+psycopg://USER@HOST/DB"
            )
        self._sqlite = backend == "sqlite"
        # The limits' own pool on PostgreSQL (made on first use, see _limit_engine).
        self._limits_pool: Engine | None = None
        budget.install(self._engine, sqlite=self._sqlite)
        # SQLite's INSERTs are compiled once per shape from the Core tables.
        self._dialect = sqlite.dialect(paramstyle="qmark")
        self._base_insert = sqlite.insert(events).on_conflict_do_nothing(index_elements=["id"])
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as exc:
            self._engine.dispose()
            raise StoreError(f"cannot open ledger database {self.url}: {one_line(exc)}") from None

    @property
    def url(self) -> str:
        """The database URL, with any password hidden."""
        return self._url.render_as_string(hide_password=True)

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None for PostgreSQL and in-memory databases."""
        return self._path

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return "sqlite" if self._sqlite else "postgresql"

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for the store's own modules and tests)."""
        self._check_fork()
        return self._engine

    def _check_fork(self) -> None:
        # Connections inherited across fork() must not be used by the child.
        if os.getpid() != self._pid:
            self._engine.dispose(close=False)
            if self._limits_pool is not None:
                self._limits_pool.dispose(close=False)
            self._pid = os.getpid()

    def _limit_engine(self) -> Engine:
        # A guarded call's reserve is one statement: a pool that pings each connection
        # on checkout would double its round trips, so limits have a pool without.
        self._check_fork()
        pool = self._limits_pool
        if pool is None:
            pool = postgres_engine(self._url, pre_ping=False)
            with _POOL_LOCK:
                if self._limits_pool is None:
                    self._limits_pool = pool
                else:  # another thread made it first
                    pool.dispose()
                    pool = self._limits_pool
        return pool

    def _connect(self, *, write: bool = False) -> Connection:
        self._check_fork()
        conn = self._engine.connect()
        return conn.execution_options(**{WRITE_OPTION: True}) if write else conn

    def close(self) -> None:
        """Close every pooled connection; the store can be reopened by using it again."""
        self._engine.dispose()
        if self._limits_pool is not None:
            self._limits_pool.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- schema ------------------------------------------------------------------

    def migrate(self) -> None:
        """Upgrade the schema to the newest migration (a no-op when up to date).

        Raises:
            StoreError: when the database cannot be migrated.
        """
        try:
            with self._connect(write=True) as conn, conn.begin():
                migrator.upgrade_connection(conn)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot migrate {self.url}: {one_line(exc)}") from exc

    def schema_version(self) -> str | None:
        """The migration revision the database is at (None when never migrated).

        Example:
            >>> store = SqlStore("sqlite://")
            >>> store.schema_version() is None
            True
        """
        with self._connect() as conn:
            return migrator.current_revision(conn)

    # -- writing -----------------------------------------------------------------

    def write(
        self,
        batch: Sequence[UsageEvent],
        *,
        on_error: Callable[[UsageEvent, Exception], None] | None = None,
        content: Mapping[str, ContentRecord] | None = None,
    ) -> WriteResult:
        """Insert events in one transaction; an id already stored (or deleted) is skipped.

        Args:
            batch: The events.
            on_error: Called with each event that cannot be encoded, which is then
                skipped; without it such an event fails the whole batch.
            content: Text to keep, by event id: written in the same transaction
                for the events this write inserts, never for a duplicate.

        Returns:
            The events inserted, and the ids that were duplicates or rejected.

        Raises:
            InvalidEventError: on a malformed event when ``on_error`` is not given.
            WriteError: when the database rejects the batch; nothing is written.

        Example:
            >>> from datetime import datetime, timezone
            >>> store = SqlStore("sqlite://")
            >>> store.migrate()
            >>> store.write([UsageEvent(provider="openai", model="gpt-4o",
            ...                         ts=datetime.now(timezone.utc))]).count
            1
        """
        if not batch:
            return WriteResult()
        unique = batch
        if len({event.id for event in batch}) != len(batch):
            # A repeated id keeps its first occurrence, as a second write would.
            first: dict[str, UsageEvent] = {}
            for event in batch:
                first.setdefault(event.id, event)
            unique = list(first.values())
        encoded = self._encode(unique, on_error)
        new: list[UsageEvent] = []
        if encoded.accepted:
            try:
                with self._connect(write=True) as conn:
                    conn.begin()
                    # A deleted event's id stays deleted: its tombstone counts as stored.
                    live = without_tombstoned(conn, encoded.accepted)
                    todo = encoded if live is None else self._encode(live, None)
                    if self._sqlite:
                        new = self._write_sqlite(conn, todo) if todo.accepted else []
                    else:
                        new = self._write_postgres(conn, todo) if todo.accepted else []
                    for hook in self.write_hooks:
                        hook(conn, new)
                    if content:
                        texts = [content[e.id] for e in new if e.id in content]
                        write_content(conn, texts)
                    conn.commit()
                    if not self._sqlite:
                        pgcopy.mark_tables_created(conn.connection.info)
            except Exception as exc:
                raise WriteError(
                    f"cannot write {len(encoded.accepted)} events to {self.url}: {one_line(exc)}",
                    retryable=is_transient(exc),
                ) from exc
        return _result(batch, encoded.accepted, new)

    def _write_sqlite(self, conn: Connection, encoded: EncodedBatch) -> list[UsageEvent]:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            # The transaction holds the write lock (BEGIN IMMEDIATE), so every
            # row past the current last rowid is one this batch inserted.
            cursor.execute(_LAST_ROWID)
            (mark,) = cursor.fetchone()
            inserted = 0
            for shape, rows in encoded.groups.items():
                inserted += self._insert_rows(cursor, shape, rows)
            new = encoded.accepted
            if inserted != len(new):
                cursor.execute(_IDS_AFTER, (mark,))
                stored = {event_id for (event_id,) in cursor.fetchall()}
                new = [event for event in new if event.id in stored]
            # SQLite splits the tags JSON of the new rows itself: no per-tag
            # Python work, and the sorter fills the clustered index in order.
            cursor.execute(_TAGS_FROM_JSON, (mark,))
            return new
        finally:
            cursor.close()

    def _write_postgres(self, conn: Connection, encoded: EncodedBatch) -> list[UsageEvent]:
        pooled = conn.connection
        return pgcopy.copy_batch(pooled.driver_connection, pooled.info, encoded)

    def _encode(
        self,
        batch: Sequence[UsageEvent],
        on_error: Callable[[UsageEvent, Exception], None] | None,
    ) -> EncodedBatch:
        sqlite_shapes = self._sqlite
        return encode_batch(
            batch, split_nulls=sqlite_shapes, bool_as_int=sqlite_shapes, on_error=on_error
        )

    def _insert_rows(self, cursor: Any, shape: tuple[bool, ...], rows: list[Any]) -> int:
        """Insert rows of one shape with multi-row INSERTs; how many were new.

        ``executemany`` gives the GIL away and takes it back at every row, and
        behind a caller thread busy in Python each take waits for the switch
        interval: a few hundred rows a second.  A multi-row INSERT crosses into
        SQLite once per ``_ROWS_PER_INSERT`` rows.  Row counts are powers of two
        (the remainder split into them), so a few statements serve every batch.
        """
        inserted = 0
        start = 0
        total = len(rows)
        while start < total:
            size = min(_ROWS_PER_INSERT, 1 << ((total - start).bit_length() - 1))
            params = list(chain.from_iterable(rows[start : start + size]))
            cursor.execute(self._insert_statement(shape, size), params)
            inserted += cursor.rowcount
            start += size
        return inserted

    def _insert_statement(self, shape: tuple[bool, ...], size: int) -> str:
        sql = self._insert_sql.get((shape, size))
        if sql is None:
            columns = FIXED_COLUMNS + tuple(compress(OPTIONAL_COLUMNS, shape))
            compiled = self._base_insert.compile(dialect=self._dialect, column_keys=list(columns))
            if tuple(compiled.positiontup or ()) != columns:  # pragma: no cover - guards SQLAlchemy
                raise StoreError("compiled INSERT does not list columns in table order")
            head, _, tail = compiled.string.partition(" VALUES ")
            row, _, conflict = tail.partition(")")
            values = ", ".join([f"{row})"] * size)
            sql = self._insert_sql[(shape, size)] = f"{head} VALUES {values}{conflict}"
        return sql

    # -- reading -----------------------------------------------------------------

    def get(self, event_id: str) -> UsageEvent | None:
        """The event with this id, or None.

        Example:
            >>> store = SqlStore("sqlite://")
            >>> store.migrate()
            >>> store.get("01J0000000000000000000000") is None
            True
        """
        with self._connect() as conn:
            row = conn.execute(sa.select(events).where(events.c.id == event_id)).first()
        return None if row is None else decode_event(row)

    def recent(self, limit: int = 50, offset: int = 0) -> list[UsageEvent]:
        """The newest events first.

        Example:
            >>> store = SqlStore("sqlite://")
            >>> store.migrate()
            >>> store.recent(limit=10)
            []
        """
        query = (
            sa.select(events)
            .order_by(events.c.ts_us.desc(), events.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self._connect() as conn:
            return [decode_event(row) for row in conn.execute(query)]

    def events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        **equals: Any,
    ) -> Iterator[UsageEvent]:
        """Events in time order, streamed; ``since`` is inclusive, ``until`` exclusive.

        Args:
            since: Earliest start time (aware).
            until: End of the range (aware, excluded).
            limit: Most events returned.
            tags: Only events carrying every one of these tags.
            **equals: Column equality filters (``model="gpt-4o"``, ``user=None``
                for a NULL), any of ``FILTER_COLUMNS``.

        Raises:
            InvalidQueryError: on an unknown filter or a naive time.

        Example:
            >>> store = SqlStore("sqlite://")
            >>> store.migrate()
            >>> list(store.events(model="gpt-4o", tags={"env": "prod"}))
            []
        """
        query = self._where(sa.select(events), since, until, equals, tags)
        query = query.order_by(events.c.ts_us, events.c.id).limit(limit)
        return self._stream(query)

    def _stream(self, query: sa.Select[Any]) -> Iterator[UsageEvent]:
        with self._connect() as conn:
            result = conn.execution_options(yield_per=1000).execute(query)
            for row in result:
                yield decode_event(row)

    def _where(
        self,
        query: sa.Select[Any],
        since: datetime | None,
        until: datetime | None,
        equals: Mapping[str, Any],
        tags: Mapping[str, str] | None = None,
    ) -> sa.Select[Any]:
        for name, bound, compare in (("since", since, "ge"), ("until", until, "lt")):
            if bound is None:
                continue
            if not isinstance(bound, datetime) or bound.tzinfo is None:
                raise InvalidQueryError(f"{name} must be a timezone-aware datetime, got {bound!r}")
            micros = to_micros(bound)
            query = query.where(
                events.c.ts_us >= micros if compare == "ge" else events.c.ts_us < micros
            )
        for name, value in equals.items():
            if name not in FILTER_COLUMNS:
                raise InvalidQueryError(
                    f"cannot filter on {name!r}; filters: {', '.join(FILTER_COLUMNS)}, tags"
                )
            column = events.c[name]
            query = query.where(column.is_(None) if value is None else column == value)
        for key, value in (tags or {}).items():
            query = query.where(
                sa.exists().where(
                    event_tags.c.event_id == events.c.id,
                    event_tags.c.key == key,
                    event_tags.c.value == value,
                )
            )
        return query

    def count(self) -> int:
        """How many events are stored."""
        with self._connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one())

    def unpriced_models(self) -> list[tuple[str, str, int]]:
        """``(provider, model, calls)`` of every model seen without a price, most calls first.

        Example:
            >>> store = SqlStore("sqlite://")
            >>> store.migrate()
            >>> store.unpriced_models()
            []
        """
        return [(p, m, n) for p, m, status, n in self.price_gaps() if status == "unpriced"]

    def price_gaps(self) -> list[tuple[str, str, str, int]]:
        """``(provider, model, price status, calls)`` of every model seen without a
        price (``unpriced``) or priced without a rate for some billed unit
        (``incomplete``), most calls first.

        Example:
            >>> store = SqlStore("sqlite://")
            >>> store.migrate()
            >>> store.price_gaps()
            []
        """
        calls = sa.func.count()
        status = sa.case((events.c.cost_nanos.is_(None), "unpriced"), else_="incomplete")
        query = (
            sa.select(events.c.provider, events.c.model, status, calls)
            .where(sa.or_(events.c.cost_nanos.is_(None), events.c.price_status == "incomplete"))
            .group_by(events.c.provider, events.c.model, status)
            .order_by(calls.desc(), events.c.provider, events.c.model, status)
        )
        with self._connect() as conn:
            return [(p, m, str(s), int(n)) for p, m, s, n in conn.execute(query)]

    # -- maintenance ---------------------------------------------------------------

    def backup(self, dest: str | os.PathLike[str]) -> Path:
        """Copy a SQLite ledger to ``dest`` while it stays in use (online backup API).

        Returns:
            The path written.

        Raises:
            StoreError: for PostgreSQL (use ``pg_dump``) or when ``dest`` cannot be written.

        Example:
            >>> import tempfile, pathlib
            >>> store = SqlStore("sqlite://")
            >>> store.migrate()
            >>> copy = store.backup(pathlib.Path(tempfile.mkdtemp()) / "copy.db")
            >>> SqlStore(f"sqlite:///{copy}").schema_version() == store.schema_version()
            True
        """
        if not self._sqlite:
            raise StoreError(
                "backup() copies SQLite ledgers only; back up PostgreSQL with pg_dump, e.g. "
                f"pg_dump --format=custom --file=ledger.dump {self._url.database or 'DBNAME'}"
            )
        target_path = Path(dest).expanduser()
        try:
            target = sqlite3.connect(target_path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write backup to {target_path}: {exc}") from None
        try:
            with self._connect() as conn:
                source = conn.connection.driver_connection
                source.backup(target)  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write backup to {target_path}: {exc}") from None
        finally:
            target.close()
        return target_path


def _result(
    batch: Sequence[UsageEvent], accepted: Sequence[UsageEvent], new: Sequence[UsageEvent]
) -> WriteResult:
    """Sort each event of a batch into inserted, duplicate or rejected."""
    if len(new) == len(batch):
        return WriteResult(tuple(new))
    encoded = {event.id for event in accepted}
    fresh = {event.id for event in new}
    duplicates: list[str] = []
    rejected: list[str] = []
    for event in batch:
        if event.id not in encoded:
            rejected.append(event.id)
        elif event.id in fresh:
            fresh.discard(event.id)  # a later repeat within the batch is a duplicate
        else:
            duplicates.append(event.id)
    return WriteResult(tuple(new), tuple(duplicates), tuple(rejected))
