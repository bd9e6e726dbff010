"""Deleting events by filter, and the tombstones that keep them deleted.

The ledger is append-only except for one operation: an admin deletes the events
a query's range and filters match (test data, a tenant that left).  Each
deleted id gets a tombstone, in the same transaction as the delete, and every
later write skips a tombstoned id as it skips an id already stored, so a journal
or spool replayed afterwards never brings a deleted event back.  The rollups of
the hours and days the deleted events fall in are rebuilt from the remaining
events, in that transaction too, so reports read from the rollups agree with
the raw events at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmledger.core.events import UsageEvent
from llmledger.query.periods import HOUR_US, from_us, to_us
from llmledger.query.plan import Piece
from llmledger.query.spec import Query
from llmledger.store.compile import compile_timeline
from llmledger.store.content import event_content
from llmledger.store.errors import database_errors
from llmledger.store.rollups import rebuild_rollups
from llmledger.store.schema import NANOS_PER_USD, event_tags, events, metadata

__all__ = [
    "DeleteResult",
    "TombstoneRows",
    "delete_events",
    "tombstones",
    "without_tombstoned",
]

tombstones = sa.Table(
    "tombstones",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("ts_us", sa.BigInteger, nullable=False),
    sa.Column("deleted_us", sa.BigInteger, nullable=False),
)

# Ids per statement: well under SQLite's and PostgreSQL's parameter limits.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """What a delete matched (and, unless it was a dry run, removed).

    Attributes:
        count: How many events matched.
        cost: Their summed cost in USD (unpriced events add nothing).
        first: The earliest matched event's start, or None when none matched.
        last: The latest matched event's start, or None.
        dry_run: True when nothing was deleted.

    Example:
        >>> DeleteResult(0, Decimal(0), None, None, dry_run=True).to_dict()["count"]
        0
    """

    count: int
    cost: Decimal
    first: datetime | None
    last: datetime | None
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (the CLI's ``--json`` and the HTTP answer)."""
        return {
            "count": self.count,
            "cost": format(self.cost, "f"),
            "first": None if self.first is None else self.first.isoformat(),
            "last": None if self.last is None else self.last.isoformat(),
            "dry_run": self.dry_run,
        }


def without_tombstoned(
    conn: Connection, batch: Sequence[UsageEvent]
) -> Sequence[UsageEvent] | None:
    """The events of ``batch`` whose ids were never deleted, or None when that is all of them.

    Costs one indexed look-up per write when no event was ever deleted.
    """
    if conn.execute(sa.select(tombstones.c.id).limit(1)).first() is None:
        return None
    ids = [event.id for event in batch]
    dead: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        dead.update(conn.scalars(sa.select(tombstones.c.id).where(tombstones.c.id.in_(chunk))))
    if not dead:
        return None
    return [event for event in batch if event.id not in dead]


def delete_events(
    conn: Connection, query: Query, *, now: datetime, dry_run: bool = False
) -> DeleteResult:
    """Delete the events of a query's range and filters, leaving tombstones (see the module).

    Run it in a write transaction the caller commits: the tombstones, the deletes
    and the rollup rebuilds then commit or roll back together.

    Args:
        conn: A connection in a write transaction.
        query: Its range (``since``, ``until``) and filters (``where``) select the events.
        now: The time recorded on the tombstones.
        dry_run: Only count what would be deleted.
    """
    piece = Piece(
        None,
        None if query.since is None else to_us(query.since),
        None if query.until is None else to_us(query.until),
        None,
    )
    selected = (
        compile_timeline(piece, query.where, None)
        .with_only_columns(events.c.id, events.c.ts_us, events.c.tags, events.c.cost_nanos)
        .order_by(None)
    )
    rows = conn.execute(selected).all()
    nanos = sum(int(row.cost_nanos or 0) for row in rows)
    times = [int(row.ts_us) for row in rows]
    result = DeleteResult(
        count=len(rows),
        cost=Decimal(nanos) / NANOS_PER_USD,
        first=from_us(min(times)) if times else None,
        last=from_us(max(times)) if times else None,
        dry_run=dry_run,
    )
    if dry_run or not rows:
        return result
    deleted_us = to_us(now)
    tag_keys = [
        {"k": key, "v": value, "t": row.ts_us, "e": row.id}
        for row in rows
        if row.tags
        for key, value in json.loads(row.tags).items()
    ]
    if tag_keys:
        # By the whole primary key, the table's only index.
        conn.execute(
            sa.delete(event_tags).where(
                event_tags.c.key == sa.bindparam("k"),
                event_tags.c.value == sa.bindparam("v"),
                event_tags.c.ts_us == sa.bindparam("t"),
                event_tags.c.event_id == sa.bindparam("e"),
            ),
            tag_keys,
        )
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        ids = [row.id for row in chunk]
        conn.execute(
            sa.insert(tombstones),
            [{"id": row.id, "ts_us": row.ts_us, "deleted_us": deleted_us} for row in chunk],
        )
        conn.execute(sa.delete(event_content).where(event_content.c.event_id.in_(ids)))
        conn.execute(sa.delete(events).where(events.c.id.in_(ids)))
    for since, until in _hour_runs(times):
        rebuild_rollups(conn, from_us(since), from_us(until))
    return result


def _hour_runs(times: Sequence[int]) -> list[tuple[int, int]]:
    """The hours holding ``times`` (µs), merged into runs of consecutive hours.

    Example:
        >>> _hour_runs([0, 10, HOUR_US + 5, 5 * HOUR_US])
        [(0, 7200000000), (18000000000, 21600000000)]
    """
    hours = sorted({t - t % HOUR_US for t in times})
    runs: list[tuple[int, int]] = []
    for hour in hours:
        if runs and runs[-1][1] == hour:
            runs[-1] = (runs[-1][0], hour + HOUR_US)
        else:
            runs.append((hour, hour + HOUR_US))
    return runs


class TombstoneRows:
    """The store's delete by filter.

    A part of :class:`~llmledger.store.SqlStore`.
    """

    def _connect(self, *, write: bool = False) -> Connection:  # pragma: no cover - SqlStore's
        raise NotImplementedError

    def delete_events(self, query: Query, *, now: datetime, dry_run: bool = False) -> DeleteResult:
        """Delete the events of a query's range and filters, leaving tombstones.

        See :func:`delete_events`; everything happens in one transaction.

        Example:
            >>> from datetime import UTC
            >>> from llmledger.store import open_store
            >>> store = open_store("sqlite://")
            >>> e = UsageEvent(provider="openai", model="gpt-4o",
            ...                ts=datetime(2025, 1, 1, tzinfo=UTC), tenant="test")
            >>> store.write([e]).count
            1
            >>> from llmledger.query import build_query
            >>> query = build_query(now=datetime.now(UTC), where=["tenant=test"])
            >>> gone = store.delete_events(query, now=datetime.now(UTC))
            >>> gone.count, store.count(), store.write([e]).duplicates == (e.id,)
            (1, 0, True)
        """
        with database_errors("delete events"), self._connect(write=True) as conn, conn.begin():
            return delete_events(conn, query, now=now, dry_run=dry_run)
