"""A time budget for the reads of one request, so heavy reports cannot hold the database.

Inside :func:`time_budget` every statement the thread runs has a deadline: on
PostgreSQL the connection's ``statement_timeout`` (set for the transaction
only, so the connection goes back to the pool as it was), on SQLite a progress
handler that interrupts the statement once the deadline has passed.  A read cut
short raises :class:`QueryTimeoutError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine

from llmledger.core.errors import StoreError

__all__ = ["QueryTimeoutError", "install", "time_budget"]

#: SQLite virtual-machine steps between two looks at the clock.
_SQLITE_STEPS = 10_000
_local = threading.local()


class QueryTimeoutError(StoreError, TimeoutError):
    """A read ran out of its time budget and was stopped by the database."""


def _deadline() -> float | None:
    deadline: float | None = getattr(_local, "deadline", None)
    return deadline


def _over_budget() -> int:
    deadline = _deadline()
    return int(deadline is not None and time.monotonic() >= deadline)


@contextmanager
def time_budget(seconds: float | None, *, setting: str = "query_timeout") -> Iterator[None]:
    """Give the statements this thread runs inside the block ``seconds`` in all.

    Args:
        seconds: The budget; None or 0 for none.  A budget inside another keeps
            the earlier deadline of the two.
        setting: The setting the budget comes from, named in the error:
            ``query_timeout`` (a report) or ``ingest_timeout`` (a batch of ingest).

    Raises:
        QueryTimeoutError: when the database stopped a statement because the
            budget was spent.

    Example:
        >>> from llmledger.store import open_store
        >>> store = open_store("sqlite://")
        >>> with time_budget(5.0):
        ...     store.count()
        0
    """
    if not seconds:
        yield
        return
    previous = _deadline()
    deadline = time.monotonic() + seconds
    _local.deadline = deadline if previous is None else min(previous, deadline)
    try:
        yield
    except (sa.exc.OperationalError, StoreError) as exc:
        # The database stopped the statement (or a store read wrapped that failure).
        if isinstance(exc, QueryTimeoutError) or time.monotonic() < _local.deadline:
            raise
        if setting == "ingest_timeout":
            message = (
                f"the batch took longer than its time budget ({seconds:g} s, ingest_timeout) "
                "and was stopped; nothing of it was stored: send it again"
            )
        else:
            message = (
                f"the query took longer than its time budget ({seconds:g} s, {setting}) "
                "and was stopped; ask for a shorter range or fewer groups"
            )
        raise QueryTimeoutError(message) from exc
    finally:
        _local.deadline = previous


def install(engine: Engine, *, sqlite: bool) -> None:
    """Make the engine's connections keep the deadline of :func:`time_budget`.

    Called once per engine, by the store that owns it.

    Example:
        >>> engine = sa.create_engine("sqlite://")
        >>> install(engine, sqlite=True)
        >>> with time_budget(5.0), engine.connect() as conn:
        ...     conn.exec_driver_sql("SELECT 1").scalar()
        1
    """

    @sa_event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        deadline = _deadline()
        if deadline is None:
            return
        if sqlite:
            dbapi_connection.set_progress_handler(_over_budget, _SQLITE_STEPS)
            record.info["budget"] = True
            return
        milliseconds = max(1, int((deadline - time.monotonic()) * 1000))
        cursor = dbapi_connection.cursor()
        try:
            # LOCAL: it ends with the transaction, which the pool rolls back on return.
            cursor.execute(f"SET LOCAL statement_timeout = {milliseconds}")
        finally:
            cursor.close()

    if sqlite:

        @sa_event.listens_for(engine, "checkin")
        def _on_checkin(dbapi_connection: Any, record: Any) -> None:
            if record.info.pop("budget", False) and dbapi_connection is not None:
                dbapi_connection.set_progress_handler(None, 0)
