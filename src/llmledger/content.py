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
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

import sqlalchemy as sa

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

#: The content table; created by migration 0003.
event_content = sa.Table(
    "event_content",
    sa.MetaData(),
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("ts_us", sa.BigInteger, nullable=False),
    sa.Column("prompt", sa.Text, nullable=True),
    sa.Column("response", sa.Text, nullable=True),
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


class SqlContentStore:
    """Writes records into the ledger database's ``event_content`` table."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def save(self, record: ContentRecord) -> None:
        """Keep one record (a second record for the same event replaces the first)."""
        ts_us = int(record.ts.timestamp() * 1_000_000)
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


_override: ContentStore | None = None


def set_content_store(store: ContentStore | None) -> None:
    """Send kept text to ``store`` instead of the ledger database (``None`` restores it)."""
    global _override
    _override = store


def content_store(ledger: Ledger) -> ContentStore:
    """The store kept text goes to for this ledger."""
    return _override if _override is not None else SqlContentStore(ledger)
