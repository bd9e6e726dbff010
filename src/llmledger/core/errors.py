"""One exception tree for the whole library.

Every error llmledger raises derives from :class:`LedgerError` and also from the
builtin a caller would naturally catch, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "BatchRefused",
    "BudgetError",
    "CatalogError",
    "ConfigError",
    "CurrencyError",
    "ExportError",
    "FileAccessError",
    "InvalidEventError",
    "InvalidLimitError",
    "InvalidQueryError",
    "InvalidUsageError",
    "LedgerError",
    "LimitExceededError",
    "MissingDependencyError",
    "NotificationError",
    "PriceFileError",
    "ResponseParseError",
    "ServiceUnavailable",
    "StoreError",
    "StoreUnavailableError",
    "UnknownFeatureError",
    "UnknownModelError",
    "UnknownProviderError",
    "as_ledger_error",
]


class LedgerError(Exception):
    """Base class of every error raised by llmledger."""


class ConfigError(LedgerError, ValueError):
    """A setting or configuration file is invalid."""


class InvalidEventError(LedgerError, ValueError):
    """A usage event has a field that is missing, malformed or out of range."""


class InvalidUsageError(InvalidEventError):
    """Token counts are negative or a part exceeds its total."""


class UnknownProviderError(LedgerError, LookupError):
    """The provider name is not one llmledger knows how to read."""


class UnknownModelError(LedgerError, LookupError):
    """No price is known for the model."""


class UnknownFeatureError(InvalidEventError):
    """A feature was used that is not in the declared list of features."""


class PriceFileError(ConfigError):
    """A user price file cannot be read or is invalid."""


class CatalogError(LedgerError, ValueError):
    """A price catalog document cannot be fetched or is not in the genai-prices data shape."""


class BudgetError(LedgerError, ValueError):
    """A budget or an alert setting is malformed (amount, period, scope, thresholds, recipients)."""


class NotificationError(LedgerError, ConnectionError):
    """A notification could not be delivered (the mail server or the webhook refused it)."""


class ResponseParseError(LedgerError, ValueError):
    """A saved provider response or stream transcript cannot be understood."""


class StoreError(LedgerError, RuntimeError):
    """The ledger database cannot be opened, migrated or written."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached, or is locked or busy, right now: the same
    operation may succeed later."""


class InvalidLimitError(LedgerError, ValueError):
    """A limit has a field that is missing, malformed or out of range."""


class LimitExceededError(LedgerError, RuntimeError):
    """A guarded call was refused before any request left the process.

    Raised by instrumented SDK calls (and by :func:`llmledger.check` with
    ``raise_on_block=True``) when a blocking limit would be passed, or when the
    limit store cannot be reached and the policy is to fail closed.

    Attributes:
        decisions: The limits' decisions (:class:`llmledger.core.limits.Decision`);
            empty when the store could not be reached.
        reason: ``"limit"`` or ``"unavailable"`` (fail closed).
    """

    def __init__(self, message: str, *, decisions: tuple[object, ...] = (), reason: str = "limit"):
        super().__init__(message)
        self.decisions = decisions
        self.reason = reason


class CurrencyError(LedgerError, LookupError):
    """No exchange rate is known for a currency at the requested time."""


class InvalidQueryError(StoreError, ValueError):
    """A read or report was asked for with an unknown filter, dimension or a naive time."""


class ExportError(LedgerError, ValueError):
    """A report cannot be rendered in the format asked for (or not without a file)."""


class FileAccessError(LedgerError, OSError):
    """A file or folder llmledger was asked to use cannot be read, written or created.

    Example:
        >>> try:
        ...     open("/no/such/folder/report.csv", "w")
        ... except OSError as exc:
        ...     print(FileAccessError.from_os_error(exc, "cannot write the report"))
        cannot write the report: /no/such/folder/report.csv: No such file or directory
    """

    @classmethod
    def from_os_error(cls, exc: OSError, doing: str) -> FileAccessError:
        """One line saying what failed, on which path, and the system's reason.

        Args:
            exc: The error the operating system raised.
            doing: What llmledger was doing, e.g. ``"cannot write the report"``.
        """
        reason = exc.strerror or str(exc) or type(exc).__name__
        where = f"{exc.filename}: " if exc.filename else ""
        error = cls(f"{doing}: {where}{reason}")
        error.errno = exc.errno
        return error


class MissingDependencyError(LedgerError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class ServiceUnavailable(LedgerError, ConnectionError):
    """The llmledger service could not take a batch now (down, overloaded, refusing the key)."""


class BatchRefused(LedgerError, RuntimeError):
    """The service refused a batch with an answer that a retry would not change.

    Attributes:
        status: The HTTP status of the answer.
    """

    def __init__(self, status: int, problem: str) -> None:
        super().__init__(problem)
        self.status = status


# Libraries whose errors stand for a database that failed, or a service that cannot be reached.
_DATABASE_LIBRARIES = frozenset({"sqlalchemy", "alembic", "sqlite3", "psycopg", "psycopg2"})
_HTTP_LIBRARIES = frozenset({"httpx", "httpcore"})


def as_ledger_error(exc: BaseException) -> LedgerError | None:
    """The error of this tree that a library's error stands for at an edge, or None.

    File-system errors become :class:`FileAccessError`; errors of the database
    libraries (SQLAlchemy, Alembic, sqlite3, psycopg) :class:`StoreError`; errors of
    the HTTP client :class:`ServiceUnavailable`.  Anything else (None) is a bug,
    whose traceback is wanted.  Nothing is imported: a library that was never
    loaded cannot have raised.

    Example:
        >>> import sqlite3
        >>> as_ledger_error(sqlite3.OperationalError("database is locked"))
        StoreError('database error: database is locked')
        >>> as_ledger_error(KeyError("x")) is None
        True
    """
    if isinstance(exc, LedgerError):
        return exc
    if isinstance(exc, OSError):
        return FileAccessError.from_os_error(exc, "cannot use a file or folder")
    roots = {cls.__module__.partition(".")[0] for cls in type(exc).__mro__}
    # SQLAlchemy wraps the driver's error (``orig``) in lines of SQL and links.
    cause = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    message = lines[0] if lines else type(cause).__name__
    if roots & _DATABASE_LIBRARIES:
        return StoreError(f"database error: {message}")
    if roots & _HTTP_LIBRARIES:
        return ServiceUnavailable(f"cannot reach the service: {message}")
    return None
