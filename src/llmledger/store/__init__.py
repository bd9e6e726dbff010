"""The ledger store: SQLite by default, PostgreSQL through psycopg 3.

Example:
    >>> from datetime import datetime, timezone
    >>> from llmledger.core.events import UsageEvent
    >>> store = open_store("sqlite://")
    >>> store.write([UsageEvent(provider="openai", model="gpt-4o",
    ...                         ts=datetime(2025, 1, 1, tzinfo=timezone.utc))]).count
    1
    >>> store.count()
    1
"""

from __future__ import annotations

from llmledger.core.settings import Settings, load_settings
from llmledger.store.content import ContentRecord
from llmledger.store.errors import InvalidQueryError, RowExistsError, WriteError
from llmledger.store.keys import ApiKey, StoredKey
from llmledger.store.prices import DatabasePrices, StoredPrice, StoredRate
from llmledger.store.protocol import Store, WriteResult
from llmledger.store.schema import (
    FILTER_COLUMNS,
    event_tags,
    events,
    metadata,
)
from llmledger.store.sql import SqlStore, WriteHook

__all__ = [
    "FILTER_COLUMNS",
    "ApiKey",
    "ContentRecord",
    "DatabasePrices",
    "InvalidQueryError",
    "RowExistsError",
    "SqlStore",
    "Store",
    "StoredKey",
    "StoredPrice",
    "StoredRate",
    "WriteError",
    "WriteHook",
    "WriteResult",
    "event_tags",
    "events",
    "metadata",
    "migrate",
    "open_store",
]


def open_store(url_or_settings: str | Settings | None = None, *, upgrade: bool = True) -> SqlStore:
    """Open the ledger named by a URL or by settings, migrated to the newest schema.

    Args:
        url_or_settings: A database URL, a :class:`Settings`, or None to load the
            settings from the environment.  With settings and no ``database_url``
            the default SQLite file in ``home`` is used and its folder created.
        upgrade: Run pending migrations (the default).

    Raises:
        StoreError: when the database cannot be opened or migrated.

    Example:
        >>> store = open_store("sqlite://")
        >>> store.schema_version() is not None
        True
    """
    if url_or_settings is None:
        url_or_settings = load_settings()
    if isinstance(url_or_settings, Settings):
        store = SqlStore(
            url_or_settings.resolved_database_url,
            create_parent=url_or_settings.database_url is None,
        )
    else:
        store = SqlStore(url_or_settings)
    if upgrade:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store


def migrate(url_or_settings: str | Settings | None = None) -> None:
    """Upgrade the ledger's schema to the newest migration.

    Example:
        >>> migrate("sqlite://")
    """
    open_store(url_or_settings).close()
