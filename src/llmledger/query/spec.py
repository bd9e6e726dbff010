"""The query model: what a report asks for, as plain frozen data.

A :class:`Query` names a time range, a time zone, filters, a grouping, an
optional time bucket, metrics, a sort order and a limit.  It is pure data: no
I/O and no clock.  :func:`build_query` turns the strings a command line or an
HTTP request carries into one, so every view parses options the same way; the
store answers it (``SqlStore.report``, :mod:`llmledger.store.reports`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from llmledger.core.usage import BUCKETS
from llmledger.query.errors import InvalidQueryError
from llmledger.query.periods import (
    EARLIEST,
    LATEST,
    parse_last,
    parse_period,
    parse_time_in_zone,
)

__all__ = [
    "COLUMN_DIMENSIONS",
    "DEFAULT_METRICS",
    "DIMENSION_ALIASES",
    "METRICS",
    "NONE_VALUE",
    "PERCENTILE_METRICS",
    "TIME_BUCKETS",
    "Filter",
    "Query",
    "SortKey",
    "TimeBucket",
    "build_query",
    "parse_dimensions",
    "parse_metrics",
    "parse_sort",
    "parse_where",
    "tag_key",
]

TimeBucket = Literal["hour", "day", "week", "month"]
TIME_BUCKETS: tuple[str, ...] = get_args(TimeBucket)

#: Dimensions that are columns of the events table.
COLUMN_DIMENSIONS: tuple[str, ...] = (
    "provider",
    "model",
    "response_model",
    "operation",
    "status",
    "tenant",
    "user",
    "feature",
    "session",
    "api_key_fingerprint",
)
#: Shorter names accepted on input.
DIMENSION_ALIASES: dict[str, str] = {
    "key": "api_key_fingerprint",
    "fingerprint": "api_key_fingerprint",
}
#: How a missing value (SQL NULL) is written in filters and shown in tables.
NONE_VALUE = "(none)"

#: Every metric, in display order.
METRICS: tuple[str, ...] = (
    "calls",
    "successes",
    "errors",
    "success_rate",
    "error_rate",
    *BUCKETS,
    "total_tokens",
    "cost",
    "cost_per_call",
    "unpriced_calls",
    "incomplete_calls",
    "latency_mean",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "ttft_mean",
    "ttft_p50",
    "ttft_p95",
    "ttft_p99",
    "first_seen",
    "last_seen",
)
#: Metrics that need every raw value (they are exact, computed from the events).
PERCENTILE_METRICS: frozenset[str] = frozenset(
    f"{kind}_p{q}" for kind in ("latency", "ttft") for q in (50, 95, 99)
)
DEFAULT_METRICS: tuple[str, ...] = (
    "calls",
    "errors",
    "input_tokens",
    "cache_read_tokens",
    "output_tokens",
    "cost",
    "unpriced_calls",
    "incomplete_calls",
)
_ASCENDING_BY_DEFAULT = frozenset({"first_seen"})


def _check_metric(name: str) -> None:
    if name not in METRICS:
        raise InvalidQueryError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")


def tag_key(dimension: str) -> str | None:
    """The tag key of a ``tag:KEY`` dimension, else None.

    Example:
        >>> tag_key("tag:podcast_id"), tag_key("model")
        ('podcast_id', None)
    """
    return dimension[4:] if dimension.startswith("tag:") else None


def _dimension(name: str, *, grouping: bool) -> str:
    text = name.strip()
    text = DIMENSION_ALIASES.get(text, text)
    if text in COLUMN_DIMENSIONS:
        return text
    if text.startswith("tag:") and len(text) > 4:
        return text
    if grouping and text == "tag":
        return text
    choices = ", ".join((*COLUMN_DIMENSIONS, "tag:KEY", *(("tag",) if grouping else ())))
    raise InvalidQueryError(f"unknown dimension {name!r}; choose from {choices}")


@dataclass(frozen=True, slots=True)
class Filter:
    """Keep calls whose ``dimension`` is one of ``values`` (or none of them when negated).

    ``None`` among the values stands for "not set" (no tenant, no such tag).

    Example:
        >>> Filter("model", ("gpt-4o", "gpt-4o-mini")).to_text()
        'model=gpt-4o,gpt-4o-mini'
        >>> Filter("tag:env", (None,), negate=True).to_text()
        'tag:env!=(none)'
    """

    dimension: str
    values: tuple[str | None, ...]
    negate: bool = False

    def to_text(self) -> str:
        """The filter in ``--where`` syntax."""
        values = ",".join(NONE_VALUE if v is None else v for v in self.values)
        return f"{self.dimension}{'!=' if self.negate else '='}{values}"


@dataclass(frozen=True, slots=True)
class SortKey:
    """Order rows by a metric or dimension.

    Example:
        >>> SortKey("cost").to_text(), SortKey("model", descending=False).to_text()
        ('cost:desc', 'model:asc')
    """

    name: str
    descending: bool = True

    def to_text(self) -> str:
        """The key in ``--sort`` syntax."""
        return f"{self.name}:{'desc' if self.descending else 'asc'}"


@dataclass(frozen=True, slots=True)
class Query:
    """One report request.

    Attributes:
        since: Start of the range (inclusive, aware), or None for the beginning.
        until: End of the range (exclusive, aware), or None for no end.
        tz: IANA time zone for hour/day/week/month boundaries.
        where: Filters, all of which a call must pass.
        by: Dimensions to group by (``tag:KEY``, or ``tag`` for every tag).
        every: Time bucket, or None for one row per group.
        metrics: Metric names, in output order.
        sort: Sort keys; empty means time (when bucketed) then cost, descending.
        limit: Keep the first N groups (all their time buckets), or None.
        currency: Currency costs are shown in.

    Example:
        >>> q = Query(by=("model",), every="day", tz="Europe/Lisbon")
        >>> q.to_dict()["by"], q.dimensions_used()
        (['model'], {'model'})
    """

    since: datetime | None = None
    until: datetime | None = None
    tz: str = "UTC"
    where: tuple[Filter, ...] = ()
    by: tuple[str, ...] = ()
    every: TimeBucket | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS
    sort: tuple[SortKey, ...] = ()
    limit: int | None = None
    currency: str = "USD"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise InvalidQueryError(f"query times must be timezone-aware, got {moment!r}")
        for moment in (self.since, self.until):
            if moment is not None and not EARLIEST <= moment <= LATEST:
                raise InvalidQueryError(
                    f"query times must fall between {EARLIEST.year} and {LATEST.year}, "
                    f"got {moment.isoformat()}"
                )
        if self.since and self.until and self.since >= self.until:
            raise InvalidQueryError("the start of the range must be before its end")
        object.__setattr__(self, "_zone", zone(self.tz))
        if self.every is not None and self.every not in TIME_BUCKETS:
            raise InvalidQueryError(f"--every takes one of {', '.join(TIME_BUCKETS)}")
        for name in self.metrics:
            _check_metric(name)
        if self.by.count("tag") and any(tag_key(d) for d in self.by):
            raise InvalidQueryError("group by 'tag' (every tag) or by tag:KEY, not both")
        if len(set(self.by)) != len(self.by):
            raise InvalidQueryError("a dimension is named twice in --by")
        names = {*self.by, *METRICS, *(() if self.every is None else (self.every,))}
        for key in self.sort:
            if key.name not in names:
                raise InvalidQueryError(
                    f"cannot sort by {key.name!r}: not a metric or a grouped dimension"
                )
        if self.limit is not None and self.limit < 1:
            raise InvalidQueryError("--limit must be at least 1")

    @property
    def zone(self) -> ZoneInfo:
        """The time zone as a ``ZoneInfo``."""
        return self._zone

    def dimensions_used(self) -> set[str]:
        """Every dimension the query groups or filters on."""
        return {*self.by, *(f.dimension for f in self.where)}

    def to_dict(self) -> dict[str, Any]:
        """The query as JSON-ready data (the ``query`` member of a report)."""
        return {
            "since": self.since,
            "until": self.until,
            "tz": self.tz,
            "where": [f.to_text() for f in self.where],
            "by": list(self.by),
            "every": self.every,
            "metrics": list(self.metrics),
            "sort": [k.to_text() for k in self.sort],
            "limit": self.limit,
            "currency": self.currency,
        }


def zone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` of an IANA name.

    Raises:
        InvalidQueryError: on an unknown zone.

    Example:
        >>> zone("Europe/Lisbon").key
        'Europe/Lisbon'
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidQueryError(
            f"unknown time zone {name!r} (use an IANA name like Europe/Lisbon)"
        ) from None


def _split(values: Iterable[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def parse_dimensions(values: Iterable[str]) -> tuple[str, ...]:
    """``--by`` values (repeatable, comma-separated) as dimension names.

    Raises:
        InvalidQueryError: on an unknown dimension.

    Example:
        >>> parse_dimensions(["model,tag:env", "key"])
        ('model', 'tag:env', 'api_key_fingerprint')
    """
    return tuple(_dimension(name, grouping=True) for name in _split(values))


def parse_where(values: Iterable[str]) -> tuple[Filter, ...]:
    """``--where`` expressions: ``DIM=V1,V2`` keeps, ``DIM!=V`` drops; ``(none)`` is "not set".

    Raises:
        InvalidQueryError: on an expression without ``=`` or an unknown dimension.

    Example:
        >>> filters = parse_where(["model=gpt-4o,o3", "tag:env!=test", "tenant=(none)"])
        >>> [f.to_text() for f in filters]
        ['model=gpt-4o,o3', 'tag:env!=test', 'tenant=(none)']
    """
    filters = []
    for text in values:
        name, sep, raw = text.partition("=")
        if not sep:
            raise InvalidQueryError(f"--where takes DIM=VALUE or DIM!=VALUE, got {text!r}")
        negate = name.endswith("!")
        dimension = _dimension(name.removesuffix("!"), grouping=False)
        parts = [p.strip() for p in raw.split(",")]
        if not any(parts):
            raise InvalidQueryError(
                f"--where {text!r} names no value (use {NONE_VALUE} for 'not set')"
            )
        filters.append(
            Filter(dimension, tuple(None if p == NONE_VALUE else p for p in parts), negate)
        )
    return tuple(filters)


def parse_metrics(values: Iterable[str]) -> tuple[str, ...]:
    """``--metrics`` names (comma-separated; ``all`` for every metric, ``default``).

    Raises:
        InvalidQueryError: on an unknown metric.

    Example:
        >>> parse_metrics(["calls,cost", "latency_p95"])
        ('calls', 'cost', 'latency_p95')
    """
    names: list[str] = []
    for name in _split(values):
        expanded = METRICS if name == "all" else DEFAULT_METRICS if name == "default" else (name,)
        for metric in expanded:
            _check_metric(metric)
            if metric not in names:
                names.append(metric)
    return tuple(names) or DEFAULT_METRICS


def parse_sort(values: Iterable[str]) -> tuple[SortKey, ...]:
    """``--sort`` keys: ``NAME``, ``NAME:asc`` or ``NAME:desc`` (metrics default to descending).

    Example:
        >>> [k.to_text() for k in parse_sort(["error_rate", "model:asc"])]
        ['error_rate:desc', 'model:asc']
    """
    keys = []
    for text in _split(values):
        name, _, direction = text.partition(":")
        name = DIMENSION_ALIASES.get(name, name)
        if direction not in ("", "asc", "desc"):
            raise InvalidQueryError(f"--sort direction must be asc or desc, got {direction!r}")
        default_desc = name in METRICS and name not in _ASCENDING_BY_DEFAULT
        keys.append(SortKey(name, direction == "desc" if direction else default_desc))
    return tuple(keys)


def build_query(
    *,
    now: datetime,
    by: Sequence[str] = (),
    every: str | None = None,
    tz: str | None = None,
    since: str | None = None,
    until: str | None = None,
    last: str | None = None,
    period: str | None = None,
    where: Sequence[str] = (),
    metrics: Sequence[str] = (),
    sort: Sequence[str] = (),
    limit: int | None = None,
    currency: str | None = None,
) -> Query:
    """A :class:`Query` from option strings, the way every view spells them.

    ``since``/``until`` are ISO 8601 times or dates, taken in ``tz`` when they
    carry no offset; ``last`` is a span ending at ``until`` (or ``now``);
    ``period`` is a calendar period in ``tz`` (``today``, ``last-month``,
    ``2025-03``, ``2025-W10``…).

    Raises:
        InvalidQueryError: on any malformed or contradictory option.

    Example:
        >>> from datetime import UTC
        >>> q = build_query(now=datetime(2025, 3, 15, tzinfo=UTC), by=["model"],
        ...                 period="last-month", tz="UTC")
        >>> q.since.isoformat(), q.until.isoformat()
        ('2025-02-01T00:00:00+00:00', '2025-03-01T00:00:00+00:00')
    """
    if now.tzinfo is None:
        raise InvalidQueryError("now must be timezone-aware")
    texts = (by, where, metrics, sort, (every, tz, since, until, last, period, currency))
    if any("\x00" in text for group in texts for text in group if text):
        raise InvalidQueryError("a report option holds a NUL character (\\u0000)")
    tz_name = tz or "UTC"
    local = zone(tz_name)
    start = parse_time_in_zone(since, local, "--since")
    end = parse_time_in_zone(until, local, "--until")
    if period is not None:
        if start or end or last:
            raise InvalidQueryError("give --period alone, without --since, --until or --last")
        start, end = parse_period(period, now, local)
    if last is not None:
        if start is not None:
            raise InvalidQueryError("give --since or --last, not both")
        span: timedelta = parse_last(last)
        # The span ends too, so events stamped in the future never count in "the last 30 days".
        end = end or now
        try:
            start = end - span
        except OverflowError:
            raise InvalidQueryError(f"--last {last} reaches further back than any ledger") from None
    if every is not None and every not in TIME_BUCKETS:
        raise InvalidQueryError(f"--every takes one of {', '.join(TIME_BUCKETS)}, got {every!r}")
    return Query(
        since=start,
        until=end,
        tz=tz_name,
        where=parse_where(where),
        by=parse_dimensions(by),
        every=every,  # type: ignore[arg-type]  # checked against TIME_BUCKETS above
        metrics=parse_metrics(metrics),
        sort=parse_sort(sort),
        limit=limit,
        currency=(currency or "USD").strip().upper(),
    )
