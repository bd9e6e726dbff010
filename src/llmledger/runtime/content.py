"""Prompt and response text, kept apart from the events.

Text is kept only when asked (the ``store_content`` setting,
``llmledger.instrument(store_content=True)`` or a ``capture_content()`` block),
after the redaction hook has seen it.  It is in the journal with its call (a
captured call's values hold it; an event put back by ``spool requeue`` has it in
its record), so it survives the process with the event.  The writer builds the
event, which puts the text in the ledger's :class:`PendingContent`, and hands it
to the store with the event's batch: the store keeps it in its own table, in the
event's transaction, keyed by the event id, so it can have its own retention
(and be dropped) without touching the usage ledger (:mod:`llmledger.store.content`).
With ``url`` the remote sink sends it with its event and the service keeps it in
its own store.

Example:
    >>> from datetime import datetime, timezone
    >>> memory = MemoryContentStore()
    >>> ts = datetime(2025, 1, 1, tzinfo=timezone.utc)
    >>> memory.save(ContentRecord("01J0", ts, "Hi?", "Hello."))
    >>> memory.records[0].response
    'Hello.'
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from llmledger.core.events import ContentRecord

if TYPE_CHECKING:
    from llmledger.runtime.ledger import Ledger

__all__ = [
    "ContentRecord",
    "ContentStore",
    "MemoryContentStore",
    "PendingContent",
    "SqlContentStore",
    "content_store",
    "set_content_store",
]

log = logging.getLogger("llmledger")


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


class SqlContentStore:
    """Keeps records in the ledger's own store, at once (reads them back too).

    A ledger's own kept text goes through the journal instead
    (:attr:`llmledger.runtime.ledger.Ledger.content_store`).

    Example:
        >>> import llmledger
        >>> ledger = llmledger.configure(database_url="sqlite://")
        >>> store = SqlContentStore(ledger)
        >>> from datetime import UTC, datetime
        >>> ts = datetime(2025, 1, 1, tzinfo=UTC)
        >>> store.save(ContentRecord("01JDOC", ts, "Hi?", "Hello."))
        >>> store.get("01JDOC").response
        'Hello.'
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def save(self, record: ContentRecord) -> None:
        """Keep one record (a second record for the same event replaces the first)."""
        self._ledger.store.save_content([record])

    def get(self, event_id: str) -> ContentRecord | None:
        """The kept text of one event, or None when none was kept."""
        return self._ledger.store.get_content(event_id)


class PendingContent:
    """Holds records until the writer writes (or sends) them with their events.

    A ledger's :attr:`~llmledger.runtime.ledger.Ledger.content_store`: building a
    captured call's event (in the writer) saves its text here, and the writer
    takes it (:meth:`take`) for the event's batch, so the text is written in the
    event's transaction, or sent with it.  At most ``limit`` records wait: past it
    the oldest is dropped, counted and logged.

    Example:
        >>> pending = PendingContent(limit=1)
        >>> from datetime import UTC, datetime
        >>> ts = datetime(2025, 1, 1, tzinfo=UTC)
        >>> pending.save(ContentRecord("01JA", ts, "first?", None))
        >>> pending.save(ContentRecord("01JB", ts, "second?", None))
        >>> pending.take("01JA"), pending.take("01JB").prompt, pending.dropped
        (None, 'second?', 1)
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.dropped = 0
        self._records: dict[str, ContentRecord] = {}
        self._lock = threading.Lock()

    def save(self, record: ContentRecord) -> None:
        """Hold one record (a second record for the same event replaces the first)."""
        dropped: list[str] = []
        with self._lock:
            records = self._records
            records.pop(record.event_id, None)
            records[record.event_id] = record
            while len(records) > self.limit:
                oldest = next(iter(records))
                del records[oldest]
                dropped.append(oldest)
            self.dropped += len(dropped)
        for event_id in dropped:
            log.warning(
                "llmledger: the text of event %s was dropped: more than %d records waited "
                "for their events",
                event_id,
                self.limit,
            )

    def take(self, event_id: str) -> ContentRecord | None:
        """Remove and return the record of one event, or None."""
        if not self._records:
            return None
        with self._lock:
            return self._records.pop(event_id, None)

    def __len__(self) -> int:
        return len(self._records)


_override: ContentStore | None = None


def set_content_store(store: ContentStore | None) -> None:
    """Send kept text to ``store`` instead of the ledger's own (``None`` restores it).

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
    """The store kept text goes to for this ledger: the override, else the ledger's own
    (the journal, with its event, then its database or the service).

    Example:
        >>> import llmledger
        >>> ledger = llmledger.configure(database_url="sqlite://")
        >>> type(content_store(ledger)).__name__
        'PendingContent'
    """
    return _override if _override is not None else ledger.content_store
