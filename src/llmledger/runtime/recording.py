"""The manual recording paths: :func:`record` for known counts or a saved response,
:func:`track` to time any call and take usage from what it returns."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import TYPE_CHECKING, Any

from llmledger.core.attribution import current_attribution
from llmledger.core.errors import InvalidEventError, InvalidUsageError
from llmledger.core.events import UsageEvent
from llmledger.core.usage import BUCKETS, Usage
from llmledger.core.validation import event_time
from llmledger.runtime.ledger import Ledger, get_ledger

if TYPE_CHECKING:
    from llmledger.normalize.base import Reading

__all__ = ["Tracker", "build_event", "record", "track"]

log = logging.getLogger("llmledger")

_EVENT_FIELDS = frozenset(f.name for f in fields(UsageEvent)) - {"usage"}
_MAX_ERROR_MESSAGE = 1000


def _as_body(response: Any) -> Any:
    """A provider SDK object becomes its JSON body; dicts, text and bytes pass through."""
    if isinstance(response, (dict, str, bytes, bytearray)):
        return response
    dump = getattr(response, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_unset=False)
    to_dict = getattr(response, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise InvalidEventError(
        f"cannot read usage from a {type(response).__name__}; "
        "pass a dict, JSON text or an SDK response"
    )


def _as_decimal(name: str, value: Any) -> Decimal:
    if isinstance(value, float):
        # str() first: Decimal(0.1) would carry the float's binary error.
        value = str(value)
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise InvalidEventError(f"{name} must be a decimal amount, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise InvalidEventError(f"{name} must be a non-negative amount, got {value!r}")
    return amount


def build_event(
    ledger: Ledger,
    *,
    response: Any = None,
    stream: Any = None,
    reading: Reading | None = None,
    usage: Usage | Mapping[str, int] | None = None,
    now: datetime | None = None,
    **values: Any,
) -> UsageEvent:
    """Build a validated event from keyword values, as :func:`record` does, without queuing it.

    ``reading`` is a response already read by :mod:`llmledger.normalize` (what the
    capture hooks pass), used like ``response``.

    Raises:
        InvalidEventError: on an unknown field or a bad value.
    """
    counts = {name: values.pop(name) for name in BUCKETS if name in values}
    unknown = set(values) - _EVENT_FIELDS
    if unknown:
        raise InvalidEventError(f"unknown event field(s): {', '.join(sorted(unknown))}")
    if (response is not None) + (stream is not None) + (reading is not None) > 1:
        raise InvalidEventError("pass one of response=, stream= or reading=")

    if reading is None and (response is not None or stream is not None):
        from llmledger.normalize import read_response, read_stream

        provider = values.get("provider")
        operation = values.get("operation")
        reading = (
            read_response(_as_body(response), provider=provider, operation=operation)
            if response is not None
            else read_stream(stream, provider=provider, operation=operation)
        )
    if reading is not None:
        values.setdefault("provider", reading.provider)
        values.setdefault("operation", reading.operation)
        values.setdefault("model", reading.response_model)
        for name in ("response_model", "request_id", "finish_reason", "service_tier"):
            if values.get(name) is None and getattr(reading, name) is not None:
                values[name] = getattr(reading, name)
        values.setdefault("stream", reading.stream)
        values.setdefault("usage_raw", reading.usage_raw)
        values.setdefault("usage_source", reading.usage_source)
        values.setdefault("warnings", list(reading.warnings))
        values.setdefault("usage_parts", reading.usage_parts)
        values.setdefault("fee_counts", dict(reading.fee_counts))
        if counts or usage is not None:
            raise InvalidEventError("pass token counts or a response, not both")
        event_usage = reading.usage
        if reading.reported_cost is not None and "cost" not in values:
            values["cost"] = reading.reported_cost
            values["cost_source"] = "provider-reported"
    else:
        if usage is not None and counts:
            raise InvalidEventError("pass usage= or bucket keywords, not both")
        event_usage = usage if isinstance(usage, Usage) else Usage.from_dict(dict(usage or counts))
        problems = event_usage.problems()
        if problems:
            raise InvalidUsageError("; ".join(problems))
        values.setdefault("usage_source", "manual")

    attribution = current_attribution()
    for name in ("tenant", "user", "feature", "session"):
        if values.get(name) is None:
            values[name] = getattr(attribution, name)
    tags = values.get("tags")
    if tags is not None and not isinstance(tags, Mapping):
        raise InvalidEventError("tags must be a mapping of strings to strings")
    values["tags"] = {**attribution.tags, **{k: str(v) for k, v in (tags or {}).items()}}
    ledger.check_feature(values["feature"])

    if values.get("cost") is not None:
        values["cost"] = _as_decimal("cost", values["cost"])
        values.setdefault("cost_source", "manual")
    clock = now or datetime.now(UTC)
    values["ts"] = event_time(values["ts"], clock) if values.get("ts") is not None else clock
    if not values.get("provider"):
        raise InvalidEventError("provider is required")
    if not values.get("model"):
        raise InvalidEventError("model is required (the response did not name one)")
    event = UsageEvent(usage=event_usage, **values)
    event.validate()
    return event


def record(
    *,
    response: Any = None,
    stream: Any = None,
    usage: Usage | Mapping[str, int] | None = None,
    **values: Any,
) -> UsageEvent:
    """Record one call: from token counts, or from a provider response to read.

    The event is priced at once (with the price in force at its ``ts``) and queued for
    the background writer; :func:`llmledger.flush` waits until it is committed.

    Args:
        response: A provider response (dict, JSON text, or an SDK response object)
            whose usage is read with the provider's counting rules.
        stream: A whole stream transcript (SSE text or Bedrock event-stream bytes).
        usage: Token counts as a :class:`Usage` or a mapping of bucket names.
        **values: Any field of :class:`UsageEvent` (``provider``, ``model``, ``ts`` for
            backfills, ``tenant``, ``user``, ``feature``, ``tags``, ``cost``, …) and token
            counts named after the buckets (``input_tokens=…``, ``cache_read_tokens=…``).

    Returns:
        The recorded event, with its cost (or ``cost=None`` and the reason it is unpriced).

    Example:
        >>> import llmledger
        >>> e = llmledger.record(provider="openai", model="gpt-4o", input_tokens=1000,
        ...                      output_tokens=100, feature="summary")
        >>> e.cost
        Decimal('0.003500000')

    Raises:
        InvalidEventError: on an unknown field, a bad value or counts that break the
            invariants (a part larger than its total, a negative count).
    """
    ledger = get_ledger()
    event = build_event(ledger, response=response, stream=stream, usage=usage, **values)
    event = ledger.prepare(event)
    ledger.submit(event)
    return event


class Tracker:
    """What :func:`track` yields: hand it the response (or counts) of the call."""

    def __init__(self, ledger: Ledger, values: dict[str, Any]) -> None:
        self._ledger = ledger
        self._values = values
        self.response: Any = None
        self.event: UsageEvent | None = None
        self._usage: dict[str, int] = {}

    def set_response(self, response: Any) -> None:
        """Take usage, model and request id from this provider response."""
        self.response = response

    def set_usage(self, **counts: int) -> None:
        """Give token counts directly, named after the buckets."""
        unknown = set(counts) - set(BUCKETS)
        if unknown:
            raise InvalidUsageError(f"unknown usage bucket(s): {', '.join(sorted(unknown))}")
        self._usage.update(counts)

    def set(self, **values: Any) -> None:
        """Set any other event field (``finish_reason``, ``tags``, …)."""
        self._values.update(values)


class track:
    """Time a call and record it on exit, taking usage from its response.

    When the block raises, the event is recorded with status ``error`` and the
    exception type, and the exception goes on to the caller unchanged.

    Example:
        >>> import llmledger
        >>> with llmledger.track(provider="openai", model="gpt-4o", feature="chat") as t:
        ...     t.set_usage(input_tokens=12, output_tokens=3)
        >>> t.event.status, t.event.usage.total_tokens
        ('ok', 15)
    """

    def __init__(self, **values: Any) -> None:
        self._values = values
        self._tracker: Tracker | None = None
        self._started = 0.0
        self._ts: datetime | None = None

    def __enter__(self) -> Tracker:
        ledger = get_ledger()
        ledger.check_feature(self._values.get("feature") or current_attribution().feature)
        self._tracker = Tracker(ledger, dict(self._values))
        self._ts = datetime.now(UTC)
        self._started = time.perf_counter()
        return self._tracker

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration_ms = (time.perf_counter() - self._started) * 1000
        tracker = self._tracker
        assert tracker is not None
        values = dict(tracker._values)
        values.setdefault("ts", self._ts)
        values["duration_ms"] = round(duration_ms, 3)
        if exc is not None:
            values["status"] = "error"
            values["error_type"] = type(exc).__name__
            values["error_message"] = str(exc)[:_MAX_ERROR_MESSAGE]
            request_id = getattr(exc, "request_id", None)
            if isinstance(request_id, str):
                values.setdefault("request_id", request_id)
        ledger = tracker._ledger
        try:
            if tracker.response is not None and exc is None:
                event = build_event(ledger, response=tracker.response, **values)
            else:
                if tracker.response is None and not tracker._usage:
                    values.setdefault("usage_source", "missing")
                event = build_event(ledger, usage=tracker._usage, **values)
            event = ledger.prepare(event)
            ledger.submit(event)
            tracker.event = event
        except Exception:
            # Bookkeeping never breaks the tracked call; tests run strict to see it.
            if ledger.settings.strict:
                raise
            log.exception("llmledger: could not record a tracked call")
