"""Keeping the rollups: upserted as events are written, rebuilt from the raw events.

The store calls :func:`apply_rollups` inside its write transaction with the
events it has just inserted (never duplicates), so rollups commit or roll back
with them.  The database aggregates the batch itself: one ``INSERT … SELECT …
ON CONFLICT DO UPDATE`` per rollup table reads the new events back by id and
adds their groups, at every grain, to the stored rows.  :func:`rebuild_rollups`
recomputes a range entirely in SQL: the hourly rows from the events, the daily
rows from the hourly ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from llmledger.events import UsageEvent
from llmledger.query.aggregate import COUNT_FIELDS, STATE_FIELDS
from llmledger.query.compile import event_state_columns, rollup_state_columns
from llmledger.query.periods import DAY_US, HOUR_US, to_us
from llmledger.query.tables import (
    DAILY_GRAINS,
    GRAINS,
    ROLLUP_DIMENSIONS,
    daily_rollups,
    dims_key_sql,
    rollups,
)
from llmledger.store.schema import events
from llmledger.usage import BUCKETS

__all__ = ["ROW_COLUMNS", "apply_rollups", "rebuild_rollups"]

#: Columns of a rollup row (the period start is ``hour_us`` or ``day_us``).
ROW_COLUMNS: tuple[str, ...] = ("grain", "start_us", "dims_key", *ROLLUP_DIMENSIONS, *STATE_FIELDS)

_ADDED = (*COUNT_FIELDS, "cost_nanos", "duration_ms_sum", "ttft_ms_sum")
_ROW_ORDER = ("grain", "start_us", "dims_key")


def _batch_source(dialect: str) -> sa.CTE:
    """The events whose ids the ``ids`` parameter lists (an array, or JSON text on SQLite)."""
    if dialect == "postgresql":
        ids = sa.bindparam("ids", type_=postgresql.ARRAY(sa.Text))
        where = events.c.id == sa.any_(ids)
    else:
        listed = sa.func.json_each(sa.bindparam("ids", type_=sa.Text)).table_valued("value")
        where = events.c.id.in_(sa.select(listed.c.value))
    needed = {"ts_us", "status", "cost_nanos", "duration_ms", "ttft_ms", *ROLLUP_DIMENSIONS,
              *BUCKETS}
    return sa.select(*(c for c in events.c if c.name in needed)).where(where).cte("batch")


def _upsert_from_batch(table: sa.Table, grains: tuple[int, ...], dialect: str) -> Any:
    """``INSERT … SELECT`` of a batch's rows at ``grains`` into ``table``, adding to stored rows.

    Rows are inserted in key order, so two writers never wait on each other's
    rows in a cycle.
    """
    batch = _batch_source(dialect)
    time_column = table.primary_key.columns.values()[1].name
    period = HOUR_US if time_column == "hour_us" else DAY_US
    start = (batch.c.ts_us - batch.c.ts_us % period).label("start_us")
    selects = []
    for grain in grains:
        names = GRAINS[grain]
        kept = [batch.c[name] for name in names]
        selects.append(
            sa.select(
                sa.literal(grain, sa.SmallInteger).label("grain"),
                start,
                dims_key_sql(kept).label("dims_key"),
                *(
                    batch.c[name] if name in names else sa.null().cast(sa.Text).label(name)
                    for name in ROLLUP_DIMENSIONS
                ),
                *event_state_columns(batch),
            ).group_by(start, *kept)
        )
    rows = sa.union_all(*selects).subquery("rows")
    # WHERE true: SQLite would read the ON of ON CONFLICT as a join constraint otherwise.
    ordered = (
        sa.select(*rows.c).where(sa.true()).order_by(*(rows.c[name] for name in _ROW_ORDER))
    )
    insert: Any = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    insert = insert.from_select(["grain", time_column, *ROW_COLUMNS[2:]], ordered)
    least, greatest = (
        (sa.func.least, sa.func.greatest) if dialect == "postgresql" else (sa.func.min, sa.func.max)
    )
    excluded = insert.excluded
    updates: dict[str, Any] = {name: table.c[name] + excluded[name] for name in _ADDED}
    updates["first_us"] = least(table.c.first_us, excluded.first_us)
    updates["last_us"] = greatest(table.c.last_us, excluded.last_us)
    return insert.on_conflict_do_update(
        index_elements=["grain", time_column, "dims_key"], set_=updates
    )


_UPSERTS = {
    dialect: (
        _upsert_from_batch(rollups, tuple(GRAINS), dialect),
        _upsert_from_batch(daily_rollups, DAILY_GRAINS, dialect),
    )
    for dialect in ("sqlite", "postgresql")
}


def apply_rollups(connection: Connection, batch: Iterable[UsageEvent]) -> None:
    """Add newly inserted events to the hourly and daily rollups, in the caller's transaction.

    Call it with exactly the events the transaction inserted: an event given
    twice (or one that was a duplicate and not inserted) would be counted
    twice.  The database aggregates them itself, reading the events back by id:
    two statements per batch, whatever its size, and no per-event Python work.

    Example:
        >>> from datetime import UTC
        >>> from llmledger.store import open_store
        >>> store = open_store("sqlite://")
        >>> e = UsageEvent(provider="openai", model="gpt-4o",
        ...                ts=datetime(2025, 1, 1, tzinfo=UTC))
        >>> store.write_hooks.clear()  # the store would apply them itself
        >>> store.write([e])
        1
        >>> with store.engine.begin() as conn:
        ...     apply_rollups(conn, [e])
        >>> with store.engine.connect() as conn:
        ...     conn.exec_driver_sql("SELECT grain, calls FROM rollups_hourly").all()
        [(1, 1), (2, 1), (3, 1)]
    """
    ids: Any = [event.id for event in batch]
    if not ids:
        return
    dialect = connection.dialect.name
    if dialect != "postgresql":
        ids = json.dumps(ids)
    for statement in _UPSERTS[dialect]:
        connection.execute(statement, {"ids": ids})


def _floor(moment: datetime | None, period_us: int) -> int | None:
    if moment is None:
        return None
    micros = to_us(moment)
    return micros - micros % period_us


def _ceil(moment: datetime | None, period_us: int) -> int | None:
    if moment is None:
        return None
    micros = to_us(moment)
    return micros + (-micros % period_us)


def _in_range(column: Any, start: int | None, end: int | None) -> list[Any]:
    return [
        *(() if start is None else (column >= start,)),
        *(() if end is None else (column < end,)),
    ]


def rebuild_rollups(
    target: Engine | Connection | Any,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Recompute the rollups of whole hours (and whole days) from the raw events, in SQL.

    The range is widened to whole UTC hours for the hourly rollups, then to
    whole UTC days for the daily rollups, which are summed from the hourly ones.
    On PostgreSQL the rollup tables are locked for the rebuild so that
    concurrent writes are neither lost nor counted twice; SQLite's write lock
    does the same.

    Args:
        target: A store (anything with ``.engine``), an engine, or a connection
            (then the caller owns the transaction).
        since: Start of the range (aware), or None for the beginning.
        until: End of the range (aware, exclusive), or None for no end.

    Returns:
        How many rollup rows (hourly and daily) the widened range now has.

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
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "LOCK TABLE rollups_hourly, rollups_daily IN EXCLUSIVE MODE"
        )
    start, end = _floor(since, HOUR_US), _ceil(until, HOUR_US)
    connection.execute(sa.delete(rollups).where(*_in_range(rollups.c.hour_us, start, end)))
    hour = (events.c.ts_us - events.c.ts_us % HOUR_US).label("hour_us")
    full = max(GRAINS)
    dims = [events.c[name] for name in ROLLUP_DIMENSIONS]
    select_full = (
        sa.select(sa.literal(full, sa.SmallInteger), hour, dims_key_sql(dims), *dims,
                  *event_state_columns())
        .where(*_in_range(events.c.ts_us, start, end))
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
            .where(source.c.grain == full, *_in_range(source.c.hour_us, start, end))
            .group_by(source.c.hour_us, *kept)
        )
        target_columns = ["grain", "hour_us", "dims_key", *names, *STATE_FIELDS]
        connection.execute(sa.insert(rollups).from_select(target_columns, select_grain))
    counted = sa.select(sa.func.count()).select_from(rollups)
    total = int(connection.execute(counted.where(*_in_range(rollups.c.hour_us, start, end)))
                .scalar_one())
    return total + _rebuild_daily(connection, _floor(since, DAY_US), _ceil(until, DAY_US))


def _rebuild_daily(connection: Connection, start: int | None, end: int | None) -> int:
    """Recompute the daily rows of whole UTC days from the hourly rows of those days."""
    days = daily_rollups
    connection.execute(sa.delete(days).where(*_in_range(days.c.day_us, start, end)))
    hourly = rollups.alias("hourly")
    day = (hourly.c.hour_us - hourly.c.hour_us % DAY_US).label("day_us")
    # Within a grain dims_key identifies the values, and the others are NULL.
    keys = [hourly.c.grain, day, hourly.c.dims_key, *(hourly.c[n] for n in ROLLUP_DIMENSIONS)]
    select = (
        sa.select(*keys, *rollup_state_columns(hourly))
        .where(hourly.c.grain.in_(DAILY_GRAINS), *_in_range(hourly.c.hour_us, start, end))
        .group_by(*keys)
    )
    columns = ["grain", "day_us", "dims_key", *ROLLUP_DIMENSIONS, *STATE_FIELDS]
    connection.execute(sa.insert(days).from_select(columns, select))
    counted = sa.select(sa.func.count()).select_from(days)
    return int(connection.execute(counted.where(*_in_range(days.c.day_us, start, end)))
               .scalar_one())
