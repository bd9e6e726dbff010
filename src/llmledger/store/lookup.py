"""Looking up many stored events at once by id (one statement per batch of ids)."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmledger.store.schema import events

__all__ = ["EventLookups"]

#: Ids per statement: well under every database's limit on bound parameters.
_CHUNK = 1000


class EventLookups:
    """The store's look-ups of events by id (a part of :class:`~llmledger.store.SqlStore`)."""

    def _connect(self, *, write: bool = False) -> Connection:  # pragma: no cover - SqlStore's
        raise NotImplementedError

    def event_tenants(self, ids: Iterable[str]) -> dict[str, str | None]:
        """The tenant of each stored event among ``ids`` (ids not stored are left out).

        One statement per thousand ids, so a batch of ingest answers its
        duplicates with one query.

        Example:
            >>> from datetime import UTC, datetime
            >>> from llmledger.core.events import UsageEvent
            >>> from llmledger.store import open_store
            >>> store = open_store("sqlite://")
            >>> e = UsageEvent(provider="openai", model="gpt-4o", tenant="acme",
            ...                ts=datetime(2025, 1, 1, tzinfo=UTC))
            >>> store.write([e]).count
            1
            >>> store.event_tenants([e.id, "01NOTSTORED"]) == {e.id: "acme"}
            True
        """
        wanted = sorted(set(ids))
        found: dict[str, str | None] = {}
        if not wanted:
            return found
        with self._connect() as conn:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                query = sa.select(events.c.id, events.c.tenant).where(events.c.id.in_(chunk))
                found.update((event_id, tenant) for event_id, tenant in conn.execute(query))
        return found
