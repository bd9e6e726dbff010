"""The answer to a query, and folding the rows of its sources into it (pure).

Every source the store reads for a query (raw events, hourly or daily rollups)
yields rows per UTC slot (a day, an hour, or less for zones such as
``Asia/Kolkata``): an optional slot index, the grouped dimension values, then the
state fields of :mod:`llmledger.query.aggregate`.  :class:`Folder` folds them
into the zone's hours, days, weeks or months, converting costs with the exchange
rate in force on each UTC day; :func:`build_report` ranks and limits the groups
and derives the metrics.  Nothing here reads a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from operator import itemgetter
from typing import Any

from llmledger.pricing.fx import ExchangeRates, Rate
from llmledger.query.aggregate import COUNT_FIELDS, State, derive_metrics
from llmledger.query.errors import InvalidQueryError
from llmledger.query.periods import DAY_US, bucket_start_us, from_us
from llmledger.query.plan import Piece
from llmledger.query.spec import METRICS, NONE_VALUE, Query, SortKey

__all__ = ["Folder", "Report", "build_report", "flat_query", "merged"]

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


class Folder:
    """Folds source rows into (bucket, dimensions) states, converting costs.

    Args:
        query: The query the rows answer (its buckets, zone and currency apply).
        rates: Exchange rates for a currency other than USD (the built-in ones
            when None).

    Attributes:
        groups: The state of each (bucket start in µs or None, dimension values).
        used: Every exchange rate a cost was converted with.

    Example:
        >>> folder = Folder(Query(by=("model",)), None)
        >>> folder.add_rows([("gpt-4o", 2, 2, 0, 0, 0, *[1] * 11, 0, 0, 1500, 0, 0, 5, 9)], None, 1)
        >>> folder.groups[(None, ("gpt-4o",))].cost
        Decimal('0.000001500')
    """

    def __init__(self, query: Query, rates: ExchangeRates | None) -> None:
        self.query = query
        if query.currency != "USD" and rates is None:
            rates = ExchangeRates()
        self.rates = rates
        self.used: dict[tuple[str, date], Rate] = {}
        self.groups: dict[GroupKey, State] = {}
        self._buckets: dict[int, int | None] = {}
        self._day_rates: dict[int, Rate] = {}

    def bucket(self, slot_start: int | None) -> int | None:
        """The start (µs) of the query's time bucket holding a slot, or None."""
        every = self.query.every
        if every is None or slot_start is None:
            return None
        found = self._buckets.get(slot_start, -1)
        if found == -1:
            found = self._buckets[slot_start] = bucket_start_us(slot_start, every, self.query.zone)
        return found

    def cost(self, nanos: Any, slot_start: int | None) -> Decimal:
        """A cost in nano-dollars in the query's currency, at the rate of the slot's UTC day."""
        usd = Decimal(int(nanos or 0)).scaleb(-9)
        if self.query.currency == "USD" or not usd:
            return usd
        if slot_start is None or self.rates is None:  # pragma: no cover - plan() slots by day
            raise InvalidQueryError("converting costs needs exchange rates and day slots")
        day = slot_start // DAY_US
        rate = self._day_rates.get(day)
        if rate is None:
            rate = self.rates.rate_at(self.query.currency, from_us(day * DAY_US).date())
            self._day_rates[day] = rate
            self.used[(rate.currency, rate.valid_from)] = rate
        # Rounded per day and group, so any grouping adds up to the total exactly.
        return (usd * rate.rate).quantize(_NANO)

    def add_rows(self, rows: Sequence[Any], slot_us: int | None, n_dims: int) -> None:
        """Merge rows of ``[slot,] dims…, state…`` (slots of ``slot_us``) into the groups."""
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

    def add_quantiles(self, names: Sequence[str], values: Sequence[Any]) -> None:
        """Set the percentiles a database computed over every call of an ungrouped query."""
        state = self.groups.get((None, ()))
        if state is not None:
            state.quantiles = {
                name: None if value is None else float(value)
                for name, value in zip(names, values, strict=True)
            }

    def add_values(
        self, rows: Sequence[Any], slot_us: int | None, n_dims: int, *, grouped: bool = False
    ) -> None:
        """Add rows of ``[slot,] dims…, duration_ms, ttft_ms`` to their groups' percentiles.

        With ``grouped``, each row holds a group's values as two lists (or None).

        Example:
            >>> folder = Folder(Query(by=("model",), metrics=("latency_p50",)), None)
            >>> folder.add_rows([["m", *[1] * 5, *[0] * 11, 2, 0, 0, 30.0, 0.0, 1, 2]], None, 1)
            >>> folder.add_values([["m", [10.0, 20.0], None]], None, 1, grouped=True)
            >>> folder.groups[(None, ("m",))].durations
            [10.0, 20.0]
        """
        head = 1 if slot_us is not None else 0
        for row in rows:
            slot_start = None if slot_us is None else int(row[0]) * slot_us
            key = (self.bucket(slot_start), tuple(row[head : head + n_dims]))
            state = self.groups.get(key)
            if state is None:  # pragma: no cover - every value belongs to an aggregated group
                continue
            duration, ttft = row[head + n_dims], row[head + n_dims + 1]
            if grouped:
                if duration:
                    state.durations = (state.durations or []) + [float(v) for v in duration]
                if ttft:
                    state.ttfts = (state.ttfts or []) + [float(v) for v in ttft]
                continue
            if duration is not None:
                state.durations = state.durations or []
                state.durations.append(float(duration))
            if ttft is not None:
                state.ttfts = state.ttfts or []
                state.ttfts.append(float(ttft))


def merged(states: Iterable[State]) -> State:
    """One state holding every state given.

    Example:
        >>> merged([]).counts[0]
        0
    """
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


def flat_query(query: Query) -> Query:
    """``query`` without its grouping, buckets, sort and limit: what its total counts.

    Example:
        >>> flat_query(Query(by=("tag",), every="day", limit=3)).to_dict()["by"]
        []
    """
    return replace(query, by=(), every=None, sort=(), limit=None)


def build_report(
    query: Query, folder: Folder, pieces: Sequence[Piece], total: State | None = None
) -> Report:
    """The report of a query from its folded rows.

    Args:
        query: The query.
        folder: The rows of every piece of its plan, folded.
        pieces: The plan (it names the sources read).
        total: The state of every call in range, when the groups overlap (by
            ``tag``); by default the groups are merged.

    Example:
        >>> report = build_report(Query(metrics=("calls",)), Folder(Query(), None), [])
        >>> report.total, report.rows
        ({'calls': 0}, [{'calls': 0}])
    """
    zone = query.zone

    def local(micros: int) -> datetime:
        return from_us(micros, zone)

    metrics = query.metrics
    overlapping = "tag" in query.by
    other: dict[str, Any] | None = None
    total_state = total if total is not None else merged(folder.groups.values())
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
        other = derive_metrics(merged(per_group[d] for d in dropped), metrics, local)
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
