"""Prompt and response text in the ledger database: the ``event_content`` table.

Text is kept apart from the events so it can have its own retention (and be
dropped) without touching the usage ledger.  The statements here run inside a
connection the store opened: the ingest path writes text in the transaction of
its events, other writers in a transaction of their own.

Example:
    >>> from datetime import UTC, datetime
    >>> from llmledger.store import open_store
    >>> store = open_store("sqlite://")
    >>> store.save_content([ContentRecord("01JDOC", datetime(2025, 1, 1, tzinfo=UTC), "Hi?", None)])
    >>> store.get_content("01JDOC").prompt
    'Hi?'
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmledger.core.events import ContentRecord
from llmledger.store.codec import from_micros, to_micros
from llmledger.store.errors import database_errors
from llmledger.store.schema import metadata

__all__ = ["ContentRecord", "ContentRows", "event_content", "read_content", "write_content"]

#: The content table (migration 0005). No foreign key to ``events``: either can
#: be deleted on its own schedule. ``ts_us`` (the event's start) is indexed for
#: retention.
event_content = sa.Table(
    "event_content",
    metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("ts_us", sa.BigInteger, nullable=False),
    sa.Column("prompt", sa.Text, nullable=True),
    sa.Column("response", sa.Text, nullable=True),
    sa.Index(None, "ts_us"),
)


def write_content(conn: Connection, records: Sequence[ContentRecord]) -> None:
    """Write records in the connection's open transaction; each replaces what its
    event had before (the last record of an event in ``records`` wins)."""
    if not records:
        return
    last = {record.event_id: record for record in records}
    rows = [
        {
            "event_id": record.event_id,
            "ts_us": to_micros(record.ts),
            "prompt": record.prompt,
            "response": record.response,
        }
        for record in last.values()
    ]
    conn.execute(sa.delete(event_content).where(event_content.c.event_id.in_(list(last))))
    conn.execute(sa.insert(event_content), rows)


def read_content(conn: Connection, event_id: str) -> ContentRecord | None:
    """The text kept for one event, or None when none was kept."""
    query = sa.select(event_content).where(event_content.c.event_id == event_id)
    row = conn.execute(query).mappings().first()
    if row is None:
        return None
    return ContentRecord(
        event_id=row["event_id"],
        ts=from_micros(int(row["ts_us"])),
        prompt=row["prompt"],
        response=row["response"],
    )


class ContentRows:
    """The store's statements on ``event_content``.

    A part of :class:`~llmledger.store.SqlStore`.
    """

    def _connect(self, *, write: bool = False) -> Connection:  # pragma: no cover - SqlStore's
        raise NotImplementedError

    def save_content(self, records: Sequence[ContentRecord]) -> None:
        """Keep prompt and response text (a record replaces what its event had).

        Example:
            >>> from datetime import UTC, datetime
            >>> from llmledger.store import open_store
            >>> store = open_store("sqlite://")
            >>> store.save_content([ContentRecord("01JDOC", datetime(2025, 1, 1, tzinfo=UTC),
            ...                                   "Hi?", "Hello.")])
            >>> store.get_content("01JDOC").response
            'Hello.'
        """
        if not records:
            return
        with database_errors("keep the text"), self._connect(write=True) as conn, conn.begin():
            write_content(conn, records)

    def get_content(self, event_id: str) -> ContentRecord | None:
        """The text kept for one event, or None when none was kept.

        Example:
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").get_content("01JDOC") is None
            True
        """
        with database_errors("read the text"), self._connect() as conn:
            return read_content(conn, event_id)
