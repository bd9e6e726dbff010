"""The manual recording paths: :func:`record` for known counts or a saved response,
:func:`track` to time any call and take usage from what it returns.

A :func:`track` block and the capture hooks never both record one call: a
provider call that a hook captures inside the block is the block's event (see
:class:`Block`), and the block records its own event only when no hook did.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import TYPE_CHECKING, Any

import llmledger.runtime.ledger as _ledger_module
from llmledger.core.attribution import (
    Attribution,
    attribute,
    attribution_in_force,
    check_feature,
    current_attribution,
)
from llmledger.core.errors import InvalidEventError, InvalidUsageError
from llmledger.core.events import ATTRIBUTION_FIELDS, FrozenDict, UsageEvent
from llmledger.core.usage import BUCKETS, Usage
from llmledger.core.validation import event_time
from llmledger.runtime.ledger import Ledger, get_ledger

if TYPE_CHECKING:
    from llmledger.normalize.base import Reading
    from llmledger.pricing import PriceResolver

__all__ = [
    "Block",
    "Tracker",
    "assemble_event",
    "build_event",
    "check_service_tier",
    "current_block",
    "record",
    "track",
]

log = logging.getLogger("llmledger")

_EVENT_FIELDS = frozenset(f.name for f in fields(UsageEvent)) - {"usage"}
_BUCKET_NAMES = frozenset(BUCKETS)
_KNOWN = _EVENT_FIELDS | _BUCKET_NAMES
_MAX_ERROR_MESSAGE = 1000
_NO_TAGS: FrozenDict[str] = FrozenDict()
# The attribution in force where none was set (the context variable's default).
_NO_ATTRIBUTION = contextvars.Context().run(attribution_in_force)
# The collection fields but tags: UsageEvent.from_values converts those a caller gives.
_OTHER_COLLECTIONS = frozenset({"warnings", "cost_breakdown", "usage_parts", "fee_counts"})
# The fields UsageEvent.validate() checks that assemble_event() leaves as given.
_VALIDATED = frozenset(
    {"status", "operation", "usage_source", "cost_source", "duration_ms", "ttft_ms"}
)
_now = datetime.now


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
    *,
    features: Collection[str] = (),
    response: Any = None,
    stream: Any = None,
    reading: Reading | None = None,
    usage: Usage | Mapping[str, int] | None = None,
    now: datetime | None = None,
    **values: Any,
) -> UsageEvent:
    """Build a validated event from keyword values, as :func:`record` does, without queuing it.

    ``reading`` is a response already read by :mod:`llmledger.normalize`, used like
    ``response``; ``stream`` is a whole stream transcript to read.

    Args:
        features: The declared feature names; when not empty, the event's feature
            must be one of them.
        response: A provider response to read usage from.
        stream: A stream transcript to read usage from.
        reading: A response already read.
        usage: Token counts.
        now: The event's time when ``ts`` is not given (default: the clock).
        **values: Fields of :class:`UsageEvent` and token counts named after the buckets.

    Raises:
        InvalidEventError: on an unknown field or a bad value.
        UnknownFeatureError: on a feature that is not declared.

    Example:
        >>> event = build_event(features={"search"}, provider="openai", model="gpt-4o",
        ...                     input_tokens=10, feature="search")
        >>> event.usage.input_tokens, event.usage_source
        (10, 'manual')
    """
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
    return assemble_event(values, features=features, reading=reading, usage=usage, now=now)


def assemble_event(
    values: dict[str, Any],
    *,
    features: Collection[str] = (),
    reading: Reading | None = None,
    usage: Usage | Mapping[str, int] | None = None,
    now: datetime | None = None,
) -> UsageEvent:
    """Build a validated event from a dict of field values (consumed) and what was read.

    Unlike :func:`build_event`, ``values["stream"]`` is the event's ``stream`` flag
    (what the capture hooks pass), not a transcript.

    Raises:
        InvalidEventError: on an unknown field or a bad value.
        UnknownFeatureError: on a feature that is not declared.

    Example:
        >>> assemble_event({"provider": "openai", "model": "gpt-4o", "stream": True}).stream
        True
    """
    # Only what a programmer's mistake makes wrong is checked here, each check a few
    # set or dict operations: record() runs on the caller's thread.
    if not _KNOWN.issuperset(values):
        unknown = set(values) - _KNOWN
        raise InvalidEventError(f"unknown event field(s): {', '.join(sorted(unknown))}")
    # No field given that UsageEvent.validate() checks, but provider and model.
    plain = reading is None and now is None and _VALIDATED.isdisjoint(values)
    named = _BUCKET_NAMES.intersection(values)
    counts = None
    if named:
        pop = values.pop
        counts = {}
        for name in named:
            counts[name] = pop(name)
    get = values.get
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
        values.setdefault("warnings", tuple(reading.warnings))
        values.setdefault("usage_parts", reading.usage_parts)
        values.setdefault("fee_counts", reading.fee_counts)
        if counts or usage is not None:
            raise InvalidEventError("pass token counts or a response, not both")
        event_usage = reading.usage
        if reading.reported_cost is not None and "cost" not in values:
            values["cost"] = reading.reported_cost
            values["cost_source"] = "provider-reported"
    else:
        if counts:
            if usage is not None:
                raise InvalidEventError("pass usage= or bucket keywords, not both")
            event_usage = Usage.from_counts(counts)
        elif isinstance(usage, Usage):
            event_usage = usage
        else:
            event_usage = Usage.from_dict(dict(usage or {}))
        if event_usage.problems():
            raise InvalidUsageError("; ".join(event_usage.problems()))
        if "usage_source" not in values:
            values["usage_source"] = "manual"
    values["usage"] = event_usage

    attribution = attribution_in_force()
    if attribution is _NO_ATTRIBUTION:
        for name in ATTRIBUTION_FIELDS:
            values.setdefault(name, None)
    else:
        for name in ATTRIBUTION_FIELDS:
            if get(name) is None:
                values[name] = getattr(attribution, name)
    tags = get("tags")
    if tags:
        if not isinstance(tags, Mapping):
            raise InvalidEventError("tags must be a mapping of strings to strings")
        values["tags"] = FrozenDict({**attribution.tags, **{k: str(v) for k, v in tags.items()}})
    elif tags is not None and not isinstance(tags, Mapping):
        raise InvalidEventError("tags must be a mapping of strings to strings")
    else:
        values["tags"] = FrozenDict(attribution.tags) if attribution.tags else _NO_TAGS
    if features:
        check_feature(values["feature"], features)

    if get("cost") is not None:
        values["cost"] = _as_decimal("cost", values["cost"])
        values.setdefault("cost_source", "manual")
    ts = get("ts")
    if ts is None:
        values["ts"] = now or _now(UTC)
    else:
        values["ts"] = event_time(ts, now or _now(UTC))
    if not get("provider"):
        raise InvalidEventError("provider is required")
    if not get("model"):
        raise InvalidEventError("model is required (the response did not name one)")
    if _OTHER_COLLECTIONS.isdisjoint(values):  # tags, the one set, is a FrozenDict
        event = UsageEvent.from_fields(values)
    else:
        event = UsageEvent.from_values(values)
    if plain and values["tags"] is _NO_TAGS:
        # What validate() would find: every other field it checks is a default, one set
        # above or checked above (the time, the cost, the counts).
        if not isinstance(values["provider"], str):
            raise InvalidEventError("provider is required")
        if not isinstance(values["model"], str):
            raise InvalidEventError("model is required")
        return event
    # Counts given here were refused above when they break the invariants.
    return event.validate(usage_sound=reading is None)


def record(
    *,
    response: Any = None,
    stream: Any = None,
    usage: Usage | Mapping[str, int] | None = None,
    **values: Any,
) -> UsageEvent:
    """Record one call: from token counts, or from a provider response to read.

    The event is priced at once from the prices in memory (with the price in force at
    its ``ts``) and queued for the background writer; :func:`llmledger.flush` waits
    until it is committed.  The prices load in the background when a process first
    records: until they are loaded, the event comes back with its price status
    ``pending`` (no cost yet), and the stored event is priced by the writer.

    Args:
        response: A provider response (dict, JSON text, or an SDK response object)
            whose usage is read with the provider's counting rules.
        stream: A whole stream transcript (SSE text or Bedrock event-stream bytes).
        usage: Token counts as a :class:`Usage` or a mapping of bucket names.
        **values: Any field of :class:`UsageEvent` (``provider``, ``model``, ``ts`` for
            backfills, ``tenant``, ``user``, ``feature``, ``tags``, ``cost``, …) and token
            counts named after the buckets (``input_tokens=…``, ``cache_read_tokens=…``).

    Returns:
        The recorded event, with its cost (or ``cost=None`` and the reason it is
        unpriced, or that its price is pending). Events are immutable: the writer
        stores this very value, or its priced copy when the price was pending.

    Example:
        >>> import llmledger
        >>> llmledger.get_ledger().prices.wait()  # the prices load in the background
        True
        >>> e = llmledger.record(provider="openai", model="gpt-4o", input_tokens=1000,
        ...                      output_tokens=100, feature="summary")
        >>> e.cost
        Decimal('0.003500000')

    Raises:
        InvalidEventError: on an unknown field, a bad value, counts that break the
            invariants (a part larger than its total, a negative count), or a
            ``service_tier`` no price knows for a model that is priced (checked
            once the prices are loaded).
        UnknownFeatureError: when features are declared and this one is not.
    """
    # The process ledger is read directly: get_ledger() differs only before it is built.
    ledger = _ledger_module._ledger or get_ledger()
    if response is None and stream is None:
        event = assemble_event(values, features=ledger.features, usage=usage)
    else:
        event = build_event(
            features=ledger.features, response=response, stream=stream, usage=usage, **values
        )
    prices = ledger.prices
    cache = prices.cache
    if cache is None:
        event = prices.priced_now(event)
    else:
        if values.get("service_tier") is not None and event.service_tier:
            check_service_tier(cache.resolver, event)
        # Counts given here (not read from a response) are known sound (see
        # assemble_event), and the event was made here: it is priced in place.
        event = cache.priced(event, usage_sound=response is None and stream is None, in_place=True)
    ledger.submit(event)
    if cache is None:
        prices.warm()  # last: the loading thread competes with this one for the GIL
    return event


#: What a captured call hands over once it ends: the deferred work building its event.
Build = Callable[[], UsageEvent]

# Fields a block never gives a captured call's event: the hook measured them.
_MEASURED = frozenset({"id", "ts", "duration_ms", "ttft_ms", "usage", "usage_raw", "usage_source"})
_ATTRIBUTED = frozenset({*ATTRIBUTION_FIELDS, "tags"})


@dataclass(eq=False, slots=True)
class Block:
    """A :func:`track` block open in a context; the provider calls hooked inside it are its own.

    The capture hooks mark the block ``seen`` when a call starts inside it and hand
    it the call's deferred event when the call ends (:meth:`take`); the block
    builds those at its exit, gives them its attribution and fields
    (:meth:`apply`), prices and records them. A call still running when the block
    exits (a stream read later) is recorded by its hook when it ends, still with
    the block's attribution and fields.
    """

    ledger: Ledger
    values: dict[str, Any]
    parent: Block | None = None
    entered: Attribution = field(default_factory=Attribution)
    seen: int = 0
    closed: bool = False
    builds: list[Build] = field(default_factory=list)
    recorded: list[UsageEvent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, build: Build) -> bool:
        """Keep the deferred event of a call that ended inside the block (False once closed)."""
        with self.lock:
            if self.closed:
                return False
            self.builds.append(build)
            return True

    def close(self) -> list[Build]:
        """Close the block; the deferred events it was handed."""
        with self.lock:
            self.closed = True
            builds, self.builds = self.builds, []
        return builds

    def named(self) -> dict[str, Any]:
        """What this block and the blocks around it name; the innermost wins, tags merge."""
        outer = self.parent.named() if self.parent is not None else {}
        tags = {**outer.get("tags", {}), **(self.values.get("tags") or {})}
        merged = {**outer, **{k: v for k, v in self.values.items() if v is not None}}
        if tags:
            merged["tags"] = tags
        return merged

    def apply(self, event: UsageEvent) -> UsageEvent:
        """A captured call's event with what the block names: its other fields where the
        hook saw none (the hook's measurements and usage always stay), and attribution
        set with ``t.set()`` after the block opened.

        The attribution the block opened with needs nothing here: it was in force (as
        an :func:`~llmledger.attribute` block) when the call started, beneath any
        block or framework metadata nested inside it.

        Raises:
            InvalidEventError: on a field the event does not have.
            UnknownFeatureError: on a feature that is not declared.
        """
        named = self.named()
        unknown = set(named) - _EVENT_FIELDS - set(BUCKETS)
        if unknown:
            raise InvalidEventError(f"unknown event field(s): {', '.join(sorted(unknown))}")
        changes: dict[str, Any] = {}
        for name, value in named.items():
            if name in _ATTRIBUTED or name in _MEASURED or name in BUCKETS:
                continue
            if getattr(event, name) is None or (name == "model" and event.model == "unknown"):
                changes[name] = value
        entered = self.entered
        for name in ATTRIBUTION_FIELDS:
            value = self.values.get(name)
            if value is not None and value != getattr(entered, name):
                changes[name] = value
        tags = self.values.get("tags")
        if tags:
            if not isinstance(tags, Mapping):
                raise InvalidEventError("tags must be a mapping of strings to strings")
            later = {k: str(v) for k, v in tags.items() if entered.tags.get(k) != str(v)}
            if later:
                changes["tags"] = {**event.tags, **later}
        check_feature(changes.get("feature", event.feature), self.ledger.features)
        return event.replace(**changes).validate() if changes else event

    def deferred(self, build: Build) -> Build:
        """The work building a call's event after the block closed, the block's fields applied."""
        return lambda: self.apply(build())


current_block: contextvars.ContextVar[Block | None] = contextvars.ContextVar(
    "llmledger_track_block", default=None
)


def check_service_tier(pricer: PriceResolver, event: UsageEvent) -> None:
    """Refuse a service tier given by a user that no price knows for the event's model.

    A tier read from a response is never refused (it is priced and flagged when
    no price knows it); one a user typed is checked, so a typo is not recorded
    as a call on a tier nobody sells.  A model no price knows is not checked: it
    is recorded unpriced whatever its tier.

    Raises:
        InvalidEventError: naming the tier and the tiers known for the model.

    Example:
        >>> from datetime import UTC, datetime
        >>> from llmledger.pricing import PriceResolver
        >>> e = UsageEvent(provider="openai", model="gpt-4o", service_tier="turbo",
        ...                ts=datetime(2025, 11, 1, tzinfo=UTC))
        >>> check_service_tier(PriceResolver(), e)
        Traceback (most recent call last):
        ...
        llmledger.core.errors.InvalidEventError: unknown service tier 'turbo' for ...
    """
    tier = event.service_tier
    if tier is None:
        return
    names = dict.fromkeys(n for n in (event.response_model, event.model) if n)
    known: tuple[str, ...] = ()
    for name in names:
        known = pricer.service_tiers(event.provider, name, event.ts)
        if known:
            break
    if known and tier not in known:
        raise InvalidEventError(
            f"unknown service tier {tier!r} for {event.provider}/{event.model}; "
            f"known: {', '.join(known)}"
        )


class Tracker:
    """What :func:`track` yields: hand it the response (or counts) of the call.

    After the block, ``event`` is the recorded event with its cost, and ``events``
    every event the block recorded (several when it made several hooked calls).
    """

    def __init__(self, ledger: Ledger, values: dict[str, Any]) -> None:
        self._ledger = ledger
        self._values = values
        self.response: Any = None
        self.event: UsageEvent | None = None
        self.events: tuple[UsageEvent, ...] = ()
        self._usage: dict[str, int] = {}

    def set_response(self, response: Any) -> None:
        """Take usage, model and request id from this provider response.

        When a capture hook recorded the call inside the block, its reading of the
        same response is used instead.
        """
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

    With :func:`llmledger.instrument` on, a provider call made inside the block is
    recorded once: the hook's event (usage, timings, status, request id) with the
    block's attribution and fields, and ``t.event`` is that event with its cost.
    Each hooked call is its own event (``t.events``); the block records an event of
    its own only when no hook saw a call inside it. See ``docs/capture.md``.

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
        self._block: Block | None = None
        self._token: contextvars.Token[Block | None] | None = None
        self._attribution: attribute | None = None
        self._started = 0.0
        self._ts: datetime | None = None

    def __enter__(self) -> Tracker:
        ledger = get_ledger()
        check_feature(self._values.get("feature") or current_attribution().feature, ledger.features)
        tracker = Tracker(ledger, dict(self._values))
        # What the block names is in force for the calls inside it, as attribute() is,
        # so blocks and framework metadata nested inside refine it.
        named = {name: self._values.get(name) for name in ATTRIBUTION_FIELDS}
        self._attribution = attribute(**named, tags=self._values.get("tags"))
        entered = self._attribution.__enter__()
        self._tracker = tracker
        self._block = Block(ledger, tracker._values, current_block.get(), entered)
        self._token = current_block.set(self._block)
        self._ts = datetime.now(UTC)
        self._started = time.perf_counter()
        return tracker

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration_ms = (time.perf_counter() - self._started) * 1000
        tracker, block, token = self._tracker, self._block, self._token
        assert tracker is not None and block is not None and token is not None
        assert self._attribution is not None
        current_block.reset(token)
        self._attribution.__exit__()
        builds = block.close()
        ledger = tracker._ledger
        try:
            if block.seen:
                events = [*block.recorded, *self._hooked(block, builds)]
            else:
                events = [self._own(tracker, duration_ms, exc)]
            tracker.events = tuple(events)
            tracker.event = events[-1] if events else None
            parent = block.parent
            if parent is not None and not parent.closed:
                # The calls of a nested block are the outer block's calls too.
                parent.seen += 1
                parent.recorded.extend(events)
        except Exception:
            # Bookkeeping never breaks the tracked call; tests run strict to see it.
            if ledger.settings.strict:
                raise
            log.exception("llmledger: could not record a tracked call")

    def _hooked(self, block: Block, builds: list[Build]) -> list[UsageEvent]:
        """Record the events of the hooked calls that ended inside the block."""
        ledger = block.ledger
        events = []
        for build in builds:
            try:
                ledger.prices.warm()
                event = ledger.prices.priced_now(block.apply(build()))
            except Exception:
                # One call that cannot be recorded leaves the others recorded.
                if ledger.settings.strict:
                    raise
                log.exception("llmledger: could not record a call made in a tracked block")
                continue
            ledger.submit(event)
            events.append(event)
        return events

    def _own(self, tracker: Tracker, duration_ms: float, exc: BaseException | None) -> UsageEvent:
        """Record the block's own event: no hook saw a call inside it."""
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
        if tracker.response is not None and exc is None:
            event = build_event(features=ledger.features, response=tracker.response, **values)
        else:
            if tracker.response is None and not tracker._usage:
                values.setdefault("usage_source", "missing")
            event = build_event(features=ledger.features, usage=tracker._usage, **values)
        event = ledger.prices.priced_now(event)
        ledger.submit(event)
        ledger.prices.warm()
        return event
