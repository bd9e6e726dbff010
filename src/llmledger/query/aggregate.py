"""Mergeable aggregates and the metrics derived from them (pure).

Every source (raw events, hourly rollups) yields the same *state* per group:
counts and integer sums that add, first/last times that take min/max, and the
cost already converted to the report's currency.  Merging states is exact, so
a report folded from hourly pieces equals one computed in a single pass.
Metrics (rates, means, cost per call, percentiles) are derived from a state
only at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from llmledger.core.usage import BUCKETS

__all__ = [
    "COUNT_FIELDS",
    "STATE_FIELDS",
    "State",
    "derive_metrics",
    "percentile",
]

#: Integer fields of a state, in the order sources return them.
COUNT_FIELDS: tuple[str, ...] = (
    "calls",
    "successes",
    "errors",
    "unpriced_calls",
    "incomplete_calls",
    *BUCKETS,
    "duration_count",
    "ttft_count",
)
#: Every field a source returns per group, in order.
STATE_FIELDS: tuple[str, ...] = (
    *COUNT_FIELDS,
    "cost_nanos",
    "duration_ms_sum",
    "ttft_ms_sum",
    "first_us",
    "last_us",
)
_CALLS = 0
_SUCCESSES = 1
_ERRORS = 2
_UNPRICED = 3
_INCOMPLETE = 4
_BUCKET_INDEX = {name: 5 + i for i, name in enumerate(BUCKETS)}
_DURATION_COUNT = 5 + len(BUCKETS)
_TTFT_COUNT = _DURATION_COUNT + 1
_NANO = Decimal("1e-9")


@dataclass(slots=True)
class State:
    """The mergeable aggregate of a group of calls.

    Attributes:
        counts: Integers in ``COUNT_FIELDS`` order.
        cost: Cost of the priced calls, in the report's currency.
        duration_sum: Sum of ``duration_ms`` over calls that have one.
        ttft_sum: Sum of ``ttft_ms`` over calls that have one.
        first_us: Earliest call start (µs since the epoch), None when empty.
        last_us: Latest call start, None when empty.
        durations: Every ``duration_ms`` (only when percentiles are asked for).
        ttfts: Every ``ttft_ms`` (likewise).
        quantiles: Percentile metrics a database computed for the group, by name,
            instead of the values (only for a group that is a whole report).

    Example:
        >>> a = State.from_row([1, 1, 0, 0, 0, *[10] * 11, 1, 0], Decimal("0.5"), 120.0, 0.0, 5, 5)
        >>> b = State.from_row([2, 1, 1, 1, 0, *[1] * 11, 2, 0], Decimal("0.25"), 30.0, 0.0, 1, 9)
        >>> a.merge(b)
        >>> a.counts[0], a.cost, a.first_us, a.last_us
        (3, Decimal('0.75'), 1, 9)
    """

    counts: list[int] = field(default_factory=lambda: [0] * len(COUNT_FIELDS))
    cost: Decimal = Decimal(0)
    duration_sum: float = 0.0
    ttft_sum: float = 0.0
    first_us: int | None = None
    last_us: int | None = None
    durations: list[float] | None = None
    ttfts: list[float] | None = None
    quantiles: dict[str, float | None] | None = None

    @classmethod
    def from_row(
        cls,
        counts: Sequence[Any],
        cost: Decimal,
        duration_sum: Any,
        ttft_sum: Any,
        first_us: Any,
        last_us: Any,
    ) -> State:
        """A state from one source row (SQL sums may come back as Decimal or None)."""
        return cls(
            [int(v or 0) for v in counts],
            cost,
            float(duration_sum or 0.0),
            float(ttft_sum or 0.0),
            None if first_us is None else int(first_us),
            None if last_us is None else int(last_us),
        )

    def merge(self, other: State) -> None:
        """Add ``other`` into this state.

        Raises:
            ValueError: when percentiles computed by a database would be merged
                with other calls (they cannot be; the store never asks to).
        """
        if other.quantiles is not None or self.quantiles is not None:
            if self.counts[0] or self.quantiles is not None:
                raise ValueError("percentiles computed by the database cannot be merged")
            self.quantiles = other.quantiles
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.cost += other.cost
        self.duration_sum += other.duration_sum
        self.ttft_sum += other.ttft_sum
        if other.first_us is not None and (self.first_us is None or other.first_us < self.first_us):
            self.first_us = other.first_us
        if other.last_us is not None and (self.last_us is None or other.last_us > self.last_us):
            self.last_us = other.last_us
        if other.durations is not None:
            self.durations = (self.durations or []) + other.durations
        if other.ttfts is not None:
            self.ttfts = (self.ttfts or []) + other.ttfts


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation between closest ranks.

    The same definition as PostgreSQL's ``percentile_cont`` and NumPy's default.

    Example:
        >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5)
        2.5
        >>> percentile([], 0.9) is None
        True
    """
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 6)


def derive_metrics(state: State, names: Sequence[str], from_us: Any) -> dict[str, Any]:
    """The metrics named, from a state.

    Costs are ``Decimal`` (None when no call of the group is priced), token counts
    and call counts ``int``, rates and latencies ``float`` (None without data),
    ``first_seen``/``last_seen`` whatever ``from_us`` makes of microseconds.

    Example:
        >>> s = State.from_row([4, 3, 1, 0, 0, *[2] * 11, 2, 0], Decimal("0.01"), 300.0, 0.0, 0, 9)
        >>> m = derive_metrics(s, ["calls", "error_rate", "cost_per_call", "latency_mean"], int)
        >>> m["error_rate"], m["cost_per_call"], m["latency_mean"]
        (0.25, Decimal('0.002500000'), 150.0)
    """
    counts = state.counts
    calls = counts[_CALLS]
    priced = calls - counts[_UNPRICED]
    out: dict[str, Any] = {}
    for name in names:
        value: Any
        if name in _BUCKET_INDEX:
            value = counts[_BUCKET_INDEX[name]]
        elif name == "calls":
            value = calls
        elif name == "successes":
            value = counts[_SUCCESSES]
        elif name == "errors":
            value = counts[_ERRORS]
        elif name == "unpriced_calls":
            value = counts[_UNPRICED]
        elif name == "incomplete_calls":
            value = counts[_INCOMPLETE]
        elif name == "success_rate":
            value = _ratio(counts[_SUCCESSES], calls)
        elif name == "error_rate":
            value = _ratio(counts[_ERRORS], calls)
        elif name == "total_tokens":
            value = counts[_BUCKET_INDEX["input_tokens"]] + counts[_BUCKET_INDEX["output_tokens"]]
        elif name == "cost":
            value = state.cost if priced else None
        elif name == "cost_per_call":
            value = (state.cost / priced).quantize(_NANO) if priced else None
        elif name == "latency_mean":
            n = counts[_DURATION_COUNT]
            value = round(state.duration_sum / n, 3) if n else None
        elif name == "ttft_mean":
            n = counts[_TTFT_COUNT]
            value = round(state.ttft_sum / n, 3) if n else None
        elif name.startswith(("latency_p", "ttft_p")):
            if state.quantiles is not None:
                found = state.quantiles.get(name)
            else:
                values = state.durations if name.startswith("latency") else state.ttfts
                found = percentile(values or [], int(name.rsplit("_p", 1)[1]) / 100)
            value = None if found is None else round(found, 3)
        elif name == "first_seen":
            value = None if state.first_us is None else from_us(state.first_us)
        elif name == "last_seen":
            value = None if state.last_us is None else from_us(state.last_us)
        else:  # pragma: no cover - Query validates metric names
            raise KeyError(name)
        out[name] = value
    return out
