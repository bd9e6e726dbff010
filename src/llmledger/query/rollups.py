"""Keeping hourly rollups: upserted as events are written, rebuilt from the raw events.

The store calls :func:`apply_rollups` inside its write transaction with the
events it has just inserted (never duplicates), so rollups commit or roll back
with them.  Per batch the events are aggregated in Python first (one dict
lookup per event, then C-level sums per group), and only the resulting rows are
upserted.  :func:`rebuild_rollups` recomputes a range entirely in SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from llmledger.events import UsageEvent
from llmledger.query.aggregate import COUNT_FIELDS, STATE_FIELDS
from llmledger.query.compile import event_state_columns, rollup_state_columns
from llmledger.query.periods import HOUR_US, to_us
from llmledger.query.tables import GRAINS, ROLLUP_DIMENSIONS, dims_key, dims_key_sql, rollups
from llmledger.store.schema import events
from llmledger.usage import BUCKETS

__all__ = ["apply_rollups", "rebuild_rollups", "rollup_rows"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_dimensions = attrgetter(*ROLLUP_DIMENSIONS)
_bucket_getters = [attrgetter(name) for name in BUCKETS]
_usage = attrgetter("usage")
_status = attrgetter("status")
_cost = attrgetter("cost")
_duration = attrgetter("duration_ms")
_ttft = attrgetter("ttft_ms")
_ADDED = (*COUNT_FIELDS, "cost_nanos", "duration_ms_sum", "ttft_ms_sum")
_GRAIN_INDEXES = {
    grain: [ROLLUP_DIMENSIONS.index(name) for name in names] for grain, names in GRAINS.items()
}


def _full_grain(batch: Iterable[UsageEvent]) -> dict[tuple[Any, ...], list[Any]]:
    """Aggregate events per (hour, every rolled-up dimension) into state lists."""
    grouped: dict[tuple[Any, ...], tuple[list[UsageEvent], list[int]]] = {}
    for event in batch:
        ts_us = (event.ts - _EPOCH) // _MICROSECOND
        key = (ts_us - ts_us % HOUR_US, *_dimensions(event))
        found = grouped.get(key)
        if found is None:
            grouped[key] = found = ([], [])
        found[0].append(event)
        found[1].append(ts_us)
    out: dict[tuple[Any, ...], list[Any]] = {}
    for key, (members, stamps) in grouped.items():
        usages = list(map(_usage, members))
        statuses = list(map(_status, members))
        costs = [c for c in map(_cost, members) if c is not None]
        durations = [d for d in map(_duration, members) if d is not None]
        ttfts = [t for t in map(_ttft, members) if t is not None]
        out[key] = [
            len(members),
            statuses.count("ok"),
            statuses.count("error"),
            len(members) - len(costs),
            *(sum(map(get, usages)) for get in _bucket_getters),
            len(durations),
            len(ttfts),
            # The same rounding as the events table (half to even at the ninth decimal).
            sum(int(c.scaleb(9).to_integral_value()) for c in costs),
            float(sum(durations)),
            float(sum(ttfts)),
            min(stamps),
            max(stamps),
        ]
    return out


def _merge_into(target: list[Any], state: list[Any]) -> None:
    last = len(state) - 2
    for index in range(last):
        target[index] += state[index]
    target[last] = min(target[last], state[last])
    target[last + 1] = max(target[last + 1], state[last + 1])


def rollup_rows(batch: Iterable[UsageEvent]) -> list[dict[str, Any]]:
    """The rollup rows (every grain) that a batch of events adds.

    Example:
        >>> from llmledger.usage import Usage
        >>> e = UsageEvent(provider="openai", model="gpt-4o", usage=Usage(input_tokens=5),
        ...                ts=datetime(2025, 1, 1, 10, 30, tzinfo=UTC))
        >>> rows = rollup_rows([e, e.replace(id="other")])
        >>> sorted((r["grain"], r["calls"], r["input_tokens"]) for r in rows)
        [(1, 2, 10), (2, 2, 10), (3, 2, 10)]
    """
    full = _full_grain(batch)
    rows: list[dict[str, Any]] = []
    for grain, indexes in _GRAIN_INDEXES.items():
        if grain == max(GRAINS):
            projected = full
        else:
            projected = {}
            for key, state in full.items():
                short = (key[0], *(key[1 + i] for i in indexes))
                found = projected.get(short)
                if found is None:
                    projected[short] = list(state)
                else:
                    _merge_into(found, state)
        names = GRAINS[grain]
        for key, state in projected.items():
            values = key[1:]
            row: dict[str, Any] = dict.fromkeys(ROLLUP_DIMENSIONS)
            row.update(zip(names, values, strict=True))
            row.update(zip(STATE_FIELDS, state, strict=True))
            row["grain"] = grain
            row["hour_us"] = key[0]
            row["dims_key"] = dims_key(values)
            rows.append(row)
    return rows


def _upsert(dialect: str) -> Any:
    insert: Any = (postgresql if dialect == "postgresql" else sqlite).insert(rollups)
    excluded = insert.excluded
    least, greatest = (sa.func.least, sa.func.greatest) if dialect == "postgresql" else (
        sa.func.min, sa.func.max
    )
    updates: dict[str, Any] = {name: rollups.c[name] + excluded[name] for name in _ADDED}
    updates["first_us"] = least(rollups.c.first_us, excluded.first_us)
    updates["last_us"] = greatest(rollups.c.last_us, excluded.last_us)
    return insert.on_conflict_do_update(
        index_elements=[rollups.c.grain, rollups.c.hour_us, rollups.c.dims_key], set_=updates
    )


def apply_rollups(connection: Connection, batch: Iterable[UsageEvent]) -> int:
    """Add newly inserted events to the hourly rollups, in the caller's transaction.

    Call it with exactly the events the transaction inserted: an event given
    twice (or one that was a duplicate and not inserted) would be counted twice.

    Returns:
        How many rollup rows were upserted.

    Example:
        >>> import sqlalchemy as sa
        >>> from llmledger.store import open_store
        >>> store = open_store("sqlite://")
        >>> e = UsageEvent(provider="openai", model="gpt-4o",
        ...                ts=datetime(2025, 1, 1, tzinfo=UTC))
        >>> with store.engine.begin() as conn:
        ...     apply_rollups(conn, [e])
        3
    """
    rows = rollup_rows(batch)
    if rows:
        # Upsert in key order so two writers never wait on each other's rows in a cycle.
        rows.sort(key=lambda r: (r["grain"], r["hour_us"], r["dims_key"]))
        connection.execute(_upsert(connection.dialect.name), rows)
    return len(rows)


def _hour_floor(moment: datetime) -> int:
    micros = to_us(moment)
    return micros - micros % HOUR_US


def _hour_ceil(moment: datetime) -> int:
    micros = to_us(moment)
    return micros + (-micros % HOUR_US)


def rebuild_rollups(
    target: Engine | Connection | Any,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Recompute the rollups of whole hours from the raw events, in SQL.

    The range is widened to whole UTC hours.  On PostgreSQL the rollup table is
    locked for the rebuild so that concurrent writes are neither lost nor
    counted twice; SQLite's write lock does the same.

    Args:
        target: A store (anything with ``.engine``), an engine, or a connection
            (then the caller owns the transaction).
        since: Start of the range (aware), or None for the beginning.
        until: End of the range (aware, exclusive), or None for no end.

    Returns:
        How many rollup rows the range now has.

    Example:
        >>> from llmledger.store import open_store
        >>> rebuild_rollups(open_store("sqlite://"))
        0
    """
    if isinstance(target, Connection):
        return _rebuild(target, since, until)
    engine: Engine = target if isinstance(target, Engine) else target.engine
    with engine.begin() as connection:
        return _rebuild(connection, since, until)


def _rebuild(connection: Connection, since: datetime | None, until: datetime | None) -> int:
    start = None if since is None else _hour_floor(since)
    end = None if until is None else _hour_ceil(until)

    def in_range(column: Any) -> list[Any]:
        return [
            *(() if start is None else (column >= start,)),
            *(() if end is None else (column < end,)),
        ]

    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("LOCK TABLE rollups_hourly IN EXCLUSIVE MODE")
    connection.execute(sa.delete(rollups).where(*in_range(rollups.c.hour_us)))
    hour = (events.c.ts_us - events.c.ts_us % HOUR_US).label("hour_us")
    full = max(GRAINS)
    dims = [events.c[name] for name in ROLLUP_DIMENSIONS]
    select_full = (
        sa.select(sa.literal(full, sa.SmallInteger), hour, dims_key_sql(dims), *dims,
                  *event_state_columns())
        .where(*in_range(events.c.ts_us))
        .group_by(hour, *dims)
    )
    columns = ["grain", "hour_us", "dims_key", *ROLLUP_DIMENSIONS, *STATE_FIELDS]
    connection.execute(sa.insert(rollups).from_select(columns, select_full))
    source = rollups.alias("finest")
    for grain, names in GRAINS.items():
        if grain == full:
            continue
        kept = [source.c[name] for name in names]
        select_grain = (
            sa.select(sa.literal(grain, sa.SmallInteger), source.c.hour_us, dims_key_sql(kept),
                      *kept, *rollup_state_columns(source))
            .where(source.c.grain == full, *in_range(source.c.hour_us))
            .group_by(source.c.hour_us, *kept)
        )
        target_columns = ["grain", "hour_us", "dims_key", *names, *STATE_FIELDS]
        connection.execute(sa.insert(rollups).from_select(target_columns, select_grain))
    counted = sa.select(sa.func.count()).select_from(rollups).where(*in_range(rollups.c.hour_us))
    return int(connection.execute(counted).scalar_one())
