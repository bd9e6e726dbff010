"""Planning a query: which sources answer which stretch of its range (pure).

Rollups keep, per UTC hour (and per UTC day for the coarse grains), the
mergeable aggregates of the calls at three *grains*, each a set of dimensions,
so that a report reads the smallest grain that has every dimension it groups or
filters on.  Every grain has ``tenant``: one tenant's rows never hold another's
calls, so a tenant's writes never touch (or lock) another's rows:

=====  ==========================================================================
grain  dimensions
=====  ==========================================================================
1      provider, model, response_model, operation, status, api_key_fingerprint, tenant
2      provider, model, operation, status, tenant, feature
4      tenant, user
3      all of the above and user
=====  ==========================================================================

``session`` and tags are not rolled up (they are nearly unique per call);
reports on them read the raw events, except that the spend of listed values of
one tag key is read from that key's tag rows, which hold each call's time and
cost (:func:`tag_rows_key`).  The finest grain (3, every dimension) is
kept hourly only: it has about as many rows per batch as there are combinations
of users, models and features writing.  Grain 4 (a tenant's users) has one row
per user and period, so it is kept per day too: reports by user over weeks read
a few rows per user and day instead of the finest grain's hours.

The plan reads rollups for the whole hours of the range when the query allows
it (its dimensions are rolled up, no percentile is asked for, and the time
zone's boundaries fall on UTC hours) and the raw events for partial hours at
the edges and for everything else.  Within the whole hours it reads the daily
rollups for whole UTC days when a coarse grain has the query's dimensions and
the report's buckets are unions of UTC days (no buckets, or days, weeks and
months in a zone at UTC+0), and the hourly rollups for the hours around them.
The store runs each piece of the plan; the result does not depend on the
sources used (the property tests check every rollup level against the raw
events).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmledger.query.errors import InvalidQueryError
from llmledger.query.periods import DAY_US, HOUR_US, slot_size_us, to_us, utc_days
from llmledger.query.spec import PERCENTILE_METRICS, Query, tag_key

__all__ = [
    "DAILY_GRAINS",
    "FULL_GRAIN",
    "GRAINS",
    "ROLLUP_DIMENSIONS",
    "TAG_ROW_METRICS",
    "Piece",
    "SourceMode",
    "grain_for",
    "plan",
    "tag_rows_key",
]

SourceMode = Literal["auto", "hourly", "rollups", "events"]

#: Every dimension kept in rollups, in column order.
ROLLUP_DIMENSIONS: tuple[str, ...] = (
    "provider",
    "model",
    "response_model",
    "operation",
    "status",
    "api_key_fingerprint",
    "tenant",
    "feature",
    "user",
)
#: Grain number -> its dimensions, smallest (fewest rows) first; a query reads the first
#: that holds its dimensions.  Numbers are stored in the rollup tables: they never change.
GRAINS: dict[int, tuple[str, ...]] = {
    1: (
        "provider",
        "model",
        "response_model",
        "operation",
        "status",
        "api_key_fingerprint",
        "tenant",
    ),
    2: ("provider", "model", "operation", "status", "tenant", "feature"),
    4: ("tenant", "user"),
    3: ROLLUP_DIMENSIONS,
}
#: The grain with every rolled-up dimension, from which the others are summed.
FULL_GRAIN = 3
#: Grains also kept per UTC day (all but the finest, whose rows per day are too many).
DAILY_GRAINS: tuple[int, ...] = (1, 2, 4)


@dataclass(frozen=True, slots=True)
class Piece:
    """One statement of a query plan: a source over a time range.

    Attributes:
        grain: Rollup grain to read, or None to read the raw events.
        start_us: Inclusive start (µs), or None.
        end_us: Exclusive end (µs), or None.
        slot_us: Size of the time slot to group by, or None for no time grouping.
        period_us: Rollup period read (``HOUR_US`` or ``DAY_US``); unused for events.
        tag_rows: With ``grain`` None, a tag key: the piece reads that key's tag
            rows (each a tagged call's time and cost) instead of the events.
    """

    grain: int | None
    start_us: int | None
    end_us: int | None
    slot_us: int | None
    period_us: int = HOUR_US
    tag_rows: str | None = None


#: Metrics a tag's rows answer alone: they hold each tagged call's time and cost.
TAG_ROW_METRICS: frozenset[str] = frozenset({"calls", "cost", "cost_per_call", "unpriced_calls"})


def tag_rows_key(query: Query) -> str | None:
    """The tag key whose rows alone answer ``query``, or None.

    That is a query about one tag key only (grouped by it or not), kept to listed
    values of it (no negation, no "not set"), asking for calls and cost only:
    what a budget scoped by a tag asks.

    Example:
        >>> from llmledger.query.spec import Filter
        >>> q = Query(by=("tag:team",), where=(Filter("tag:team", ("a", "b")),), metrics=("cost",))
        >>> tag_rows_key(q), tag_rows_key(Query(by=("tag:team",), metrics=("cost",)))
        ('team', None)
    """
    keys = {tag_key(name) for name in query.dimensions_used()}
    if len(keys) != 1 or not TAG_ROW_METRICS.issuperset(query.metrics):
        return None
    (key,) = keys
    if key is None or not query.where:
        return None
    if any(f.negate or None in f.values for f in query.where):
        return None
    return key


def grain_for(dimensions: set[str], period_us: int = HOUR_US) -> int | None:
    """The smallest grain kept per ``period_us`` holding every dimension, or None.

    Example:
        >>> grain_for({"model"}), grain_for({"tenant", "feature"}), grain_for({"session"})
        (1, 2, None)
        >>> grain_for({"user"}), grain_for({"user"}, DAY_US), grain_for({"user", "model"})
        (4, 4, 3)
        >>> grain_for({"user", "model"}, DAY_US) is None
        True
    """
    for grain, names in GRAINS.items():
        if period_us == DAY_US and grain not in DAILY_GRAINS:
            continue
        if dimensions <= set(names):
            return grain
    return None


def plan(query: Query, bounds: tuple[int, int] | None, mode: SourceMode = "auto") -> list[Piece]:
    """The statements that answer ``query``; ``bounds`` is the data's time span.

    Pieces are in time order: raw events for a partial first hour, hourly
    rollups up to the first UTC midnight, daily rollups for the whole days,
    hourly rollups after the last midnight, raw events for a partial last hour
    (each only when the query and the range allow it).  ``mode="hourly"``
    keeps to the hourly rollups (to compare the levels), ``"events"`` to the raw
    events, and ``"rollups"`` refuses a query that rollups cannot answer.

    Raises:
        InvalidQueryError: with ``mode="rollups"`` for a query rollups cannot answer.

    Example:
        >>> from datetime import UTC, datetime
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
        raise InvalidQueryError(
            "this query cannot be answered from rollups alone (it needs raw events: "
            "percentiles, tags, sessions or sub-hour buckets); use source auto or events"
        )
    if not rollable or grain is None:
        tagged = tag_rows_key(query) if mode != "events" else None
        return [Piece(None, start, end, slot, tag_rows=tagged)]
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
