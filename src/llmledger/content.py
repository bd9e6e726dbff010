"""Prompt and response text, kept apart from the events.

Text is kept only when asked (the ``store_content`` setting,
``llmledger.instrument(store_content=True)`` or a ``capture_content()`` block),
after the redaction hook has seen it. It lives in its own table,
``event_content``, keyed by the event id, so it can have its own retention (and
be dropped) without touching the usage ledger.

Example:
    >>> from datetime import datetime, timezone
    >>> memory = MemoryContentStore()
    >>> ts = datetime(2025, 1, 1, tzinfo=timezone.utc)
    >>> memory.save(ContentRecord("01J0", ts, "Hi?", "Hello."))
    >>> memory.records[0].response
    'Hello.'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa

from llmledger.store.schema import metadata

if TYPE_CHECKING:
    from llmledger.ledger import Ledger

__all__ = [
    "ContentRecord",
    "ContentStore",
    "MemoryContentStore",
    "SqlContentStore",
    "content_store",
    "event_content",
    "set_content_store",
]

#: The content table (migration 0005), on the ledger's metadata. No foreign key to
#: ``events``: the text is saved while its event is still being written, and
#: either can be deleted on its own schedule. ``ts_us`` (the event's start) is
#: indexed for retention.
event_content = sa.Table(
    "event_content",
    metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("ts_us", sa.BigInteger, nullable=False),
    sa.Column("prompt", sa.Text, nullable=True),
    sa.Column("response", sa.Text, nullable=True),
    sa.Index(None, "ts_us"),
)


@dataclass(frozen=True, slots=True)
class ContentRecord:
    """The (redacted) prompt and response text of one event."""

    event_id: str
    ts: datetime
    prompt: str | None
    response: str | None


class ContentStore(Protocol):
    """Where kept text goes; ``save`` runs in the ledger's background writer."""

    def save(self, record: ContentRecord) -> None:
        """Keep one record."""


@dataclass
class MemoryContentStore:
    """Keeps records in a list (tests, or an application that ships them elsewhere)."""

    records: list[ContentRecord] = field(default_factory=list)

    def save(self, record: ContentRecord) -> None:
        """Keep one record."""
        self.records.append(record)

    def get(self, event_id: str) -> ContentRecord | None:
        """The record of one event (the last one saved), or None."""
        return next((r for r in reversed(self.records) if r.event_id == event_id), None)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SqlContentStore:
    """Writes records into the ledger database's ``event_content`` table.

    The ledger's default (:attr:`llmledger.ledger.Ledger.content_store`).

    Example:
        >>> import llmledger
        >>> ledger = llmledger.configure(database_url="sqlite://")
        >>> store = SqlContentStore(ledger)
        >>> ts = datetime(2025, 1, 1, tzinfo=UTC)
        >>> store.save(ContentRecord("01JDOC", ts, "Hi?", "Hello."))
        >>> store.get("01JDOC").response
        'Hello.'
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def save(self, record: ContentRecord) -> None:
        """Keep one record (a second record for the same event replaces the first)."""
        ts_us = (record.ts - _EPOCH) // timedelta(microseconds=1)
        row = {
            "event_id": record.event_id,
            "ts_us": ts_us,
            "prompt": record.prompt,
            "response": record.response,
        }
        with self._ledger.store.engine.begin() as conn:
            conn.execute(
                sa.delete(event_content).where(event_content.c.event_id == record.event_id)
            )
            conn.execute(sa.insert(event_content), [row])

    def get(self, event_id: str) -> ContentRecord | None:
        """The kept text of one event, or None when none was kept."""
        query = sa.select(event_content).where(event_content.c.event_id == event_id)
        with self._ledger.store.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return ContentRecord(
            event_id=row["event_id"],
            ts=_EPOCH + timedelta(microseconds=row["ts_us"]),
            prompt=row["prompt"],
            response=row["response"],
        )


_override: ContentStore | None = None


def set_content_store(store: ContentStore | None) -> None:
    """Send kept text to ``store`` instead of the ledger database (``None`` restores it).

    Example:
        >>> import llmledger
        >>> ledger = llmledger.configure(database_url="sqlite://")
        >>> memory = MemoryContentStore()
        >>> set_content_store(memory)
        >>> content_store(ledger) is memory
        True
        >>> set_content_store(None)
    """
    global _override
    _override = store


def content_store(ledger: Ledger) -> ContentStore:
    """The store kept text goes to for this ledger: the override, else the ledger's own.

    Example:
        >>> import llmledger
        >>> ledger = llmledger.configure(database_url="sqlite://")
        >>> type(content_store(ledger)).__name__
        'SqlContentStore'
    """
    return _override if _override is not None else ledger.content_store
