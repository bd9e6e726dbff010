"""Repricing stored events: their cost columns and the rollups, batch by batch.

A reprice walks the events of a query's range and filters newest first, one
batch per transaction.  In each transaction the batch is read (locked on
PostgreSQL; SQLite's write lock covers it), handed to the caller's pricing
step, and the events whose cost changed are updated together with the rollup
rows that count them, and the job's progress (the last event done, and the
caller's running totals) is saved in ``reprice_jobs`` (migration 0009).  A
batch commits whole or not at all, so a run stopped anywhere, even by SIGKILL,
resumes from its last committed batch, and a batch repriced twice changes
nothing the second time.

Only the cost columns change: ``cost_nanos``, ``cost_source``, ``price_ref``,
``unpriced_reason``, ``cost_breakdown``, ``price_status`` and
``incomplete_reason``.  In the rollups an event's cost, and whether it is
counted as unpriced or incomplete, move from the old values to the new ones;
the wide cost sum is carried as on insert, its remainder kept in
``[0, WIDE_BASE)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmledger.core.errors import StoreError
from llmledger.core.events import UsageEvent
from llmledger.query.spec import Query
from llmledger.store.codec import to_micros, to_nanos
from llmledger.store.reports import read_event_page
from llmledger.store.rollup_tables import WIDE_BASE, daily_rollups, rollups
from llmledger.store.rollups import ROW_COLUMNS, rollup_rows
from llmledger.store.schema import event_tags, events, metadata

__all__ = [
    "RepriceBatch",
    "RepriceJob",
    "RepriceRows",
    "RepriceStep",
    "reprice_jobs",
]

reprice_jobs = sa.Table(
    "reprice_jobs",
    metadata,
    # What the job covers (range and filters, as text), hashed by the caller.
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    # The last event done, (ts_us, id): the next batch starts strictly older.
    sa.Column("after_ts_us", sa.BigInteger, nullable=True),
    sa.Column("after_id", sa.Text, nullable=True),
    # The caller's running totals, as it serialised them.
    sa.Column("state", sa.Text, nullable=True),
    sa.Column("batches", sa.BigInteger, nullable=False),
    sa.Column("started_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Column("finished_us", sa.BigInteger, nullable=True),
)

#: The pricing step of one batch: the events as stored and the job's state
#: before the batch, to the events as they must be stored and the state after.
RepriceStep = Callable[[Sequence[UsageEvent], str | None], tuple[Sequence[UsageEvent], str | None]]

_COST_FIELDS = (
    "cost",
    "cost_breakdown",
    "cost_source",
    "price_ref",
    "unpriced_reason",
    "incomplete_reason",
)
# Where the rollup key and the sums a reprice moves sit in a rollup row.
_KEY = (ROW_COLUMNS.index("grain"), ROW_COLUMNS.index("start_us"), ROW_COLUMNS.index("dims_key"))
_MOVED = tuple(
    ROW_COLUMNS.index(name)
    for name in ("unpriced_calls", "incomplete_calls", "cost_nanos", "cost_nanos_e9")
)


@dataclass(frozen=True, slots=True)
class RepriceJob:
    """A reprice's saved progress.

    Attributes:
        key: What identifies the job (its range and filters, hashed).
        spec: The range and filters, as text, for people.
        after: ``(ts_us, id)`` of the last event done, None before the first batch.
        state: The caller's running totals, as it serialised them.
        batches: How many batches were committed.
        started: When the job started.
        finished: When its last batch committed, None while it runs.
    """

    key: str
    spec: str
    after: tuple[int, str] | None
    state: str | None
    batches: int
    started: datetime
    finished: datetime | None


@dataclass(frozen=True, slots=True)
class RepriceBatch:
    """What one batch did.

    Attributes:
        job: The job's progress after the batch.
        examined: How many events the batch read.
        changed: ``(as stored before, as stored now)`` of each event whose cost changed.
    """

    job: RepriceJob
    examined: int
    changed: tuple[tuple[UsageEvent, UsageEvent], ...]


def cost_changed(before: UsageEvent, after: UsageEvent) -> bool:
    """Whether a reprice changed anything stored about an event's cost.

    Example:
        >>> from datetime import UTC, datetime
        >>> from decimal import Decimal
        >>> e = UsageEvent(provider="openai", model="m", ts=datetime(2025, 1, 1, tzinfo=UTC))
        >>> cost_changed(e, e), cost_changed(e, e.replace(cost=Decimal("0.1")))
        (False, True)
    """
    return any(getattr(before, name) != getattr(after, name) for name in _COST_FIELDS)


def _job(row: Any) -> RepriceJob:
    from llmledger.store.codec import from_micros

    return RepriceJob(
        key=row.key,
        spec=row.spec,
        after=None if row.after_id is None else (int(row.after_ts_us), row.after_id),
        state=row.state,
        batches=int(row.batches),
        started=from_micros(int(row.started_us)),
        finished=None if row.finished_us is None else from_micros(int(row.finished_us)),
    )


def _event_values(event: UsageEvent) -> dict[str, Any]:
    breakdown = event.cost_breakdown
    return {
        "b_id": event.id,
        "cost_nanos": None if event.cost is None else to_nanos(event.cost),
        "cost_source": event.cost_source,
        "price_ref": event.price_ref,
        "unpriced_reason": event.unpriced_reason,
        "cost_breakdown": None
        if breakdown is None
        else json.dumps({k: str(v) for k, v in breakdown.items()}, separators=(",", ":")),
        "price_status": event.price_status,
        "incomplete_reason": event.incomplete_reason,
    }


_UPDATE_EVENT = (
    sa.update(events)
    .where(events.c.id == sa.bindparam("b_id"))
    .values(
        {
            name: sa.bindparam(name)
            for name in (
                "cost_nanos",
                "cost_source",
                "price_ref",
                "unpriced_reason",
                "cost_breakdown",
                "price_status",
                "incomplete_reason",
            )
        }
    )
)


_UPDATE_TAG = (
    sa.update(event_tags)
    .where(
        event_tags.c.key == sa.bindparam("t_key"),
        event_tags.c.value == sa.bindparam("t_value"),
        event_tags.c.ts_us == sa.bindparam("t_ts"),
        event_tags.c.event_id == sa.bindparam("t_id"),
    )
    .values(cost_nanos=sa.bindparam("t_cost", type_=sa.BigInteger))
)


def _tag_values(changed: Sequence[tuple[UsageEvent, UsageEvent]]) -> list[dict[str, Any]]:
    """The new cost of each tag row of the changed events (found by its primary key)."""
    return [
        {
            "t_key": key,
            "t_value": value,
            "t_ts": to_micros(new.ts),
            "t_id": new.id,
            "t_cost": None if new.cost is None else to_nanos(new.cost),
        }
        for _, new in changed
        for key, value in sorted(new.tags.items())
    ]


def _rollup_update(table: sa.Table) -> Any:
    """Add a change of unpriced and incomplete counts and of cost to one stored row."""
    c = table.c
    time_column = table.primary_key.columns.values()[1]
    low = c.cost_nanos + sa.bindparam("d_cost", type_=sa.BigInteger)
    # The remainder stays in [0, WIDE_BASE) when the cost goes down too.
    kept = (low % WIDE_BASE + WIDE_BASE) % WIDE_BASE
    return (
        sa.update(table)
        .where(
            c.grain == sa.bindparam("k_grain"),
            time_column == sa.bindparam("k_start"),
            c.dims_key == sa.bindparam("k_dims"),
        )
        .values(
            unpriced_calls=c.unpriced_calls + sa.bindparam("d_unpriced", type_=sa.BigInteger),
            incomplete_calls=c.incomplete_calls + sa.bindparam("d_incomplete", type_=sa.BigInteger),
            cost_nanos=kept,
            cost_nanos_e9=c.cost_nanos_e9
            + sa.bindparam("d_cost_e9", type_=sa.BigInteger)
            + (low - kept) // WIDE_BASE,
        )
    )


_ROLLUP_UPDATES = {table.name: _rollup_update(table) for table in (rollups, daily_rollups)}


def _rollup_moves(
    changed: Sequence[tuple[UsageEvent, UsageEvent]],
) -> dict[str, list[dict[str, int | str]]]:
    """Per rollup table, the change of each row the changed events are counted in."""
    before = rollup_rows(old for old, _ in changed)
    after = rollup_rows(new for _, new in changed)
    out: dict[str, list[dict[str, int | str]]] = {}
    for name, rows in before.items():
        moved: dict[tuple[Any, ...], list[int]] = {}
        for row, sign in [(r, -1) for r in rows] + [(r, 1) for r in after[name]]:
            key = tuple(row[i] for i in _KEY)
            found = moved.setdefault(key, [0] * len(_MOVED))
            for at, index in enumerate(_MOVED):
                found[at] += sign * row[index]
        out[name] = [
            {
                "k_grain": key[0],
                "k_start": key[1],
                "k_dims": key[2],
                "d_unpriced": delta[0],
                "d_incomplete": delta[1],
                "d_cost": delta[2],
                "d_cost_e9": delta[3],
            }
            # In key order, so two writers never wait on each other's rows in a cycle.
            for key, delta in sorted(moved.items())
            if any(delta)
        ]
    return out


class RepriceRows:
    """The store's statements of a reprice (a part of :class:`~llmledger.store.SqlStore`)."""

    def _connect(self, *, write: bool = False) -> Connection:  # pragma: no cover - SqlStore's
        raise NotImplementedError

    def reprice_job(self, key: str) -> RepriceJob | None:
        """The saved progress of a reprice, or None when there is none.

        Example:
            >>> from llmledger.store import open_store
            >>> open_store("sqlite://").reprice_job("k") is None
            True
        """
        with self._connect() as conn:
            row = conn.execute(sa.select(reprice_jobs).where(reprice_jobs.c.key == key)).first()
        return None if row is None else _job(row)

    def start_reprice(
        self, key: str, spec: str, *, now: datetime, restart: bool = False
    ) -> RepriceJob:
        """The job of ``key``: an unfinished one is resumed, else it starts over.

        Args:
            key: What identifies the job (the caller hashes its range and filters).
            spec: The range and filters as text, kept for people.
            now: The time the job (re)starts.
            restart: Start over even when an unfinished job has progress.

        Example:
            >>> from datetime import UTC, datetime
            >>> from llmledger.store import open_store
            >>> job = open_store("sqlite://").start_reprice(
            ...     "k", "all events", now=datetime(2025, 1, 1, tzinfo=UTC))
            >>> job.after, job.batches, job.finished
            (None, 0, None)
        """
        micros = to_micros(now)
        fresh = {
            "spec": spec,
            "after_ts_us": None,
            "after_id": None,
            "state": None,
            "batches": 0,
            "started_us": micros,
            "updated_us": micros,
            "finished_us": None,
        }
        with self._connect(write=True) as conn, conn.begin():
            table = reprice_jobs
            row = conn.execute(sa.select(table).where(table.c.key == key).with_for_update()).first()
            if row is None:
                conn.execute(table.insert().values(key=key, **fresh))
            elif restart or row.finished_us is not None:
                conn.execute(table.update().where(table.c.key == key).values(**fresh))
            else:
                return _job(row)
            return _job(conn.execute(sa.select(table).where(table.c.key == key)).one())

    def reprice_batch(
        self, key: str, query: Query, step: RepriceStep, *, limit: int, now: datetime
    ) -> RepriceBatch:
        """Reprice the next batch of a started job in one transaction.

        The next ``limit`` events of the query's range and filters older than the
        job's last one are read, given to ``step`` with the job's state, and each
        event whose cost ``step`` changed is updated with its rollup rows; the
        job's progress and the state ``step`` returned are saved in the same
        transaction.  A batch shorter than ``limit`` finishes the job.

        Raises:
            StoreError: when the job was never started, or the database fails
                (nothing of the batch is then kept).
        """
        with self._connect(write=True) as conn, conn.begin():
            table = reprice_jobs
            row = conn.execute(sa.select(table).where(table.c.key == key).with_for_update()).first()
            if row is None:
                raise StoreError(f"no reprice job {key!r}; start it first")
            job = _job(row)
            if job.finished is not None:
                return RepriceBatch(job, 0, ())
            locked = conn.dialect.name == "postgresql"
            page = read_event_page(conn, query, limit=limit, before=job.after, lock=locked)
            repriced, state = step(page, job.state)
            if len(repriced) != len(page):
                raise StoreError("a reprice step must return one event per event it was given")
            changed = tuple(
                (old, new)
                for old, new in zip(page, repriced, strict=True)
                if old.id == new.id and cost_changed(old, new)
            )
            if changed:
                conn.execute(_UPDATE_EVENT, [_event_values(new) for _, new in changed])
                tagged = _tag_values(changed)
                if tagged:
                    conn.execute(_UPDATE_TAG, tagged)
                for name, moves in _rollup_moves(changed).items():
                    if moves:
                        conn.execute(_ROLLUP_UPDATES[name], moves)
            micros = to_micros(now)
            values: dict[str, Any] = {
                "state": state,
                "batches": job.batches + 1,
                "updated_us": micros,
            }
            if page:
                values["after_ts_us"] = to_micros(page[-1].ts)
                values["after_id"] = page[-1].id
            if len(page) < limit:
                values["finished_us"] = micros
            conn.execute(table.update().where(table.c.key == key).values(**values))
            after = _job(conn.execute(sa.select(table).where(table.c.key == key)).one())
        return RepriceBatch(after, len(page), changed)
