"""Price catalogs fetched from the network: ``price_catalogs`` (migration 0015).

A fetched genai-prices document is kept whole, as the text that was fetched,
with when and where from; the newest row is the catalog every process and
service instance over this database prices with, instead of the bundled one.
Fetching the same document again adds no row: the newest one is marked checked.
Only the newest :data:`KEEP_CATALOGS` rows are kept (the catalog itself holds the
dated price history, so older documents price nothing).  Checking the document
is the caller's; the store keeps it and hands it back.

Example:
    >>> from datetime import UTC, datetime
    >>> from llmledger.store import open_store
    >>> store = open_store("sqlite://")
    >>> at = datetime(2026, 12, 3, tzinfo=UTC)
    >>> store.add_catalog(StoredCatalog("01JC", "[]", "https://example.com/d.json", at, at))
    True
    >>> store.add_catalog(StoredCatalog("01JD", "[]", "https://example.com/d.json", at, at))
    False
    >>> store.latest_catalog().id, store.catalog_id()
    ('01JC', '01JC')
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmledger.store.codec import from_micros, to_micros
from llmledger.store.errors import database_errors
from llmledger.store.schema import metadata

__all__ = ["KEEP_CATALOGS", "CatalogRows", "StoredCatalog", "newest_catalog_id", "price_catalogs"]

#: Fetched catalogs kept; older ones are deleted when a new one is stored.
KEEP_CATALOGS = 3

price_catalogs = sa.Table(
    "price_catalogs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("sha256", sa.Text, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("fetched_us", sa.BigInteger, nullable=False, index=True),
    sa.Column("checked_us", sa.BigInteger, nullable=False),
    sa.Column("document", sa.Text, nullable=False),
)


@dataclass(frozen=True, slots=True)
class StoredCatalog:
    """One fetched catalog document.

    Attributes:
        id: A ULID; the newest id names the catalog in force.
        document: The JSON text as fetched.
        url: Where it was fetched from.
        fetched: When it was first fetched.
        checked: When it was last fetched (the same document again).
    """

    id: str
    document: str
    url: str
    fetched: datetime
    checked: datetime

    @property
    def sha256(self) -> str:
        """The document's SHA-256, hex."""
        return hashlib.sha256(self.document.encode()).hexdigest()


def _catalog(m: Any) -> StoredCatalog:
    return StoredCatalog(
        id=m["id"],
        document=m["document"],
        url=m["url"],
        fetched=from_micros(int(m["fetched_us"])),
        checked=from_micros(int(m["checked_us"])),
    )


_NEWEST = (price_catalogs.c.fetched_us.desc(), price_catalogs.c.id.desc())


def newest_catalog_id(conn: Connection) -> str | None:
    """The id of the catalog in force (the newest stored), or None for the bundled one."""
    row = conn.execute(sa.select(price_catalogs.c.id).order_by(*_NEWEST).limit(1)).first()
    return None if row is None else str(row[0])


class CatalogRows:
    """The store's statements on ``price_catalogs`` (a part of
    :class:`~llmledger.store.SqlStore`)."""

    def _connect(self, *, write: bool = False) -> Connection:  # pragma: no cover - SqlStore's
        raise NotImplementedError

    def add_catalog(self, catalog: StoredCatalog) -> bool:
        """Store a fetched catalog as the one in force; False when it is the same
        document as the newest one, which is then only marked checked.

        Example:
            >>> from datetime import UTC, datetime
            >>> from llmledger.store import open_store
            >>> at = datetime(2026, 12, 3, tzinfo=UTC)
            >>> open_store("sqlite://").add_catalog(StoredCatalog("01JC", "[]", "u", at, at))
            True
        """
        c = price_catalogs.c
        digest = catalog.sha256
        with (
            database_errors("store the fetched catalog"),
            self._connect(write=True) as conn,
            conn.begin(),
        ):
            newest = conn.execute(sa.select(c.id, c.sha256).order_by(*_NEWEST).limit(1)).first()
            if newest is not None and newest.sha256 == digest:
                conn.execute(
                    price_catalogs.update()
                    .where(c.id == newest.id)
                    .values(checked_us=to_micros(catalog.checked))
                )
                return False
            conn.execute(
                price_catalogs.insert().values(
                    id=catalog.id,
                    sha256=digest,
                    url=catalog.url,
                    fetched_us=to_micros(catalog.fetched),
                    checked_us=to_micros(catalog.checked),
                    document=catalog.document,
                )
            )
            kept = sa.select(c.id).order_by(*_NEWEST).limit(KEEP_CATALOGS).scalar_subquery()
            conn.execute(price_catalogs.delete().where(c.id.not_in(kept)))
        return True

    def latest_catalog(self) -> StoredCatalog | None:
        """The catalog in force (the newest fetched), or None when none was fetched.

        Example:
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").latest_catalog() is None
            True
        """
        query = sa.select(price_catalogs).order_by(*_NEWEST).limit(1)
        with database_errors("read the fetched catalog"), self._connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _catalog(row._mapping)

    def catalog_id(self) -> str | None:
        """The id of the catalog in force, cheaply (None: the bundled one).

        Example:
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").catalog_id() is None
            True
        """
        with database_errors("read the fetched catalog"), self._connect() as conn:
            return newest_catalog_id(conn)
