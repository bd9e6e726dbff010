"""Errors of the store, beyond ``StoreError`` itself, and how failures are classified."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa

from llmledger.core.errors import InvalidQueryError, StoreError

__all__ = [
    "InvalidQueryError",
    "RowExistsError",
    "WriteError",
    "database_errors",
    "is_transient",
    "one_line",
]


class RowExistsError(StoreError, ValueError):
    """A row would repeat one the store keeps once (a price for the same model,
    tier and first day; a rate for the same currency and day).

    Attributes:
        existing: The id of the row already stored, when known.

    Example:
        >>> RowExistsError("a BRL rate from 2025-01-01 exists", existing="01JR").existing
        '01JR'
    """

    def __init__(self, message: str, *, existing: str | None = None) -> None:
        super().__init__(message)
        self.existing = existing


class WriteError(StoreError):
    """A batch could not be written.

    Attributes:
        retryable: True when the cause is the database (locked, unreachable, full)
            rather than the data, so the same batch may succeed later.
    """

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def is_transient(exc: BaseException) -> bool:
    """Whether a failed write may succeed later: the database, not the data, failed.

    Example:
        >>> import sqlite3
        >>> is_transient(sqlite3.OperationalError("database is locked"))
        True
        >>> is_transient(sqlite3.IntegrityError("NOT NULL constraint failed"))
        False
    """
    if isinstance(exc, sa.exc.DBAPIError):
        exc = exc.orig or exc
    # sqlite3 and psycopg both name it OperationalError: locked, unreachable, disk full.
    return type(exc).__name__ == "OperationalError" or isinstance(exc, sa.exc.OperationalError)


def one_line(exc: BaseException) -> str:
    """The first line of the driver's message, for one-line errors.

    Example:
        >>> one_line(ValueError("first\\nsecond"))
        'first'
    """
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    return text[0] if text else type(cause).__name__


@contextlib.contextmanager
def database_errors(doing: str) -> Iterator[None]:
    """Turn the database's errors inside the block into a one-line ``StoreError``.

    Example:
        >>> try:
        ...     with database_errors("read the keys"):
        ...         raise sa.exc.OperationalError("SELECT", {}, Exception("no such table"))
        ... except StoreError as exc:
        ...     print(exc)
        cannot read the keys: no such table
    """
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot {doing}: {one_line(exc)}") from exc
