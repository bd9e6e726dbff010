"""SQLAlchemy engines for the ledger: SQLite tuned for one writer and many readers,
PostgreSQL through psycopg 3.

Example:
    >>> import sqlalchemy as sa
    >>> engine = sqlite_engine(sa.engine.make_url("sqlite://"), memory=True)
    >>> with engine.connect() as conn:
    ...     conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
    1
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from llmledger.core.errors import StoreError

__all__ = ["WRITE_OPTION", "postgres_engine", "sqlite_engine", "sqlite_path"]

#: Execution option of a connection that will write: on SQLite its transactions
#: take the write lock when they begin.
WRITE_OPTION = "llmledger_write"


def sqlite_path(url: sa.URL, create_parent: bool) -> Path | None:
    """The file of a SQLite URL (None in memory), its folder made when asked.

    Raises:
        StoreError: when the folder cannot be created.

    Example:
        >>> sqlite_path(sa.engine.make_url("sqlite:///ledger.db"), False)
        PosixPath('ledger.db')
    """
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    path = Path(database).expanduser()
    if create_parent:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create folder for {path}: {exc}") from None
    return path


def sqlite_engine(url: sa.URL, *, memory: bool) -> Engine:
    """An engine for a SQLite ledger: WAL, transactions begun by SQLAlchemy, writers
    taking the lock up front (see :data:`WRITE_OPTION`)."""
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30.0},
        # One shared connection is the only way to share an in-memory database.
        poolclass=StaticPool if memory else None,
    )

    path = None if memory else Path(url.database or "").expanduser()

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy's "begin" event below own transactions instead of
        # the sqlite3 module's implicit ones, so DDL is transactional too.
        dbapi_connection.isolation_level = None
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            dbapi_connection.execute(f"PRAGMA {pragma}")
        if path is not None:
            record.info["ledger_file"] = _identity(path)

    if path is not None:

        @sa_event.listens_for(engine, "checkout")
        def _on_checkout(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
            # A pooled connection keeps the file it opened even after that file is
            # removed or moved away: it would answer from a ghost and "store" events
            # nobody can read again. Such a connection is replaced; opening the
            # ledger again then fails (503 unavailable) until the file is back.
            if _identity(path) != record.info.get("ledger_file"):
                raise sa.exc.DisconnectionError(f"the ledger file {path} was moved or removed")

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the write lock up front: a deferred transaction that
        # reads first cannot wait for the lock and fails with "locked".
        immediate = conn.get_execution_options().get(WRITE_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _identity(path: Path) -> tuple[int, int] | None:
    """The device and inode of a file, or None when it is not there."""
    try:
        found = path.stat()
    except OSError:
        return None
    return (found.st_dev, found.st_ino)


def postgres_engine(url: sa.URL, *, pre_ping: bool = True) -> Engine:
    """An engine for a PostgreSQL ledger through psycopg 3.

    ``pre_ping`` checks each connection with a round trip as it leaves the pool; the
    limits' pool goes without (one round trip per check is its budget) and replaces
    a connection found broken instead.

    Raises:
        StoreError: for another driver, or when psycopg is not installed.
    """
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername != "postgresql+psycopg":
        raise StoreError(
            f"unsupported PostgreSQL driver {url.drivername!r}: use postgresql+psycopg://"
        )
    connect_args = {} if "connect_timeout" in url.query else {"connect_timeout": 10}
    try:
        return sa.create_engine(url, connect_args=connect_args, pool_pre_ping=pre_ping)
    except ImportError as exc:
        raise StoreError(
            f"PostgreSQL needs psycopg 3: pip install 'llmledger[postgres]' ({exc})"
        ) from None
