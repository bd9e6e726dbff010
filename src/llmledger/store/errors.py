"""Errors of the store, beyond ``StoreError`` itself, and how failures are classified."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy as sa

from llmledger.core.errors import InvalidQueryError, StoreError, StoreUnavailableError

__all__ = [
    "InvalidQueryError",
    "RowExistsError",
    "WriteError",
    "database_errors",
    "is_transient",
    "one_line",
    "translate_database_errors",
]

T = TypeVar("T", bound=type)


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


def _unavailable(exc: sa.exc.SQLAlchemyError) -> bool:
    """The database unreachable, restarting, locked or out of connections."""
    if isinstance(exc, sa.exc.TimeoutError | sa.exc.DisconnectionError):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and (exc.connection_invalidated or is_transient(exc))


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
        error = StoreUnavailableError if _unavailable(exc) else StoreError
        raise error(f"cannot {doing}: {one_line(exc)}") from exc


def translate_database_errors(cls: T) -> T:
    """Wrap every public method of a store class in :func:`database_errors`.

    What leaves the store is a ``StoreError`` (``StoreUnavailableError`` when the
    same call may succeed later), never the database library's own exception, so
    nothing above the store needs to know which library it runs on.  Generator
    methods are wrapped around their iteration, where their queries run.

    Example:
        >>> import sqlite3
        >>> locked = sqlite3.OperationalError("database is locked")
        >>> @translate_database_errors
        ... class Rows:
        ...     def count(self) -> int:
        ...         raise sa.exc.OperationalError("SELECT", {}, locked)
        >>> try:
        ...     Rows().count()
        ... except StoreUnavailableError as exc:
        ...     print(exc)
        cannot count: database is locked
    """
    for name in dir(cls):
        if name.startswith("_"):
            continue
        method = inspect.getattr_static(cls, name)
        if not inspect.isfunction(method):
            continue
        setattr(cls, name, _translated(method, name.replace("_", " ")))
    return cls


def _translated(method: Callable[..., Any], doing: str) -> Callable[..., Any]:
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            yield from _translated_iteration(method(*args, **kwargs), doing)

        return generator

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with database_errors(doing):
            result = method(*args, **kwargs)
        # A method that hands back a generator runs its queries as it is iterated.
        return _translated_iteration(result, doing) if inspect.isgenerator(result) else result

    return call


def _translated_iteration(rows: Iterator[Any], doing: str) -> Iterator[Any]:
    with database_errors(doing):
        yield from rows
