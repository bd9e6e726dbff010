"""Turning usage events into table rows and back.

Encoding is the writer's hot path, so it does the least work that gives a
correct row: attributes are read with ``operator.attrgetter`` (one C call for
many fields), empty maps and lists are stored as NULL without serialising them,
and JSON is produced by one reusable C encoder instead of ``json.dumps``.

SQLite's ``executemany`` binds ``None`` and ``bool`` through a slow adaptation
path (about a microsecond per value), so for SQLite the encoder groups rows by
which optional columns are set and each group is inserted with a statement
naming only those columns; the others take their NULL default.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import compress
from operator import attrgetter, is_not
from typing import Any

from llmledger.core.errors import InvalidEventError
from llmledger.core.events import UsageEvent
from llmledger.core.usage import BUCKETS, Usage

__all__ = [
    "FIXED_COLUMNS",
    "OPTIONAL_COLUMNS",
    "EncodedBatch",
    "decode_event",
    "encode_batch",
    "from_micros",
    "from_nanos",
    "to_micros",
    "to_nanos",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

#: Columns every row has a value for, in table order.
FIXED_COLUMNS: tuple[str, ...] = (
    "id",
    "ts_us",
    "provider",
    "model",
    "operation",
    "status",
    "usage_source",
    "stream",
    *BUCKETS,
)
_PLAIN_OPTIONAL: tuple[str, ...] = (
    "duration_ms",
    "ttft_ms",
    "response_model",
    "service_tier",
    "request_id",
    "finish_reason",
    "error_type",
    "error_message",
    "tenant",
    "user",
    "feature",
    "session",
    "cost_source",
    "price_ref",
    "unpriced_reason",
    "api_key_fingerprint",
)
#: Nullable columns, in table order: plain event fields, then derived ones.
OPTIONAL_COLUMNS: tuple[str, ...] = (
    *_PLAIN_OPTIONAL,
    "cost_nanos",
    "tags",
    "cost_breakdown",
    "usage_raw",
    "warnings",
    "price_status",
    "incomplete_reason",
)

_ALL_SET = (True,) * len(OPTIONAL_COLUMNS)
_NONES = (None,) * len(OPTIONAL_COLUMNS)
_head = attrgetter("provider", "model", "operation", "status", "usage_source")
_buckets = attrgetter(*BUCKETS)
_plain_optional = attrgetter(*_PLAIN_OPTIONAL)


def _make_json_encoder(default: Callable[[Any], Any] | None) -> Callable[[Any], str]:
    """A compact JSON encoder built once; ``json.dumps`` rebuilds one per call."""
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover - only without the C accelerator
        return json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), default=default, check_circular=False
        ).encode
    encode_chunks = c_make_encoder(
        None, default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )

    def encode(value: Any) -> str:
        return "".join(encode_chunks(value, 0))

    return encode


_to_json = _make_json_encoder(None)
_raw_to_json = _make_json_encoder(str)


def to_micros(ts: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime.

    Raises:
        TypeError: when the datetime is naive.

    Example:
        >>> to_micros(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))
        1000000
    """
    return (ts - _EPOCH) // _MICROSECOND


def from_micros(ts_us: int) -> datetime:
    """The aware UTC datetime of a microsecond timestamp.

    Example:
        >>> from_micros(1_000_000).isoformat()
        '1970-01-01T00:00:01+00:00'
    """
    return _EPOCH + timedelta(microseconds=ts_us)


def to_nanos(cost: Decimal) -> int:
    """USD as integer nano-dollars, rounding half to even beyond the ninth decimal.

    Example:
        >>> to_nanos(Decimal("0.000123450"))
        123450
    """
    return int(cost.scaleb(9).to_integral_value())


def from_nanos(nanos: int) -> Decimal:
    """Integer nano-dollars as a USD ``Decimal`` with nine decimals.

    Example:
        >>> from_nanos(123450)
        Decimal('0.000123450')
    """
    return Decimal(nanos).scaleb(-9)


@dataclass(slots=True)
class EncodedBatch:
    """Rows of one batch, ready for ``executemany``.

    Attributes:
        groups: Event rows keyed by which optional columns they set (a tuple of
            flags over ``OPTIONAL_COLUMNS``); each row holds the fixed columns then
            the set optional ones.
        accepted: The events that were encoded, in order.
    """

    groups: dict[tuple[bool, ...], list[tuple[Any, ...]]] = field(default_factory=dict)
    accepted: list[UsageEvent] = field(default_factory=list)


def encode_batch(
    batch: Iterable[UsageEvent],
    *,
    split_nulls: bool,
    bool_as_int: bool,
    on_error: Callable[[UsageEvent, Exception], None] | None = None,
) -> EncodedBatch:
    """Encode events as rows; an event that cannot be encoded is reported or raised.

    Args:
        batch: The events.
        split_nulls: Group rows by their NULL columns and leave those out (SQLite).
        bool_as_int: Store ``stream`` as 0/1 instead of a bool.
        on_error: Called with each bad event and the error, which is then
            skipped; without it the first bad event raises.

    Raises:
        InvalidEventError: on a bad event when ``on_error`` is not given.

    Example:
        >>> e = UsageEvent(provider="openai", model="gpt-4o",
        ...                ts=datetime(2025, 1, 1, tzinfo=UTC))
        >>> encoded = encode_batch([e], split_nulls=True, bool_as_int=True)
        >>> [len(rows) for rows in encoded.groups.values()]
        [1]
    """
    out = EncodedBatch()
    groups = out.groups
    accepted = out.accepted
    to_json = _to_json
    for event in batch:
        try:
            ts_us = (event.ts - _EPOCH) // _MICROSECOND
            head = _head(event)
            if None in head:
                raise InvalidEventError(
                    "provider, model, operation, status and usage_source are required"
                )
            cost = event.cost
            tags = event.tags
            warnings = event.warnings
            breakdown = event.cost_breakdown
            raw = event.usage_raw
            optional = (
                *_plain_optional(event),
                None if cost is None else int(cost.scaleb(9)),
                to_json(tags) if tags else None,
                None if breakdown is None else to_json({k: str(v) for k, v in breakdown.items()}),
                None if raw is None else _raw_to_json(raw),
                to_json(warnings) if warnings else None,
                event.price_status,
                event.incomplete_reason,
            )
            fixed = (
                event.id,
                ts_us,
                *head,
                (1 if event.stream else 0) if bool_as_int else bool(event.stream),
                *_buckets(event.usage),
            )
        except Exception as exc:
            if on_error is None:
                raise InvalidEventError(
                    f"event {getattr(event, 'id', '?')} cannot be stored: {exc}"
                ) from exc
            on_error(event, exc)
            continue
        if split_nulls:
            keep = tuple(map(is_not, optional, _NONES))
            row = (*fixed, *compress(optional, keep))
        else:
            keep = _ALL_SET
            row = fixed + optional
        rows = groups.get(keep)
        if rows is None:
            groups[keep] = rows = []
        rows.append(row)
        accepted.append(event)
    return out


def decode_event(row: Sequence[Any]) -> UsageEvent:
    """Rebuild the event from a full ``events`` row in table order.

    Example:
        >>> e = UsageEvent(provider="openai", model="gpt-4o",
        ...                ts=datetime(2025, 1, 1, tzinfo=UTC), tags={"env": "prod"})
        >>> encoded = encode_batch([e], split_nulls=False, bool_as_int=False)
        >>> [[row]] = encoded.groups.values()
        >>> decode_event(row) == e
        True
    """
    (
        event_id,
        ts_us,
        provider,
        model,
        operation,
        status,
        usage_source,
        stream,
    ) = row[:8]
    usage = Usage(*(int(value) for value in row[8 : 8 + len(BUCKETS)]))
    plain = dict(zip(_PLAIN_OPTIONAL, row[8 + len(BUCKETS) :], strict=False))
    # The stored price status is derived from the cost and the incomplete reason.
    cost_nanos, tags, breakdown, raw, warnings, _status, incomplete_reason = row[-7:]
    return UsageEvent(
        id=event_id,
        ts=_EPOCH + timedelta(microseconds=ts_us),
        provider=provider,
        model=model,
        operation=operation,
        status=status,
        usage_source=usage_source,
        stream=bool(stream),
        usage=usage,
        cost=None if cost_nanos is None else Decimal(cost_nanos).scaleb(-9),
        tags=json.loads(tags) if tags else {},
        cost_breakdown=None
        if breakdown is None
        else {k: Decimal(v) for k, v in json.loads(breakdown).items()},
        usage_raw=None if raw is None else json.loads(raw),
        warnings=json.loads(warnings) if warnings else [],
        incomplete_reason=incomplete_reason,
        **plain,
    )
