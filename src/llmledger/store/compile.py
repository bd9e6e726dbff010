"""Compiling the pieces of a query plan into SQLAlchemy Core statements over events or rollups.

Both sources yield the same columns: an optional time slot index, the grouped
dimension values, then the state fields of :mod:`llmledger.query.aggregate` as
stored (``STORED_FIELDS``: wide sums in two columns, which
:func:`~llmledger.store.rollup_tables.state_values` joins before
:class:`llmledger.query.report.Folder` folds them).
The statements are plain Core and run unchanged on SQLite and PostgreSQL;
integer division (``//``) and ``||`` are the only operators that matter, and
SQLAlchemy renders both for each dialect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from llmledger.core.usage import BUCKETS
from llmledger.query.aggregate import STATE_FIELDS
from llmledger.query.plan import Piece
from llmledger.query.spec import Filter, tag_key
from llmledger.store.errors import InvalidQueryError
from llmledger.store.rollup_tables import WIDE_BASE, WIDE_FIELDS, rollup_table, rollups
from llmledger.store.schema import event_tags, events

__all__ = [
    "TIMELINE_COLUMNS",
    "compile_piece",
    "compile_timeline",
    "compile_values",
    "event_state_columns",
    "prepared_piece",
    "quantile_columns",
    "rollup_state_columns",
]

#: Columns of a timeline row, in order.
TIMELINE_COLUMNS: tuple[str, ...] = (
    "id",
    "ts_us",
    "provider",
    "model",
    "operation",
    "status",
    "tenant",
    "user",
    "feature",
    "session",
    "input_tokens",
    "cache_read_tokens",
    "output_tokens",
    "cost_nanos",
    "duration_ms",
    "ttft_ms",
)


def _count_if(condition: Any) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def _wide(low: Any, high: Any, name: str) -> list[Any]:
    """A wide sum's two columns from sums of remainders and of multiples of ``WIDE_BASE``.

    Both sums are cast to 64 bits (they are far from its limit; see
    :mod:`llmledger.store.rollup_tables`), so PostgreSQL divides integers as
    SQLite does, and the remainder is carried over: stored remainders stay below
    ``WIDE_BASE`` however many rows are merged.
    """
    low = sa.cast(sa.func.coalesce(low, 0), sa.BigInteger)
    high = sa.cast(sa.func.coalesce(high, 0), sa.BigInteger)
    return [(low % WIDE_BASE).label(name), (high + low // WIDE_BASE).label(f"{name}_e9")]


def event_state_columns(table: sa.FromClause = events) -> list[Any]:
    """Aggregates over events, in ``STORED_FIELDS`` order."""
    c = table.c
    return [
        sa.func.count().label("calls"),
        _count_if(c.status == "ok").label("successes"),
        _count_if(c.status == "error").label("errors"),
        _count_if(c.cost_nanos.is_(None)).label("unpriced_calls"),
        _count_if(c.price_status == "incomplete").label("incomplete_calls"),
        *(
            column
            for name in BUCKETS
            for column in _wide(
                sa.func.sum(c[name] % WIDE_BASE), sa.func.sum(c[name] // WIDE_BASE), name
            )
        ),
        sa.func.count(c.duration_ms).label("duration_count"),
        sa.func.count(c.ttft_ms).label("ttft_count"),
        *_wide(
            sa.func.sum(c.cost_nanos % WIDE_BASE),
            sa.func.sum(c.cost_nanos // WIDE_BASE),
            "cost_nanos",
        ),
        sa.func.coalesce(sa.func.sum(c.duration_ms), 0.0).label("duration_ms_sum"),
        sa.func.coalesce(sa.func.sum(c.ttft_ms), 0.0).label("ttft_ms_sum"),
        sa.func.min(c.ts_us).label("first_us"),
        sa.func.max(c.ts_us).label("last_us"),
    ]


def tag_state_columns() -> list[Any]:
    """Aggregates over a tag's rows, in ``STORED_FIELDS`` order: calls, unpriced calls,
    cost and times; the rest (which tag rows do not hold) is 0."""
    c = event_tags.c
    cost = _wide(
        sa.func.sum(c.cost_nanos % WIDE_BASE), sa.func.sum(c.cost_nanos // WIDE_BASE), "cost_nanos"
    )
    found = {
        "calls": sa.func.count().label("calls"),
        "unpriced_calls": _count_if(c.cost_nanos.is_(None)).label("unpriced_calls"),
        "cost_nanos": cost[0],
        "cost_nanos_e9": cost[1],
        "first_us": sa.func.min(c.ts_us).label("first_us"),
        "last_us": sa.func.max(c.ts_us).label("last_us"),
    }
    return [
        found.get(column.name)
        if column.name in found
        else sa.literal_column("0.0" if column.name.endswith("_sum") else "0").label(column.name)
        for column in event_state_columns()
    ]


def rollup_state_columns(table: sa.FromClause = rollups) -> list[Any]:
    """Aggregates over rollup rows, in ``STORED_FIELDS`` order."""
    c = table.c
    columns: list[Any] = []
    for name in STATE_FIELDS:
        if name in WIDE_FIELDS:
            columns += _wide(sa.func.sum(c[name]), sa.func.sum(c[f"{name}_e9"]), name)
        elif name == "first_us":
            columns.append(sa.func.min(c.first_us).label(name))
        elif name == "last_us":
            columns.append(sa.func.max(c.last_us).label(name))
        else:
            columns.append(sa.func.sum(c[name]).label(name))
    return columns


def _bound(name: str, value: int) -> Any:
    """A named parameter: statements of the same shape differ only in these values."""
    return sa.bindparam(name, value, type_=sa.BigInteger)


def _values_clause(column: Any, values: Sequence[str | None]) -> Any:
    present = [v for v in values if v is not None]
    parts = []
    if present:
        parts.append(column.in_(present))
    if len(present) != len(values):
        parts.append(column.is_(None))
    return sa.or_(*parts)


def _tag_clause(key: str, values: Sequence[str | None], piece: Piece) -> Any:
    def tagged(*conditions: Any) -> Any:
        query = sa.select(event_tags.c.event_id).where(event_tags.c.key == key, *conditions)
        # The tag rows carry the event's time, so the (key, value, ts_us) index narrows it.
        if piece.start_us is not None:
            query = query.where(event_tags.c.ts_us >= _bound("start_us", piece.start_us))
        if piece.end_us is not None:
            query = query.where(event_tags.c.ts_us < _bound("end_us", piece.end_us))
        return query

    present = [v for v in values if v is not None]
    parts = []
    if present:
        parts.append(events.c.id.in_(tagged(event_tags.c.value.in_(present))))
    if len(present) != len(values):
        parts.append(events.c.id.not_in(tagged()))
    return sa.or_(*parts)


def _source(piece: Piece) -> tuple[sa.Table, Any]:
    """The table a piece reads and its time column."""
    if piece.tag_rows is not None:
        return event_tags, event_tags.c.ts_us
    if piece.grain is None:
        return events, events.c.ts_us
    return rollup_table(piece.period_us)


def _filter_clause(item: Filter, piece: Piece) -> Any:
    key = tag_key(item.dimension)
    table, _ = _source(piece)
    if piece.tag_rows is not None:  # the planner sends listed values of the piece's key only
        return event_tags.c.value.in_(item.values)
    if piece.grain is not None:
        if key is not None:  # pragma: no cover - the planner never sends tags to rollups
            raise InvalidQueryError("tags are not rolled up")
        clause = _values_clause(table.c[item.dimension], item.values)
    elif key is not None:
        clause = _tag_clause(key, item.values, piece)
    else:
        clause = _values_clause(events.c[item.dimension], item.values)
    if not item.negate:
        return clause
    # A negated filter keeps the calls where the dimension is not set, unless
    # "(none)" is among the values dropped.
    if key is None and None not in item.values:
        return sa.or_(table.c[item.dimension].is_(None), sa.not_(clause))
    return sa.not_(clause)


def _dimension_columns(by: Sequence[str], piece: Piece) -> tuple[list[Any], Any]:
    """Labelled expressions for the grouped dimensions, and the FROM clause."""
    if piece.grain is not None:
        table, _ = _source(piece)
        return [table.c[name].label(name) for name in by], table
    if piece.tag_rows is not None:  # grouped by the piece's tag key, if at all
        return [event_tags.c.value.label(name) for name in by], event_tags
    source: Any = events
    columns: list[Any] = []
    for index, name in enumerate(by):
        key = tag_key(name)
        if name == "tag":
            alias = event_tags.alias(f"t{index}")
            source = source.outerjoin(alias, alias.c.event_id == events.c.id)
            columns.append(sa.type_coerce(alias.c.key + "=" + alias.c.value, sa.Text).label(name))
        elif key is not None:
            alias = event_tags.alias(f"t{index}")
            source = source.outerjoin(
                alias, sa.and_(alias.c.event_id == events.c.id, alias.c.key == key)
            )
            columns.append(alias.c.value.label(name))
        else:
            columns.append(events.c[name].label(name))
    return columns, source


def _where(query: sa.Select[Any], piece: Piece, filters: Sequence[Filter]) -> sa.Select[Any]:
    table, time = _source(piece)
    if piece.grain is not None:
        query = query.where(table.c.grain == piece.grain)
    if piece.tag_rows is not None:
        query = query.where(event_tags.c.key == piece.tag_rows)
    if piece.start_us is not None:
        query = query.where(time >= _bound("start_us", piece.start_us))
    if piece.end_us is not None:
        query = query.where(time < _bound("end_us", piece.end_us))
    for item in filters:
        query = query.where(_filter_clause(item, piece))
    return query


def _slot(piece: Piece) -> list[Any]:
    if piece.slot_us is None:
        return []
    _, time = _source(piece)
    return [(time // piece.slot_us).label("slot")]


#: State fields each metric reads; the others are not computed by the database.
_NEEDS: dict[str, tuple[str, ...]] = {
    "successes": ("successes",),
    "success_rate": ("successes",),
    "errors": ("errors",),
    "error_rate": ("errors",),
    **{name: (name,) for name in BUCKETS},
    "total_tokens": ("input_tokens", "output_tokens"),
    "cost": ("cost_nanos", "unpriced_calls"),
    "cost_per_call": ("cost_nanos", "unpriced_calls"),
    "unpriced_calls": ("unpriced_calls",),
    "incomplete_calls": ("incomplete_calls",),
    "latency_mean": ("duration_ms_sum", "duration_count"),
    "ttft_mean": ("ttft_ms_sum", "ttft_count"),
    "first_seen": ("first_us",),
    "last_seen": ("last_us",),
}


def _only_needed(columns: list[Any], metrics: Sequence[str] | None) -> list[Any]:
    """Replace the aggregates no metric reads by constants (less work for the database)."""
    if metrics is None:
        return columns
    needed = {"calls"}
    for name in metrics:
        needed.update(_NEEDS.get(name, ()))
    return [
        column
        if column.name.removesuffix("_e9") in needed
        else sa.literal_column("NULL" if column.name in ("first_us", "last_us") else "0").label(
            column.name
        )
        for column in columns
    ]


def compile_piece(
    piece: Piece, by: Sequence[str], filters: Sequence[Filter], metrics: Sequence[str] | None = None
) -> sa.Select[Any]:
    """``SELECT [slot,] dims…, state… GROUP BY [slot,] dims`` for one piece.

    With ``metrics``, aggregates that none of them reads are returned as constants.

    Example:
        >>> sql = compile_piece(Piece(1, 0, 3_600_000_000, None), ["model"], [])
        >>> "rollups_hourly" in str(sql)
        True
    """
    dims, source = _dimension_columns(by, piece)
    slot = _slot(piece)
    table, _ = _source(piece)
    if piece.grain is not None:
        state = rollup_state_columns(table)
    else:
        state = tag_state_columns() if piece.tag_rows is not None else event_state_columns()
    state = _only_needed(state, metrics)
    query = sa.select(*slot, *dims, *state).select_from(source)
    query = _where(query, piece, filters)
    keys = [*slot, *dims]
    return query.group_by(*keys) if keys else query


@lru_cache(maxsize=256)
def _shaped_piece(
    shape: Piece, by: tuple[str, ...], filters: tuple[Filter, ...], metrics: tuple[str, ...] | None
) -> sa.Select[Any]:
    return compile_piece(shape, by, filters, metrics)


def prepared_piece(
    piece: Piece, by: Sequence[str], filters: Sequence[Filter], metrics: Sequence[str] | None = None
) -> tuple[sa.Select[Any], dict[str, int]]:
    """:func:`compile_piece`, built once per shape of piece, and the parameters to run it with.

    Building a statement costs more than running it on rollups, and a report
    runs the same few shapes again and again with other times.  The statement
    is shared: execute it with the parameters, never change it.

    Example:
        >>> a, params = prepared_piece(Piece(1, 0, 3_600_000_000, None), ["model"], [])
        >>> b, _ = prepared_piece(Piece(1, 7_200_000_000, 10_800_000_000, None), ["model"], [])
        >>> a is b, params
        (True, {'start_us': 0, 'end_us': 3600000000})
    """
    shape = replace(
        piece,
        start_us=None if piece.start_us is None else 0,
        end_us=None if piece.end_us is None else 0,
    )
    params = {
        name: value
        for name, value in (("start_us", piece.start_us), ("end_us", piece.end_us))
        if value is not None
    }
    frozen_metrics = None if metrics is None else tuple(metrics)
    return _shaped_piece(shape, tuple(by), tuple(filters), frozen_metrics), params


def compile_values(
    piece: Piece, by: Sequence[str], filters: Sequence[Filter], *, grouped: bool = False
) -> sa.Select[Any]:
    """``SELECT [slot,] dims…, duration_ms, ttft_ms`` of every call with a latency.

    With ``grouped`` (PostgreSQL), one row per ``[slot,] dims…`` holding the
    group's values as two arrays (NULL when it has none): the database gathers
    them, so a report over many calls hands the reader a row per group, not
    one per call.
    """
    if piece.grain is not None:  # pragma: no cover - raw values only exist in events
        raise InvalidQueryError("percentiles need the raw events")
    dims, source = _dimension_columns(by, piece)
    slot = _slot(piece)
    duration, ttft = events.c.duration_ms, events.c.ttft_ms
    values: list[Any]
    if grouped:
        values = [
            sa.func.array_agg(duration).filter(duration.is_not(None)),
            sa.func.array_agg(ttft).filter(ttft.is_not(None)),
        ]
    else:
        values = [duration, ttft]
    query = sa.select(*slot, *dims, *values)
    query = query.select_from(source).where(sa.or_(duration.is_not(None), ttft.is_not(None)))
    query = _where(query, piece, filters)
    keys = [*slot, *dims]
    return query.group_by(*keys) if grouped and keys else query


def quantile_columns(names: Sequence[str]) -> list[Any]:
    """``percentile_cont(q) WITHIN GROUP (ORDER BY duration_ms | ttft_ms)`` for each
    percentile metric named, to add to an ungrouped events piece (PostgreSQL).

    ``percentile_cont`` interpolates between closest ranks and skips NULLs, as
    :func:`llmledger.query.aggregate.percentile` does over the values.

    Example:
        >>> [c.name for c in quantile_columns(["latency_p95"])]
        ['latency_p95']
    """
    return [
        sa.func.percentile_cont(int(name.rsplit("_p", 1)[1]) / 100)
        .within_group(events.c.duration_ms if name.startswith("latency") else events.c.ttft_ms)
        .label(name)
        for name in names
    ]


def compile_timeline(piece: Piece, filters: Sequence[Filter], limit: int | None) -> sa.Select[Any]:
    """The calls of a piece in time order, with the columns of ``TIMELINE_COLUMNS``."""
    query = sa.select(*(events.c[name] for name in TIMELINE_COLUMNS))
    query = _where(query, piece, filters).order_by(events.c.ts_us, events.c.id)
    return query.limit(limit) if limit is not None else query
