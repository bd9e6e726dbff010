"""Keeping the rollups: upserted as events are written, rebuilt from the raw events.

The store runs :func:`apply_rollups` inside its write transaction with the
events it has just inserted (never duplicates), so rollups commit or roll back
with them.  PostgreSQL aggregates the batch itself (one prepared statement reads
the new events back by id and upserts the hourly and the daily rows); on SQLite
the batch is aggregated in Python and only the resulting rows are upserted.
:func:`rebuild_rollups` recomputes a range entirely in SQL: the hourly rows
from the events, the daily rows from the hourly ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from itertools import chain
from operator import add, attrgetter, itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from llmledger.core.events import UsageEvent
from llmledger.core.usage import BUCKETS
from llmledger.query.aggregate import COUNT_FIELDS, STATE_FIELDS
from llmledger.query.periods import DAY_US, HOUR_US, to_us
from llmledger.query.plan import DAILY_GRAINS, FULL_GRAIN, GRAINS, ROLLUP_DIMENSIONS
from llmledger.store.compile import event_state_columns, rollup_state_columns
from llmledger.store.rollup_tables import (
    STORED_FIELDS,
    WIDE_BASE,
    WIDE_FIELDS,
    daily_rollups,
    dims_key,
    dims_key_sql,
    rollups,
    split_wide,
)
from llmledger.store.schema import events

__all__ = ["ROW_COLUMNS", "apply_rollups", "rebuild_rollups", "rollup_rows"]

#: Columns of a rollup row (the period start is ``hour_us`` or ``day_us``).
ROW_COLUMNS: tuple[str, ...] = ("grain", "start_us", "dims_key", *ROLLUP_DIMENSIONS, *STORED_FIELDS)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_dimensions = attrgetter(*ROLLUP_DIMENSIONS)
_bucket_values = attrgetter(*BUCKETS)
# Stored columns that add as they are (the wide sums carry over; first and last take min and max).
_ADDED = tuple(
    name for name in (*COUNT_FIELDS, "duration_ms_sum", "ttft_ms_sum") if name not in WIDE_FIELDS
)
_SUMMED = STATE_FIELDS.index("first_us")  # state fields before it add
_ROW_KEY = itemgetter(0, 1, 2)
# Per grain: its values from a full (hour, values…) key (None: the full key itself);
# every grain has several dimensions, so itemgetter returns a tuple ...
_PICKS: dict[int, itemgetter[Any] | None] = {
    grain: None
    if names == ROLLUP_DIMENSIONS
    else itemgetter(*(1 + ROLLUP_DIMENSIONS.index(n) for n in names))
    for grain, names in GRAINS.items()
}
# ... and, per rolled-up dimension, where it sits among the grain's values.
_LAYOUTS: dict[int, list[int | None]] = {
    grain: [names.index(n) if n in names else None for n in ROLLUP_DIMENSIONS]
    for grain, names in GRAINS.items()
}


def _full_grain(batch: Iterable[UsageEvent]) -> dict[tuple[Any, ...], list[Any]]:
    """Aggregate events per (hour, every rolled-up dimension) into state lists.

    One pass: each event becomes a state list that is stored, or added into
    the state already stored under its key.  Groups are small when users are
    many (a few calls each), so per-group set-up would cost more than this.
    """
    out: dict[tuple[Any, ...], list[Any]] = {}
    for event in batch:
        ts_us = (event.ts - _EPOCH) // _MICROSECOND
        key = (ts_us - ts_us % HOUR_US, *_dimensions(event))
        status = event.status
        cost = event.cost
        duration = event.duration_ms
        ttft = event.ttft_ms
        state = [
            1,
            1 if status == "ok" else 0,
            1 if status == "error" else 0,
            1 if cost is None else 0,
            1 if event.incomplete_reason and cost is not None else 0,
            *_bucket_values(event.usage),
            0 if duration is None else 1,
            0 if ttft is None else 1,
            # The same rounding as the events table (half to even at the ninth decimal).
            0 if cost is None else int(cost.scaleb(9).to_integral_value()),
            0.0 if duration is None else float(duration),
            0.0 if ttft is None else float(ttft),
            ts_us,
            ts_us,
        ]
        found = out.get(key)
        if found is None:
            out[key] = state
        else:
            found[:_SUMMED] = map(add, found[:_SUMMED], state)
            if ts_us < found[_SUMMED]:
                found[_SUMMED] = ts_us
            if ts_us > found[_SUMMED + 1]:
                found[_SUMMED + 1] = ts_us
    return out


def _project(
    states: dict[tuple[Any, ...], list[Any]], pick: itemgetter[Any] | None, period_us: int
) -> dict[tuple[Any, ...], list[Any]]:
    """Re-key ``(start, values…)`` states to a period and (with ``pick``) fewer values.

    The states given are never changed: a key that maps one to one shares its
    state list, a key that merges gets a new list, then merges into it in place.
    """
    out: dict[tuple[Any, ...], list[Any]] = {}
    owned: set[tuple[Any, ...]] = set()
    for key, state in states.items():
        start = key[0] - key[0] % period_us
        short = (start, *(key[1:] if pick is None else pick(key)))
        found = out.get(short)
        if found is None:
            out[short] = state
            continue
        if short not in owned:
            out[short] = found = list(found)
            owned.add(short)
        found[:_SUMMED] = map(add, found[:_SUMMED], state)
        if state[_SUMMED] < found[_SUMMED]:
            found[_SUMMED] = state[_SUMMED]
        if state[_SUMMED + 1] > found[_SUMMED + 1]:
            found[_SUMMED + 1] = state[_SUMMED + 1]
    return out


def rollup_rows(batch: Iterable[UsageEvent]) -> dict[str, list[tuple[Any, ...]]]:
    """The rollup rows that a batch of events adds, per rollup table.

    Each row is a tuple in :data:`ROW_COLUMNS` order: grain, period start (µs),
    ``dims_key``, every rolled-up dimension (None outside the grain), then the
    state fields.  Hourly rows are made for every grain, daily rows for
    :data:`~llmledger.query.plan.DAILY_GRAINS`.

    Example:
        >>> from llmledger.core.usage import Usage
        >>> e = UsageEvent(provider="openai", model="gpt-4o", usage=Usage(input_tokens=5),
        ...                ts=datetime(2025, 1, 1, 10, 30, tzinfo=UTC))
        >>> rows = rollup_rows([e, e.replace(id="other")])
        >>> calls, tokens = ROW_COLUMNS.index("calls"), ROW_COLUMNS.index("input_tokens")
        >>> for name, found in rows.items():
        ...     print(name, sorted((r[0], r[calls], r[tokens]) for r in found))
        rollups_daily [(1, 2, 10), (2, 2, 10), (4, 2, 10)]
        rollups_hourly [(1, 2, 10), (2, 2, 10), (3, 2, 10), (4, 2, 10)]
    """
    full = _full_grain(batch)
    hourly: list[tuple[Any, ...]] = []
    daily: list[tuple[Any, ...]] = []
    for grain, pick in _PICKS.items():
        layout = _LAYOUTS[grain]
        states = full if pick is None else _project(full, pick, HOUR_US)
        levels = [(hourly, states)]
        if grain in DAILY_GRAINS:
            levels.append((daily, _project(states, None, DAY_US)))
        for rows, found in levels:
            for key, state in found.items():
                values = key[1:]
                dims = [None if i is None else values[i] for i in layout]
                rows.append((grain, key[0], dims_key(values), *dims, *split_wide(state)))
    return {daily_rollups.name: daily, rollups.name: hourly}


def _upsert_sql(table: sa.Table, rows: int) -> str:
    """SQLite's ``INSERT … ON CONFLICT DO UPDATE`` adding each of ``rows`` rows' state to
    the stored one."""
    name = table.name
    time = table.primary_key.columns.values()[1].name
    updates = [f'"{c}" = {name}."{c}" + excluded."{c}"' for c in _ADDED]
    for c in WIDE_FIELDS:
        low = f'({name}."{c}" + excluded."{c}")'
        updates.append(f'"{c}" = {low} % {WIDE_BASE}')
        updates.append(f'"{c}_e9" = {name}."{c}_e9" + excluded."{c}_e9" + {low} / {WIDE_BASE}')
    updates.append(f'"first_us" = min({name}."first_us", excluded."first_us")')
    updates.append(f'"last_us" = max({name}."last_us", excluded."last_us")')
    columns = ", ".join(f'"{c}"' for c in (ROW_COLUMNS[0], time, *ROW_COLUMNS[2:]))
    row = f"({', '.join(['?'] * len(ROW_COLUMNS))})"
    return (
        f"INSERT INTO {name} ({columns}) VALUES {', '.join([row] * rows)} "
        f'ON CONFLICT ("grain", "{time}", "dims_key") DO UPDATE SET {", ".join(updates)}'
    )


# Rows per SQLite upsert statement (its bound values stay well under SQLite's limit).
_ROWS_PER_UPSERT = 256
_TABLES = {table.name: table for table in (rollups, daily_rollups)}
_row_upserts: dict[tuple[str, int], str] = {}


def _upsert_rows(connection: Connection, name: str, rows: list[tuple[Any, ...]]) -> None:
    """Upsert rows into a rollup table on SQLite with multi-row statements.

    ``executemany`` gives the GIL away and takes it back at every row, and behind
    a caller thread busy in Python each take waits for the switch interval; one
    statement per ``_ROWS_PER_UPSERT`` rows crosses into SQLite a few times per
    batch.  Row counts are powers of two (the remainder split into them), so a
    few statements serve every batch.
    """
    start = 0
    total = len(rows)
    while start < total:
        size = min(_ROWS_PER_UPSERT, 1 << ((total - start).bit_length() - 1))
        sql = _row_upserts.get((name, size))
        if sql is None:
            sql = _row_upserts[(name, size)] = _upsert_sql(_TABLES[name], size)
        connection.exec_driver_sql(sql, tuple(chain.from_iterable(rows[start : start + size])))
        start += size


def _batch_of(ids: Any) -> Any:
    """The new events' columns that rollups read: the events whose ids ``ids`` lists."""
    needed = {
        "ts_us",
        "status",
        "cost_nanos",
        "price_status",
        "duration_ms",
        "ttft_ms",
        *ROLLUP_DIMENSIONS,
        *BUCKETS,
    }
    return (
        sa.select(*(c for c in events.c if c.name in needed))
        .where(events.c.id == sa.any_(ids))
        .cte("batch")
    )


def _upsert_from_batch(table: sa.Table, grains: tuple[int, ...], batch: Any) -> Any:
    """PostgreSQL's ``INSERT … SELECT`` of a batch's rows at ``grains`` into ``table``.

    Each group's state is added to the stored row.  Rows are inserted in key
    order, so two writers never wait on each other's rows in a cycle.
    """
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
    ordered = sa.select(*rows.c).order_by(rows.c.grain, rows.c.start_us, rows.c.dims_key)
    insert = postgresql.insert(table).from_select(["grain", time_column, *ROW_COLUMNS[2:]], ordered)
    excluded = insert.excluded
    updates: dict[str, Any] = {name: table.c[name] + excluded[name] for name in _ADDED}
    for name in WIDE_FIELDS:
        low = table.c[name] + excluded[name]
        updates[name] = low % WIDE_BASE
        updates[f"{name}_e9"] = table.c[f"{name}_e9"] + excluded[f"{name}_e9"] + low // WIDE_BASE
    updates["first_us"] = sa.func.least(table.c.first_us, excluded.first_us)
    updates["last_us"] = sa.func.greatest(table.c.last_us, excluded.last_us)
    return insert.on_conflict_do_update(
        index_elements=["grain", time_column, "dims_key"], set_=updates
    )


def _batch_upsert_sql() -> str:
    """The one statement that adds a batch to the hourly and the daily rollups
    (PostgreSQL), as psycopg's text with one parameter, ``%(ids)s``: the new
    events' ids.

    The batch is read once; the hourly upsert runs as a data-modifying CTE
    before the daily one, so every writer takes the rows' locks in the same
    order.  Every other value is written into the text: the statement is
    prepared once per connection and each batch sends only the ids (with a
    bound parameter per constant, it sent hundreds).
    """
    batch = _batch_of(sa.literal_column(f"{_IDS}::text[]"))
    hourly = _upsert_from_batch(rollups, tuple(GRAINS), batch).cte("hourly")
    daily = _upsert_from_batch(daily_rollups, DAILY_GRAINS, batch).add_cte(hourly)
    compiled = daily.compile(
        dialect=postgresql.psycopg.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    # The dialect doubles every "%" for the driver, the placeholder's too.
    return str(compiled).replace(_IDS.replace("%", "%%"), _IDS)


_IDS = "%(ids)s"
_BATCH_UPSERT_SQL = _batch_upsert_sql()


def apply_rollups(connection: Connection, batch: Iterable[UsageEvent]) -> None:
    """Add newly inserted events to the hourly and daily rollups, in the caller's transaction.

    Call it with exactly the events the transaction inserted: an event given
    twice (or one that was a duplicate and not inserted) would be counted twice.

    Each database gets the faster of two ways, as measured by the write and
    ingest benchmarks.  On PostgreSQL the server aggregates the batch itself,
    reading the new events back by id: one prepared statement per batch, whose
    only parameter is the ids, and no per-event Python work.  On SQLite, where
    the aggregation would run in the same process anyway, the events are
    aggregated in Python (one dict lookup and one merge per event) and only the
    resulting rows are upserted, as tuples straight to the driver's
    ``executemany``.

    Example:
        >>> from llmledger.store import open_store
        >>> store = open_store("sqlite://")
        >>> e = UsageEvent(provider="openai", model="gpt-4o",
        ...                ts=datetime(2025, 1, 1, tzinfo=UTC))
        >>> store.write_hooks.clear()  # the store would apply them itself
        >>> store.write([e]).count
        1
        >>> with store.engine.begin() as conn:
        ...     apply_rollups(conn, [e])
        >>> with store.engine.connect() as conn:
        ...     conn.exec_driver_sql(
        ...         "SELECT grain, calls FROM rollups_hourly ORDER BY grain").all()
        [(1, 1), (2, 1), (3, 1), (4, 1)]
    """
    if connection.dialect.name == "postgresql":
        ids = [event.id for event in batch]
        if ids:
            cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor:
                # Prepared on the connection's first batch: the long text is
                # planned once, and psycopg keeps it for the session.
                cursor.execute(_BATCH_UPSERT_SQL, {"ids": _text_array(ids)}, prepare=True)
        return
    for name, rows in rollup_rows(batch).items():
        if rows:
            # Upsert in key order so two writers never wait on each other's rows in a cycle.
            rows.sort(key=_ROW_KEY)
            _upsert_rows(connection, name, rows)


def _text_array(values: list[str]) -> str:
    """PostgreSQL's literal of a ``text[]``: one string to send, where psycopg
    adapts a list item by item in Python.

    Example:
        >>> _text_array(["01JA", 'say "hi"', "a\\\\b"])
        '{"01JA","say \\\\"hi\\\\"","a\\\\\\\\b"}'
    """
    if "".join(values).isalnum():  # ids as llmledger makes them (ULIDs)
        return '{"' + '","'.join(values) + '"}'
    return (
        "{"
        + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
        + "}"
    )


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
    connection: Connection, since: datetime | None = None, until: datetime | None = None
) -> int:
    """Recompute the rollups of whole hours (and whole days) from the raw events, in SQL.

    The range is widened to whole UTC hours for the hourly rollups, then to
    whole UTC days for the daily rollups, which are summed from the hourly ones.
    On PostgreSQL the rollup tables are locked for the rebuild so that
    concurrent writes are neither lost nor counted twice; SQLite's write lock
    does the same.  :meth:`llmledger.store.SqlStore.rebuild_rollups` runs it in
    a transaction of its own.

    Args:
        connection: A connection in a transaction the caller commits.
        since: Start of the range (aware), or None for the beginning.
        until: End of the range (aware, exclusive), or None for no end.

    Returns:
        How many rollup rows (hourly and daily) the widened range now has.

    Example:
        >>> from llmledger.store import open_store
        >>> with open_store("sqlite://").engine.begin() as conn:
        ...     rebuild_rollups(conn)
        0
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("LOCK TABLE rollups_hourly, rollups_daily IN EXCLUSIVE MODE")
    start, end = _floor(since, HOUR_US), _ceil(until, HOUR_US)
    connection.execute(sa.delete(rollups).where(*_in_range(rollups.c.hour_us, start, end)))
    hour = (events.c.ts_us - events.c.ts_us % HOUR_US).label("hour_us")
    full = FULL_GRAIN
    dims = [events.c[name] for name in ROLLUP_DIMENSIONS]
    select_full = (
        sa.select(
            sa.literal(full, sa.SmallInteger),
            hour,
            dims_key_sql(dims),
            *dims,
            *event_state_columns(),
        )
        .where(*_in_range(events.c.ts_us, start, end))
        .group_by(hour, *dims)
    )
    columns = ["grain", "hour_us", "dims_key", *ROLLUP_DIMENSIONS, *STORED_FIELDS]
    connection.execute(sa.insert(rollups).from_select(columns, select_full))
    source = rollups.alias("finest")
    for grain, names in GRAINS.items():
        if grain == full:
            continue
        kept = [source.c[name] for name in names]
        select_grain = (
            sa.select(
                sa.literal(grain, sa.SmallInteger),
                source.c.hour_us,
                dims_key_sql(kept),
                *kept,
                *rollup_state_columns(source),
            )
            .where(source.c.grain == full, *_in_range(source.c.hour_us, start, end))
            .group_by(source.c.hour_us, *kept)
        )
        target_columns = ["grain", "hour_us", "dims_key", *names, *STORED_FIELDS]
        connection.execute(sa.insert(rollups).from_select(target_columns, select_grain))
    counted = sa.select(sa.func.count()).select_from(rollups)
    total = int(
        connection.execute(counted.where(*_in_range(rollups.c.hour_us, start, end))).scalar_one()
    )
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
    columns = ["grain", "day_us", "dims_key", *ROLLUP_DIMENSIONS, *STORED_FIELDS]
    connection.execute(sa.insert(days).from_select(columns, select))
    counted = sa.select(sa.func.count()).select_from(days)
    return int(
        connection.execute(counted.where(*_in_range(days.c.day_us, start, end))).scalar_one()
    )
