"""The one record llmledger keeps: a usage event per provider call."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, NoReturn, TypeVar, get_args

from llmledger.core.billing import UsagePart
from llmledger.core.errors import InvalidEventError
from llmledger.core.ids import new_id
from llmledger.core.usage import Usage

__all__ = [
    "ATTRIBUTION_FIELDS",
    "COST_SOURCES",
    "DATABASE_PRICE_REF",
    "OPERATIONS",
    "PRICE_PENDING_REASON",
    "PRICE_STATUSES",
    "STATUSES",
    "USAGE_SOURCES",
    "ContentRecord",
    "CostSource",
    "FrozenDict",
    "Operation",
    "PriceStatus",
    "Status",
    "UsageEvent",
    "UsageSource",
    "current_cost_source",
]

Operation = Literal["chat", "responses", "embeddings", "images", "audio", "rerank", "other"]
Status = Literal["ok", "error", "incomplete", "abandoned", "blocked"]
UsageSource = Literal["provider", "estimated", "missing", "manual"]
CostSource = Literal["catalog", "supplement", "file", "database", "provider-reported", "manual"]
#: How far a call's cost is known, apart from how the call went: ``priced`` (every
#: billed unit had a rate), ``incomplete`` (priced from the rates there were; some
#: billed unit had none, ``incomplete_reason`` names it) or ``unpriced`` (no cost).
#: An event ``record()`` returns before the prices are loaded is ``pending``: the
#: writer prices it before it is stored, so no stored event is ever pending.
PriceStatus = Literal["priced", "incomplete", "unpriced", "pending"]

OPERATIONS: tuple[Operation, ...] = get_args(Operation)
STATUSES: tuple[Status, ...] = get_args(Status)
USAGE_SOURCES: tuple[UsageSource, ...] = get_args(UsageSource)
COST_SOURCES: tuple[CostSource, ...] = get_args(CostSource)
PRICE_STATUSES: tuple[PriceStatus, ...] = get_args(PriceStatus)
ATTRIBUTION_FIELDS: tuple[str, ...] = ("tenant", "user", "feature", "session")

#: ``price_ref`` prefix of the prices added through the service (database rows).
DATABASE_PRICE_REF = "user:db:"

#: The ``unpriced_reason`` of an event whose price is not known yet: it was recorded
#: while the prices were still loading, and the writer prices it before storing it.
PRICE_PENDING_REASON = "price pending: the prices are still loading; the stored event is priced"


def current_cost_source(
    source: CostSource | Literal["override"] | None, price_ref: str | None
) -> CostSource | None:
    """The cost source of today's vocabulary for one written before it.

    Events stored or sent before price files and database prices were told apart
    say ``override`` for both; the price ref says which it was.

    Example:
        >>> current_cost_source("override", "user:db:acme/acme-1")
        'database'
        >>> current_cost_source("override", "user:prices.yaml:acme/acme-1")
        'file'
        >>> current_cost_source("catalog", "genai-prices@0.2.3:openai/gpt-4o")
        'catalog'
    """
    if source == "override":
        return "database" if (price_ref or "").startswith(DATABASE_PRICE_REF) else "file"
    return source


V = TypeVar("V")


class FrozenDict(dict[str, V]):
    """A ``dict`` that refuses every change: an event's tags and cost breakdown.

    A ``dict`` underneath rather than a ``MappingProxyType``, so the JSON encoders,
    pickling and ``isinstance(x, dict)`` checks of the store and the wire keep working.

    Example:
        >>> tags = FrozenDict({"env": "prod"})
        >>> tags == {"env": "prod"}
        True
        >>> tags["env"] = "dev"
        Traceback (most recent call last):
        ...
        TypeError: an event's FrozenDict cannot be changed; build a new event with replace()
    """

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("an event's FrozenDict cannot be changed; build a new event with replace()")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle and copy rebuild it whole; the default path would call __setitem__.
        return (type(self), (dict(self),))

    def __copy__(self) -> FrozenDict[V]:
        return self

    def __deepcopy__(self, memo: Any) -> FrozenDict[V]:
        return self


# Not ``slots=True``: an event's fields live in its ``__dict__`` so that
# :meth:`UsageEvent.from_fields` and :meth:`UsageEvent.replace` make one in a single
# step, where a slotted frozen dataclass sets its 36 fields one call at a time
# (the caller's thread of ``record()`` builds one per call).
@dataclass(frozen=True)
class UsageEvent:
    """One provider call (or one manual ``record()``), priced and attributed.

    Immutable: pricing, capture and the service make a changed copy
    (:meth:`replace`), so an event handed to the caller and one the background
    writer stores can never change under each other. ``tags`` and
    ``cost_breakdown`` are read-only mappings, ``warnings`` a tuple.

    ``cost`` is ``None`` with ``unpriced_reason`` set when no price is known: an
    unknown price is never reported as zero.  A cost that leaves out billed units
    the price in force has no rate for carries ``incomplete_reason`` naming them;
    :attr:`price_status` says which of the three an event is.

    Example:
        >>> from datetime import datetime, timezone
        >>> e = UsageEvent(provider="openai", model="gpt-4o",
        ...                ts=datetime(2025, 1, 1, tzinfo=timezone.utc),
        ...                usage=Usage(input_tokens=10, output_tokens=5))
        >>> e.usage.total_tokens
        15
        >>> e.replace(feature="search").feature, e.feature
        ('search', None)
    """

    provider: str
    model: str
    ts: datetime
    id: str = field(default_factory=new_id)
    duration_ms: float | None = None
    ttft_ms: float | None = None
    response_model: str | None = None
    operation: Operation = "chat"
    stream: bool = False
    service_tier: str | None = None
    request_id: str | None = None
    finish_reason: str | None = None
    status: Status = "ok"
    error_type: str | None = None
    error_message: str | None = None
    usage: Usage = field(default_factory=Usage)
    usage_raw: Any = None
    usage_source: UsageSource = "provider"
    cost: Decimal | None = None
    cost_breakdown: Mapping[str, Decimal] | None = None
    cost_source: CostSource | None = None
    price_ref: str | None = None
    unpriced_reason: str | None = None
    incomplete_reason: str | None = None
    tenant: str | None = None
    user: str | None = None
    feature: str | None = None
    session: str | None = None
    tags: Mapping[str, str] = field(default_factory=FrozenDict)
    api_key_fingerprint: str | None = None
    warnings: tuple[str, ...] = ()
    # The call's usage by billed step and the units it paid per use, as read
    # from the response (llmledger.normalize.Reading): what pricing needs to
    # price an advisor step at its own model and a web search at its fee.
    usage_parts: tuple[UsagePart, ...] = ()
    fee_counts: Mapping[str, int] = field(default_factory=FrozenDict)

    def __post_init__(self) -> None:
        # Copies of the caller's collections, so changing those later changes no event.
        for name in _COLLECTIONS:
            value = getattr(self, name)
            checked = _collection(name, value)
            if checked is not value:
                object.__setattr__(self, name, checked)

    @classmethod
    def from_fields(cls, values: dict[str, Any]) -> UsageEvent:
        """An event made from field values that already have their fields' types.

        The fast way to make an event, for code that built the values itself
        (``record()``, the capture hooks): ``values`` becomes the event's state as
        it is (the dict is taken over; do not change it afterwards), fields it
        leaves out take their defaults, and nothing is checked. ``tags``,
        ``cost_breakdown`` and ``fee_counts`` must be :class:`FrozenDict`,
        ``warnings`` and ``usage_parts`` tuples. Anything else goes through the
        constructor, which converts and checks.

        Example:
            >>> from datetime import timezone
            >>> ts = datetime(2025, 1, 1, tzinfo=timezone.utc)
            >>> e = UsageEvent.from_fields({"provider": "openai", "model": "gpt-4o", "ts": ts})
            >>> e == UsageEvent(provider="openai", model="gpt-4o", ts=ts, id=e.id)
            True
        """
        if "id" not in values:
            values["id"] = new_id()
        event = _new_object(cls)
        _set_attribute(event, "__dict__", values)
        return event

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> UsageEvent:
        """:meth:`from_fields`, with the collection fields (``tags``, ``warnings``,
        ``cost_breakdown``, ``usage_parts``, ``fee_counts``) converted to their event
        types first, as the constructor does; other values must have their types.

        Raises:
            InvalidEventError: on a collection of the wrong shape.
        """
        for name in _COLLECTIONS:
            if name in values:
                values[name] = _collection(name, values[name])
        return cls.from_fields(values)

    def validate(self, *, usage_sound: bool = False) -> UsageEvent:
        """Check the fields a store relies on; broken usage invariants become warnings.

        ``usage_sound`` says the caller saw ``self.usage.problems()`` empty already
        (``record()`` refuses counts that break the invariants).  A check added here
        belongs in ``llmledger.runtime.recording.assemble_event`` too, which skips this
        for an event whose fields it made or checked itself.

        Returns:
            The event, or a copy whose ``warnings`` name the usage invariants it
            breaks (a usage is never silently fixed).

        Raises:
            InvalidEventError: on a naive time, an unknown status or operation, a
                malformed tag map, or a negative duration.

        Example:
            >>> from datetime import datetime, timezone
            >>> e = UsageEvent(provider="openai", model="m",
            ...                ts=datetime(2025, 1, 1, tzinfo=timezone.utc),
            ...                usage=Usage(input_tokens=1, cache_read_tokens=2))
            >>> e.validate().warnings[0]
            'cache_read_tokens + cache_write_tokens (2 + 0) exceed input_tokens (1)'
            >>> e.warnings
            ()
        """
        if not isinstance(self.ts, datetime) or self.ts.tzinfo is None:
            raise InvalidEventError(f"ts must be a timezone-aware datetime, got {self.ts!r}")
        if not self.provider or not isinstance(self.provider, str):
            raise InvalidEventError("provider is required")
        if not self.model or not isinstance(self.model, str):
            raise InvalidEventError("model is required")
        if self.status not in STATUSES:
            raise InvalidEventError(
                f"status must be one of {', '.join(STATUSES)}, got {self.status!r}"
            )
        if self.operation not in OPERATIONS:
            raise InvalidEventError(
                f"operation must be one of {', '.join(OPERATIONS)}, got {self.operation!r}"
            )
        if self.usage_source not in USAGE_SOURCES:
            raise InvalidEventError(f"usage_source must be one of {', '.join(USAGE_SOURCES)}")
        if self.cost_source is not None and self.cost_source not in COST_SOURCES:
            raise InvalidEventError(f"cost_source must be one of {', '.join(COST_SOURCES)}")
        for name in ("duration_ms", "ttft_ms"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise InvalidEventError(f"{name} must be a non-negative number, got {value!r}")
        if self.tags and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.tags.items()
        ):
            raise InvalidEventError("tags must map strings to strings")
        if self.cost is not None and (not isinstance(self.cost, Decimal) or self.cost < 0):
            raise InvalidEventError(f"cost must be a non-negative Decimal, got {self.cost!r}")
        if usage_sound:
            return self
        problems = self.usage.problems()
        if not problems:
            return self
        bad = [p for p in problems if "integer" in p]
        if bad:
            raise InvalidEventError(bad[0])
        new = [p for p in problems if p not in self.warnings]
        return self.replace(warnings=(*self.warnings, *new)) if new else self

    def replace(self, **changes: Any) -> UsageEvent:
        """A copy with some fields changed (as :func:`dataclasses.replace`, in one step).

        Raises:
            TypeError: on a name that is not a field.
            InvalidEventError: on a collection field of the wrong shape.
        """
        if not _FIELD_NAMES.issuperset(changes):
            unknown = sorted(changes.keys() - _FIELD_NAMES)
            raise TypeError(f"UsageEvent has no field(s) {', '.join(unknown)}")
        for name in _COLLECTIONS:
            if name in changes:
                changes[name] = _collection(name, changes[name])
        return self.from_fields({**self.__dict__, **changes})

    @property
    def price_status(self) -> PriceStatus:
        """``unpriced`` without a cost, ``incomplete`` when the cost leaves billed
        units out (``incomplete_reason``), else ``priced``; ``pending`` while the
        price is not known yet (:data:`PRICE_PENDING_REASON`).

        Example:
            >>> from datetime import timezone
            >>> e = UsageEvent(provider="openai", model="m",
            ...                ts=datetime(2025, 1, 1, tzinfo=timezone.utc))
            >>> e.price_status, e.replace(cost=Decimal("0.1")).price_status
            ('unpriced', 'priced')
        """
        if self.cost is None:
            return "pending" if self.unpriced_reason == PRICE_PENDING_REASON else "unpriced"
        return "incomplete" if self.incomplete_reason else "priced"

    @property
    def ts_utc(self) -> datetime:
        """The start time in UTC."""
        return self.ts.astimezone(UTC)


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(UsageEvent))
_COLLECTIONS = frozenset({"tags", "warnings", "cost_breakdown", "usage_parts", "fee_counts"})
_new_object = object.__new__
_set_attribute = object.__setattr__

# Defaults of the fields made by a factory, for the events from_fields() makes
# without them: all immutable, so one value serves every event (the id is made).
UsageEvent.usage = Usage()
UsageEvent.tags = FrozenDict()
UsageEvent.fee_counts = FrozenDict()


def _collection(name: str, value: Any) -> Any:
    """A collection field's value in its event type (a copy when it is not already).

    Raises:
        InvalidEventError: on a value of the wrong shape.
    """
    if name == "warnings" or name == "usage_parts":
        if type(value) is tuple:
            return value
        if name == "warnings" and (isinstance(value, str) or not isinstance(value, Iterable)):
            raise InvalidEventError("warnings must be a list of strings")
        return tuple(value)
    if type(value) is FrozenDict or (value is None and name == "cost_breakdown"):
        return value
    if not isinstance(value, Mapping):
        what = {
            "tags": "tags must map strings to strings",
            "fee_counts": "fee_counts must map fee names to counts",
        }.get(name, "cost_breakdown must map names to amounts")
        raise InvalidEventError(what)
    return FrozenDict(value)


@dataclass(frozen=True, slots=True)
class ContentRecord:
    """The (redacted) prompt and response text of one event.

    Example:
        >>> from datetime import UTC, datetime
        >>> ContentRecord("01JDOC", datetime(2025, 1, 1, tzinfo=UTC), "Hi?", "Hello.").response
        'Hello.'
    """

    event_id: str
    ts: datetime
    prompt: str | None
    response: str | None
