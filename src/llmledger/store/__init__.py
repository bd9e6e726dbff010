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

import importlib
from typing import TYPE_CHECKING, Any

from llmledger.core.settings import Settings, load_settings

if TYPE_CHECKING:
    from llmledger.store.catalogs import StoredCatalog
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
    from llmledger.store.tombstones import DeleteResult

__all__ = [
    "FILTER_COLUMNS",
    "ApiKey",
    "ContentRecord",
    "DatabasePrices",
    "DeleteResult",
    "InvalidQueryError",
    "RowExistsError",
    "SqlStore",
    "Store",
    "StoredCatalog",
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


# Loaded on first use: importing a light part of the store (``llmledger.store.quick``)
# must not import SQLAlchemy, which every name below needs.
_LAZY = {
    "FILTER_COLUMNS": "llmledger.store.schema",
    "InvalidQueryError": "llmledger.store.errors",
    "RowExistsError": "llmledger.store.errors",
    "ApiKey": "llmledger.store.keys",
    "StoredKey": "llmledger.store.keys",
    "StoredCatalog": "llmledger.store.catalogs",
    "ContentRecord": "llmledger.store.content",
    "DatabasePrices": "llmledger.store.prices",
    "DeleteResult": "llmledger.store.tombstones",
    "StoredPrice": "llmledger.store.prices",
    "StoredRate": "llmledger.store.prices",
    "Store": "llmledger.store.protocol",
    "WriteResult": "llmledger.store.protocol",
    "SqlStore": "llmledger.store.sql",
    "WriteError": "llmledger.store.errors",
    "WriteHook": "llmledger.store.sql",
    "event_tags": "llmledger.store.schema",
    "events": "llmledger.store.schema",
    "metadata": "llmledger.store.schema",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
    from llmledger.store.sql import SqlStore

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
