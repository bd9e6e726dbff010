"""Running a query: plan the sources, execute, fold into buckets, derive metrics.

The plan reads rollups for the whole hours of the range when the query allows
it (its dimensions are rolled up, no percentile is asked for, and the time
zone's boundaries fall on UTC hours) and the raw events for partial hours at
the edges and for everything else.  Within the whole hours it reads the daily
rollups for whole UTC days when a coarse grain has the query's dimensions and
the report's buckets are unions of UTC days (no buckets, or days, weeks and
months in a zone at UTC+0), and the hourly rollups for the hours around them.
Rows come back per UTC slot (a day, an hour, or less for zones such as
``Asia/Kolkata``) and are folded in Python into the zone's hours, days, weeks
or months, converting costs with the exchange rate in force on each UTC day.
The result does not depend on the sources used: the property tests check every
rollup level against the raw events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from operator import itemgetter
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from llmledger.pricing.fx import ExchangeRates, Rate
from llmledger.query.aggregate import COUNT_FIELDS, State, derive_metrics
from llmledger.query.compile import (
    TIMELINE_COLUMNS,
    Piece,
    compile_timeline,
    compile_values,
    prepared_piece,
)
from llmledger.query.periods import (
    DAY_US,
    HOUR_US,
    bucket_start_us,
    from_us,
    slot_size_us,
    to_us,
    utc_days,
)
from llmledger.query.spec import METRICS, NONE_VALUE, PERCENTILE_METRICS, Query, SortKey
from llmledger.query.tables import grain_for
from llmledger.store.schema import events

__all__ = ["Report", "SourceMode", "connect", "plan", "run_query", "timeline"]

SourceMode = Literal["auto", "hourly", "rollups", "events"]
_NANO = Decimal("1e-9")
_N_COUNTS = len(COUNT_FIELDS)
GroupKey = tuple[int | None, tuple[str | None, ...]]


@dataclass(slots=True)
class Report:
    """The answer to a :class:`Query`; :meth:`to_dict` is its one JSON shape.

    Attributes:
        query: The query answered.
        total: Metrics over every call in range (calls counted once).
        rows: One dict per group (and time bucket): the time bucket start under
            the bucket's name (``"day"``…), each dimension, then each metric.
        other: Metrics of the groups left out by ``limit``, or None.
        rates: Exchange rates used, oldest first (empty for USD).
        source: ``"rollups"``, ``"events"`` or ``"rollups+events"``.
        notes: Sentences a reader needs (overlapping tag groups, rates used).
    """

    query: Query
    total: dict[str, Any]
    rows: list[dict[str, Any]]
    other: dict[str, Any] | None = None
    rates: list[Rate] = field(default_factory=list)
    source: str = "events"
    notes: list[str] = field(default_factory=list)

    @property
    def currency(self) -> str:
        """The currency costs are in."""
        return self.query.currency

    @property
    def columns(self) -> list[str]:
        """Row keys in order: time bucket, dimensions, metrics."""
        head = [self.query.every] if self.query.every else []
        return [*head, *self.query.by, *self.query.metrics]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data: costs as decimal strings, counts as ints, times as ISO 8601.

        Example:
            >>> total = {"calls": 2, "cost": Decimal("1.5")}
            >>> r = Report(Query(metrics=("calls", "cost")), total, [])
            >>> r.to_dict()["total"]
            {'calls': 2, 'cost': '1.5'}
        """
        out: dict[str, Any] = {
            "query": {k: _json(v) for k, v in self.query.to_dict().items()},
            "currency": self.currency,
            "total": {k: _json(v) for k, v in self.total.items()},
            "rows": [{k: _json(v) for k, v in row.items()} for row in self.rows],
        }
        if self.other is not None:
            out["other"] = {k: _json(v) for k, v in self.other.items()}
        out["rates"] = [
            {
                "currency": r.currency,
                "rate": str(r.rate),
                "from": r.valid_from.isoformat(),
                "source": r.source,
            }
            for r in self.rates
        ]
        out["source"] = self.source
        out["notes"] = list(self.notes)
        return out


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def connect(target: Engine | Connection | Any) -> tuple[Engine | Connection, bool]:
    """The engine or connection behind a store, engine or connection."""
    if isinstance(target, (Engine, Connection)):
        return target, isinstance(target, Connection)
    return target.engine, False


def _data_bounds(conn: Connection) -> tuple[int, int] | None:
    row = conn.execute(sa.select(sa.func.min(events.c.ts_us), sa.func.max(events.c.ts_us))).one()
    return None if row[0] is None else (int(row[0]), int(row[1]) + 1)


def plan(query: Query, bounds: tuple[int, int] | None, mode: SourceMode = "auto") -> list[Piece]:
    """The statements that answer ``query``; ``bounds`` is the data's time span.

    Pieces are in time order: raw events for a partial first hour, hourly
    rollups up to the first UTC midnight, daily rollups for the whole days,
    hourly rollups after the last midnight, raw events for a partial last hour
    (each only when the query and the range allow it).  ``mode="hourly"``
    keeps to the hourly rollups (to compare the levels), ``"events"`` to the raw
    events, and ``"rollups"`` refuses a query that rollups cannot answer.

    Example:
        >>> from datetime import UTC
        >>> q = Query(since=datetime(2025, 1, 1, 0, 30, tzinfo=UTC),
        ...           until=datetime(2025, 1, 4, 5, tzinfo=UTC), by=("model",))
        >>> [(p.grain, p.period_us // HOUR_US) for p in plan(q, None)]
        [(None, 1), (1, 1), (1, 24), (1, 1)]
        >>> [(p.grain, p.period_us // HOUR_US) for p in plan(q, None, "hourly")]
        [(None, 1), (1, 1)]
    """
    start = None if query.since is None else to_us(query.since)
    end = None if query.until is None else to_us(query.until)
    slot: int | None = None
    span = (0, 1)
    if query.every is not None:
        low = start if start is not None else (bounds[0] if bounds else 0)
        high = end if end is not None else (bounds[1] if bounds else low + 1)
        span = (low, max(high, low + 1))
        slot = slot_size_us(query.zone, *span)
    elif query.currency != "USD":
        slot = DAY_US
    grain = grain_for(query.dimensions_used())
    rollable = (
        mode != "events"
        and grain is not None
        and not PERCENTILE_METRICS.intersection(query.metrics)
        and (slot is None or slot % HOUR_US == 0)
    )
    if mode == "rollups" and not rollable:
        raise ValueError("this query cannot be answered from rollups alone")
    if not rollable or grain is None:
        return [Piece(None, start, end, slot)]
    first = None if start is None else start + (-start % HOUR_US)
    last = None if end is None else end - end % HOUR_US
    if first is not None and last is not None and first >= last:
        return [Piece(None, start, end, slot)]
    day_grain = grain_for(query.dimensions_used(), DAY_US)
    if mode != "hourly" and day_grain is not None and _day_slots(query, slot, span):
        pieces = _whole_hours(grain, day_grain, first, last, slot)
    else:
        pieces = [Piece(grain, first, last, slot)]
    if start is not None and first != start:
        pieces.insert(0, Piece(None, start, first, slot))
    if end is not None and last != end:
        pieces.append(Piece(None, last, end, slot))
    return pieces


def _whole_hours(
    grain: int, day_grain: int, first: int | None, last: int | None, slot: int | None
) -> list[Piece]:
    """Rollup pieces for whole UTC hours: daily rows for the whole UTC days among them."""
    first_day = None if first is None else first + (-first % DAY_US)
    last_day = None if last is None else last - last % DAY_US
    if first_day is not None and last_day is not None and first_day >= last_day:
        return [Piece(grain, first, last, slot)]
    pieces = [Piece(day_grain, first_day, last_day, slot, DAY_US)]
    if first is not None and first != first_day:
        pieces.insert(0, Piece(grain, first, first_day, slot))
    if last is not None and last != last_day:
        pieces.append(Piece(grain, last_day, last, slot))
    return pieces


def _day_slots(query: Query, slot: int | None, span: tuple[int, int]) -> bool:
    """Whether rows per UTC day fold exactly into the query's slots and buckets."""
    if slot is None or slot == DAY_US:
        return True
    if query.every in (None, "hour") or DAY_US % slot:
        return False
    return utc_days(query.zone, *span)


class _Folder:
    """Folds source rows into (bucket, dimensions) states, converting costs."""

    def __init__(self, query: Query, rates: ExchangeRates | None) -> None:
        self.query = query
        self.rates = rates
        self.used: dict[tuple[str, date], Rate] = {}
        self.groups: dict[GroupKey, State] = {}
        self._buckets: dict[int, int | None] = {}
        self._day_rates: dict[int, Rate] = {}

    def bucket(self, slot_start: int | None) -> int | None:
        every = self.query.every
        if every is None or slot_start is None:
            return None
        found = self._buckets.get(slot_start, -1)
        if found == -1:
            found = self._buckets[slot_start] = bucket_start_us(slot_start, every, self.query.zone)
        return found

    def cost(self, nanos: Any, slot_start: int | None) -> Decimal:
        usd = Decimal(int(nanos or 0)).scaleb(-9)
        if self.query.currency == "USD" or not usd:
            return usd
        if slot_start is None or self.rates is None:  # pragma: no cover - plan() slots by day
            raise ValueError("converting costs needs exchange rates and day slots")
        day = slot_start // DAY_US
        rate = self._day_rates.get(day)
        if rate is None:
            rate = self.rates.rate_at(self.query.currency, from_us(day * DAY_US).date())
            self._day_rates[day] = rate
            self.used[(rate.currency, rate.valid_from)] = rate
        # Rounded per day and group, so any grouping adds up to the total exactly.
        return (usd * rate.rate).quantize(_NANO)

    def add_rows(self, rows: Sequence[Any], slot_us: int | None, n_dims: int) -> None:
        head = 1 if slot_us is not None else 0
        groups = self.groups
        for row in rows:
            slot_start = None if slot_us is None else int(row[0]) * slot_us
            dims = tuple(row[head : head + n_dims])
            values = row[head + n_dims :]
            state = State.from_row(
                values[:_N_COUNTS],
                self.cost(values[_N_COUNTS], slot_start),
                *values[_N_COUNTS + 1 :],
            )
            key = (self.bucket(slot_start), dims)
            found = groups.get(key)
            if found is None:
                groups[key] = state
            else:
                found.merge(state)

    def add_values(self, rows: Sequence[Any], slot_us: int | None, n_dims: int) -> None:
        head = 1 if slot_us is not None else 0
        for row in rows:
            slot_start = None if slot_us is None else int(row[0]) * slot_us
            key = (self.bucket(slot_start), tuple(row[head : head + n_dims]))
            state = self.groups.get(key)
            if state is None:  # pragma: no cover - every value belongs to an aggregated group
                continue
            duration, ttft = row[head + n_dims], row[head + n_dims + 1]
            if duration is not None:
                state.durations = state.durations or []
                state.durations.append(float(duration))
            if ttft is not None:
                state.ttfts = state.ttfts or []
                state.ttfts.append(float(ttft))


def _execute(
    conn: Connection, query: Query, pieces: list[Piece], rates: ExchangeRates | None
) -> _Folder:
    folder = _Folder(query, rates)
    wants_values = bool(PERCENTILE_METRICS.intersection(query.metrics))
    n_dims = len(query.by)
    for piece in pieces:
        statement, params = prepared_piece(piece, query.by, query.where, query.metrics)
        rows = conn.execute(statement, params).all()
        folder.add_rows(rows, piece.slot_us, n_dims)
        if wants_values:
            values = conn.execute(compile_values(piece, query.by, query.where)).all()
            folder.add_values(values, piece.slot_us, n_dims)
    return folder


def _merged(states: Sequence[State]) -> State:
    total = State()
    for state in states:
        total.merge(state)
    return total


def _sort_rows(rows: list[dict[str, Any]], keys: Sequence[SortKey], dims: Sequence[str]) -> None:
    """Sort in place by ``keys`` (missing values last), then by dimensions ascending."""
    for name in reversed(dims):
        rows.sort(key=partial(_missing_last, name))
    for item in reversed(keys):
        present = [r for r in rows if r.get(item.name) is not None]
        missing = [r for r in rows if r.get(item.name) is None]
        present.sort(key=itemgetter(item.name), reverse=item.descending)
        rows[:] = present + missing


def _missing_last(name: str, row: dict[str, Any]) -> tuple[bool, str]:
    value = row[name]
    return (value is None, value or "")


def run_query(
    target: Engine | Connection | Any,
    query: Query,
    *,
    rates: ExchangeRates | None = None,
    mode: SourceMode = "auto",
) -> Report:
    """Answer ``query`` from a store (or its engine or connection).

    Args:
        target: A store with ``.engine``, an engine or a connection.
        query: The query.
        rates: Exchange rates; needed when ``query.currency`` is not USD.
        mode: ``"auto"`` (rollups where they answer exactly), ``"hourly"``
            (the same without the daily rollups), ``"events"`` (raw
            events only) or ``"rollups"`` (fail when rollups cannot answer).

    Raises:
        CurrencyError: when no rate is known for a day in the range.

    Example:
        >>> from llmledger.store import open_store
        >>> report = run_query(open_store("sqlite://"), Query(by=("model",)))
        >>> report.to_dict()["total"]["calls"], report.rows
        (0, [])
        >>> run_query(open_store("sqlite://"), Query(metrics=("calls",))).rows
        [{'calls': 0}]
    """
    bind, is_connection = connect(target)
    if is_connection:
        assert isinstance(bind, Connection)
        return _run(bind, query, rates, mode)
    assert isinstance(bind, Engine)
    with bind.connect() as conn:
        return _run(conn, query, rates, mode)


def _run(conn: Connection, query: Query, rates: ExchangeRates | None, mode: SourceMode) -> Report:
    if query.currency != "USD" and rates is None:
        rates = ExchangeRates()
    needs_bounds = query.every is not None and (query.since is None or query.until is None)
    pieces = plan(query, _data_bounds(conn) if needs_bounds else None, mode)
    folder = _execute(conn, query, pieces, rates)
    zone = query.zone

    def local(micros: int) -> datetime:
        return from_us(micros, zone)

    metrics = query.metrics
    overlapping = "tag" in query.by
    other: dict[str, Any] | None = None
    if overlapping:
        flat = replace(query, by=(), every=None, sort=(), limit=None)
        flat_groups = _execute(conn, flat, plan(flat, None, mode), rates).groups
        total_state = _merged(list(flat_groups.values()))
    else:
        total_state = _merged(list(folder.groups.values()))
    per_group: dict[tuple[str | None, ...], State] = {}
    for (_, dims), state in folder.groups.items():
        per_group.setdefault(dims, State()).merge(state)
    sort = [k for k in query.sort if k.name != query.every] or [SortKey("cost"), SortKey("calls")]
    metric_keys = [k.name for k in sort if k.name in METRICS]
    ranked = [
        {
            **dict(zip(query.by, dims, strict=True)),
            **derive_metrics(state, metric_keys, local),
            "_dims": dims,
        }
        for dims, state in per_group.items()
    ]
    _sort_rows(ranked, sort, query.by)
    if query.limit is not None and len(ranked) > query.limit:
        dropped = [row["_dims"] for row in ranked[query.limit :]]
        other = derive_metrics(_merged([per_group[d] for d in dropped]), metrics, local)
        ranked = ranked[: query.limit]
    rank = {row["_dims"]: index for index, row in enumerate(ranked)}
    newest_first = any(k.name == query.every and k.descending for k in query.sort)
    ordered = sorted(
        (key for key in folder.groups if key[1] in rank),
        key=lambda k: (-(k[0] or 0) if newest_first else (k[0] or 0), rank[k[1]]),
    )
    rows: list[dict[str, Any]] = []
    for bucket, dims in ordered:
        row: dict[str, Any] = {}
        if query.every is not None:
            row[query.every] = None if bucket is None else local(bucket)
        row.update(zip(query.by, dims, strict=True))
        row.update(derive_metrics(folder.groups[(bucket, dims)], metrics, local))
        rows.append(row)
    if not query.by and query.every is None and not rows:
        rows.append(derive_metrics(total_state, metrics, local))
    notes = []
    if overlapping:
        notes.append(
            "a call with several tags is counted once in each of its tags' rows, "
            "so rows add up to more than the total; calls without tags are under "
            f"{NONE_VALUE}"
        )
    used = sorted(folder.used.values(), key=lambda r: (r.currency, r.valid_from))
    if used:
        listed = ", ".join(f"{r.rate} from {r.valid_from} ({r.source})" for r in used)
        notes.append(
            f"costs converted from USD at 1 USD = {listed} {query.currency}, "
            "by the rate in force on each call's UTC day"
        )
    kinds = {"rollups" if p.grain is not None else "events" for p in pieces}
    return Report(
        query=query,
        total=derive_metrics(total_state, metrics, local),
        rows=rows,
        other=other,
        rates=used,
        source="+".join(sorted(kinds, reverse=True)),
        notes=notes,
    )


def timeline(
    target: Engine | Connection | Any,
    query: Query,
    *,
    limit: int | None = 1000,
    rates: ExchangeRates | None = None,
) -> list[dict[str, Any]]:
    """The calls matching a query's range and filters, oldest first.

    Each dict has ``ts`` (in the query's zone), the ``TIMELINE_COLUMNS`` and
    ``cost`` in the query's currency (None when unpriced).

    Example:
        >>> from llmledger.store import open_store
        >>> timeline(open_store("sqlite://"), Query())
        []
    """
    start = None if query.since is None else to_us(query.since)
    end = None if query.until is None else to_us(query.until)
    statement = compile_timeline(Piece(None, start, end, None), query.where, limit)
    bind, _ = connect(target)
    if isinstance(bind, Connection):
        result = bind.execute(statement).all()
    else:
        with bind.connect() as conn:
            result = conn.execute(statement).all()
    folder = _Folder(query, rates or (ExchangeRates() if query.currency != "USD" else None))
    out = []
    for row in result:
        item = dict(zip(TIMELINE_COLUMNS, row, strict=True))
        ts_us = int(item.pop("ts_us"))
        nanos = item.pop("cost_nanos")
        day = ts_us - ts_us % DAY_US
        item = {
            "ts": from_us(ts_us, query.zone),
            **item,
            "cost": None if nanos is None else folder.cost(nanos, day),
        }
        out.append(item)
    return out
