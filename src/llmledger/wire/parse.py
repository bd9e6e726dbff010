"""Events on the wire: the inverse of :func:`llmledger.wire.serialize.event_to_json`.

``llmledger logs --json`` prints events in one JSON shape (:class:`EventJson`);
the service ingests the same shape and the remote sink sends it, each event
optionally with the prompt and response text kept for it (:class:`EventIn`,
field ``content``).  The models refuse unknown fields, take counts as strict
non-negative integers and money as a decimal string, bound every number and
refuse text no store can hold (NUL, lone surrogates); :func:`parse_event` turns
one JSON object into a :class:`UsageEvent`, or raises :class:`InvalidEventError`
with every problem in one readable sentence, and
:func:`parse_body_with_content` reads a request body, text included.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import pydantic

from llmledger.core.billing import Fee, UsagePart
from llmledger.core.errors import InvalidEventError
from llmledger.core.events import (
    CostSource,
    FrozenDict,
    Operation,
    PriceStatus,
    Status,
    UsageEvent,
    UsageSource,
    current_cost_source,
)
from llmledger.core.ids import new_id
from llmledger.core.usage import Usage
from llmledger.core.validation import MAX_CLOCK_SKEW, check_feature, check_time

__all__ = [
    "MAX_BATCH",
    "MAX_CLOCK_SKEW",
    "MAX_CONTENT_CHARS",
    "MAX_COST",
    "MAX_MILLIS",
    "MAX_RAW_DEPTH",
    "MAX_TOKENS",
    "BatchIn",
    "ContentIn",
    "EventIn",
    "EventJson",
    "Parsed",
    "ParsedBody",
    "UsageIn",
    "UsagePartIn",
    "cost_over_limit",
    "describe_validation_error",
    "parse_body",
    "parse_body_with_content",
    "parse_event",
    "storable",
    "to_event",
]

#: Most events in one batch.
MAX_BATCH = 1000

#: Most tokens in one bucket of one call, and most USD one call costs: far above
#: any real call.  Every number of an event has a bound, so no sum a report or a
#: rollup makes of them is out of reach of the types that hold it.
MAX_TOKENS = 10**10
MAX_COST = 10**6
#: Longest duration (and time to first token) of one call: about 11.6 days.
MAX_MILLIS = 10**9
#: Deepest nesting of arrays and objects in ``usage_raw``.
MAX_RAW_DEPTH = 32
#: Integers in ``usage_raw`` fit in 64 bits, as every database and JSON reader holds them.
_RAW_INT = 2**63
#: Most characters of a prompt, and of a response, sent with one event.
MAX_CONTENT_CHARS = 1_000_000


def storable(value: str) -> str:
    """The text, when every store can hold it: PostgreSQL refuses NUL, UTF-8 has
    no lone surrogates.

    Raises:
        ValueError: naming what the text holds that no store can.

    Example:
        >>> storable("gpt-4o")
        'gpt-4o'
        >>> storable("a\\x00b")
        Traceback (most recent call last):
        ...
        ValueError: must not contain NUL characters (\\u0000)
    """
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (\\u0000)")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must not contain lone surrogates (\\ud800-\\udfff)") from None
    return value


def _raw_value(value: Any, depth: int = 0) -> None:
    if isinstance(value, str):
        storable(value)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not -_RAW_INT < value < _RAW_INT:
            raise ValueError(f"holds an integer outside 64 bits: {value}")
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("holds a number that is not finite (NaN or Infinity)")
    elif isinstance(value, dict | list):
        if depth >= MAX_RAW_DEPTH:
            raise ValueError(f"is nested more than {MAX_RAW_DEPTH} levels deep")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str):
                storable(key)
            _raw_value(item, depth + 1)
    else:
        raise ValueError(f"holds a {type(value).__name__}, which JSON has not")


def _raw_usage(value: Any) -> Any:
    _raw_value(value)
    return value


_Storable = pydantic.AfterValidator(storable)
_Count = Annotated[int, pydantic.Field(strict=True, ge=0, le=MAX_TOKENS)]
_Name = Annotated[
    str, pydantic.StringConstraints(strict=True, min_length=1, max_length=256), _Storable
]
_Text = Annotated[str, pydantic.StringConstraints(strict=True, max_length=256), _Storable]
_Message = Annotated[str, pydantic.StringConstraints(strict=True, max_length=10_000), _Storable]
_Millis = Annotated[float, pydantic.Field(ge=0, le=MAX_MILLIS, allow_inf_nan=False)]
_Amount = Annotated[
    str,
    pydantic.StringConstraints(strict=True, max_length=32, pattern=r"^[0-9]{1,7}(\.[0-9]{1,18})?$"),
]
_Ulid = Annotated[
    str, pydantic.StringConstraints(strict=True, pattern=r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")
]


def _text_only(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 time as text")
    return value


_Time = Annotated[datetime, pydantic.BeforeValidator(_text_only)]


class UsageIn(pydantic.BaseModel):
    """Token buckets of one event; ``total_tokens`` is optional and must add up."""

    model_config = pydantic.ConfigDict(extra="forbid")

    input_tokens: _Count = 0
    output_tokens: _Count = 0
    cache_read_tokens: _Count = 0
    cache_write_tokens: _Count = 0
    cache_write_5m_tokens: _Count = 0
    cache_write_1h_tokens: _Count = 0
    input_audio_tokens: _Count = 0
    input_image_tokens: _Count = 0
    reasoning_tokens: _Count = 0
    output_audio_tokens: _Count = 0
    tool_use_prompt_tokens: _Count = 0
    total_tokens: _Count | None = None


class UsagePartIn(pydantic.BaseModel):
    """One billed step of a call: its buckets and the model it ran on, if not the call's."""

    model_config = pydantic.ConfigDict(extra="forbid")

    model: _Name | None = None
    usage: UsageIn


class EventJson(pydantic.BaseModel):
    """One usage event in the JSON shape ``llmledger logs --json`` prints.

    ``id`` (a ULID) makes ingestion idempotent; without one the receiver makes a
    new id, so a retried request would record the call twice.  ``cost`` is a
    decimal string in USD; the service prices every event again and keeps only
    a ``manual`` or ``provider-reported`` cost (or one sent without a source).
    Token parts larger than their totals, negative counts and times in the
    future are refused.
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    id: _Ulid | None = None
    ts: _Time
    provider: _Name
    model: _Name
    duration_ms: _Millis | None = None
    ttft_ms: _Millis | None = None
    response_model: _Text | None = None
    operation: Operation = "chat"
    stream: Annotated[bool, pydantic.Field(strict=True)] = False
    service_tier: _Text | None = None
    request_id: _Text | None = None
    finish_reason: _Text | None = None
    status: Status = "ok"
    error_type: _Text | None = None
    error_message: _Message | None = None
    usage: UsageIn = pydantic.Field(default_factory=UsageIn)
    usage_parts: Annotated[list[UsagePartIn], pydantic.Field(max_length=64)] = pydantic.Field(
        default_factory=list
    )
    fee_counts: dict[Fee, _Count] = pydantic.Field(default_factory=dict)
    usage_raw: Annotated[Any, pydantic.AfterValidator(_raw_usage)] = None
    usage_source: UsageSource = "provider"
    cost: _Amount | None = None
    currency: Literal["USD"] = "USD"
    cost_breakdown: dict[_Text, _Amount] | None = None
    # ``override``: what events written before file and database prices were
    # told apart say for both (mapped by ``price_ref`` on the way in).
    cost_source: CostSource | Literal["override"] | None = None
    price_ref: _Message | None = None
    unpriced_reason: _Message | None = None
    # Derived from the cost and incomplete_reason: accepted, never trusted.
    price_status: PriceStatus | None = None
    incomplete_reason: _Message | None = None
    tenant: _Text | None = None
    user: _Text | None = None
    feature: _Text | None = None
    session: _Text | None = None
    tags: Annotated[dict[_Text, _Text], pydantic.Field(max_length=64)] = pydantic.Field(
        default_factory=dict
    )
    api_key_fingerprint: _Text | None = None
    warnings: Annotated[list[_Message], pydantic.Field(max_length=64)] = pydantic.Field(
        default_factory=list
    )


_Content = Annotated[
    str, pydantic.StringConstraints(strict=True, max_length=MAX_CONTENT_CHARS), _Storable
]


class ContentIn(pydantic.BaseModel):
    """The prompt and response text kept for one event: ``{"prompt": …, "response": …}``.

    Each is a string of at most ``MAX_CONTENT_CHARS`` characters, or null.
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    prompt: _Content | None = None
    response: _Content | None = None


class EventIn(EventJson):
    """An event as the service ingests it: :class:`EventJson`, and the text kept for it.

    ``content`` (input only, optional) is a :class:`ContentIn`:
    ``{"prompt": str | null, "response": str | null}``, each at most
    ``MAX_CONTENT_CHARS`` characters, already redacted by the sender.  The
    receiver keeps it apart from the event (``event_content``), and only for an
    event it inserts: a duplicate's text is ignored.  It is never part of the
    event's JSON shape, so ``llmledger logs --json`` does not print it.

    Example:
        >>> wire = EventIn.model_validate({"ts": "2025-01-01T00:00:00Z", "provider": "openai",
        ...     "model": "gpt-4o", "content": {"prompt": "Hi?", "response": "Hello."}})
        >>> wire.content.response
        'Hello.'
    """

    content: ContentIn | None = None


class BatchIn(pydantic.BaseModel):
    """A batch of events: ``{"events": [...]}``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    events: Annotated[list[EventIn], pydantic.Field(max_length=MAX_BATCH)]


_EVENT = pydantic.TypeAdapter(EventIn)
_BATCH = pydantic.TypeAdapter(BatchIn)


def describe_validation_error(error: pydantic.ValidationError, skip: int = 0) -> str:
    """Every problem of a pydantic error as ``field: message`` joined by ``; ``.

    Args:
        error: The error.
        skip: Leading parts of each location to leave out.

    Example:
        >>> try:
        ...     EventIn.model_validate({"ts": "2025-01-01T00:00:00Z", "provider": "p",
        ...                             "model": "m", "colour": 1, "usage": {"input_tokens": -1}})
        ... except pydantic.ValidationError as exc:
        ...     print(describe_validation_error(exc))
        usage.input_tokens: Input should be greater than or equal to 0; colour: unknown field
    """
    parts = []
    for item in error.errors(include_url=False):
        # A key holding a NUL is named with it escaped, so the answer can be logged as text.
        where = ".".join(str(p) for p in item["loc"][skip:]).replace("\x00", "\\u0000")
        message = "unknown field" if item["type"] == "extra_forbidden" else item["msg"]
        message = message.removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _usage_of(u: UsageIn, where: str) -> Usage:
    # The model's values are the buckets, in BUCKETS order, then total_tokens:
    # the usage takes them over in one step.
    counts = dict(u.__dict__)
    del counts["total_tokens"]
    usage = Usage.from_counts(counts)
    problems = usage.problems()
    if problems:
        raise InvalidEventError(f"{where}: " + "; ".join(problems))
    return usage


def to_event(
    wire: EventJson,
    *,
    now: datetime,
    features: Collection[str] = (),
    tenant: str | None = None,
) -> UsageEvent:
    """The :class:`UsageEvent` of a validated :class:`EventIn`.

    Args:
        wire: The validated event.
        now: The receiver's clock (aware), to refuse times in the future.
        features: The declared features; when not empty, any other feature is refused.
        tenant: The tenant the event is put in, whatever it says (the ingest
            key's); None keeps the event's own.

    Raises:
        InvalidEventError: on a time that is naive, before 2000 or in the future,
            an undeclared feature, or token counts whose parts exceed their totals.
    """
    ts = check_time(wire.ts, now)
    check_feature(wire.feature, features)
    u = wire.usage
    usage = _usage_of(u, "usage")
    parts = tuple(
        UsagePart(part.model, _usage_of(part.usage, f"usage_parts[{i}].usage"))
        for i, part in enumerate(wire.usage_parts)
    )
    if parts and sum((part.usage for part in parts), Usage()) != usage:
        # Parts priced at their own models must be the very usage the event reports.
        raise InvalidEventError("usage_parts do not add up to usage")
    if u.total_tokens is not None and u.total_tokens != usage.total_tokens:
        raise InvalidEventError(
            f"usage.total_tokens ({u.total_tokens}) is not input_tokens + output_tokens "
            f"({usage.total_tokens})"
        )
    cost = None if wire.cost is None else Decimal(wire.cost)
    if cost is not None and cost > MAX_COST:
        raise InvalidEventError(f"cost: {wire.cost} USD is more than one call can cost")
    breakdown = None
    if wire.cost_breakdown is not None:
        breakdown = FrozenDict({k: Decimal(v) for k, v in wire.cost_breakdown.items()})
        for part, amount in breakdown.items():
            if amount > MAX_COST:
                raise InvalidEventError(
                    f"cost_breakdown.{part}: {wire.cost_breakdown[part]} USD is more than one "
                    "call can cost"
                )
    # The wire model has checked every value's type: the event is made from its
    # values as they are (the wire-only ones left out, the collections and the
    # values that change type converted), without the constructor's checks.
    values = dict(wire.__dict__)
    for name in _WIRE_ONLY:
        values.pop(name, None)
    fees = wire.fee_counts
    tags = wire.tags
    warnings = wire.warnings
    values.update(
        ts=ts,
        id=new_id() if wire.id is None else wire.id.upper(),
        usage=usage,
        usage_parts=parts,
        fee_counts=FrozenDict({str(fee): uses for fee, uses in fees.items()}) if fees else _NO_MAP,
        cost=cost,
        cost_breakdown=breakdown,
        cost_source=current_cost_source(wire.cost_source, wire.price_ref),
        tags=FrozenDict(tags) if tags else _NO_MAP,
        warnings=tuple(warnings) if warnings else (),
    )
    if tenant is not None:
        values["tenant"] = tenant
    return UsageEvent.from_fields(values)


#: Fields of the wire shape that are not the event's (``price_status`` is derived).
_WIRE_ONLY = ("currency", "price_status", "content")
_NO_MAP: FrozenDict[Any] = FrozenDict()


def cost_over_limit(cost: Decimal | None) -> str | None:
    """Why a cost is more than one call can cost (``MAX_COST`` USD), or None.

    Costs the receiver computes are held to the same limit as costs it is sent,
    so no price, however wrong, can make a total overflow.

    Example:
        >>> cost_over_limit(Decimal("2.5")) is None
        True
        >>> cost_over_limit(Decimal("1e9"))
        'the price gives 1000000000 USD for this call, more than one call can cost (1000000 USD)'
    """
    if cost is None or cost <= MAX_COST:
        return None
    return (
        f"the price gives {cost:f} USD for this call, more than one call can cost ({MAX_COST} USD)"
    )


def parse_event(data: Any, *, now: datetime, features: Collection[str] = ()) -> UsageEvent:
    """One event from its JSON shape (a dict as ``json.loads`` returns it).

    Args:
        data: The decoded JSON object.
        now: The receiver's clock (aware), to refuse times in the future.
        features: The declared features; when not empty, any other feature is refused.

    Raises:
        InvalidEventError: naming every field that is unknown, of the wrong type
            or out of range, or the invariant that is broken.

    Example:
        >>> from datetime import UTC
        >>> e = parse_event({"ts": "2025-01-01T00:00:00Z", "provider": "openai",
        ...                  "model": "gpt-4o", "usage": {"input_tokens": 3}},
        ...                 now=datetime(2025, 6, 1, tzinfo=UTC))
        >>> e.usage.input_tokens, e.cost
        (3, None)
    """
    return to_event(_validated(data), now=now, features=features)


def _validated(data: Any) -> EventIn:
    if not isinstance(data, dict):
        raise InvalidEventError(f"an event is a JSON object, got {type(data).__name__}")
    try:
        return _EVENT.validate_python(data)
    except pydantic.ValidationError as exc:
        raise InvalidEventError(describe_validation_error(exc)) from None


#: One parsed event, or why it was refused.
Parsed = UsageEvent | InvalidEventError


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """A request body, read.

    Attributes:
        batch: Whether the body was a batch ``{"events": [...]}``.
        parsed: Per event, in order, the event or why it was refused.
        content: The text sent with the valid events that carry some, each
            paired with its event (the very object in ``parsed``, so a repeated
            id still names one occurrence).
    """

    batch: bool
    parsed: list[Parsed]
    content: list[tuple[UsageEvent, ContentIn]]


def parse_body_with_content(
    body: bytes | str,
    *,
    now: datetime,
    features: Collection[str] = (),
    tenant: str | None = None,
) -> ParsedBody:
    """A request body holding one event or a batch ``{"events": [...]}``, with its text.

    The whole batch is validated in one pass; only when some event is invalid
    are the events looked at one by one, so each gets its own answer.  An event
    whose ``content`` is malformed or too long is refused like any invalid event,
    and so is one whose feature is not in ``features`` (when features are declared).
    With ``tenant``, every event is put in that tenant (the ingest key's).

    Raises:
        InvalidEventError: when the body is not JSON, is neither an event nor a
            batch, holds more than ``MAX_BATCH`` events, or is a single invalid event.

    Example:
        >>> from datetime import UTC
        >>> now = datetime(2025, 6, 1, tzinfo=UTC)
        >>> body = parse_body_with_content(b'{"events": [{"ts": "2025-01-01T00:00:00Z", '
        ...     b'"provider": "openai", "model": "gpt-4o", "content": {"prompt": "Hi?"}}, '
        ...     b'{"ts": "2025-01-01T00:00:00Z", "provider": "openai", "model": "gpt-4o"}]}',
        ...     now=now)
        >>> [(event is body.parsed[0], text.prompt) for event, text in body.content]
        [(True, 'Hi?')]
    """
    content: list[tuple[UsageEvent, ContentIn]] = []
    try:
        batch = _BATCH.validate_json(body)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False)
        problem = describe_validation_error(exc)
    else:
        return ParsedBody(
            True,
            [_converted(wire, now, features, tenant, content) for wire in batch.events],
            content,
        )
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEventError(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidEventError(
            "the body is not JSON this service reads: nested too deeply"
        ) from None
    if isinstance(data, dict) and "events" not in data:
        event = _converted(_validated(data), now, features, tenant, content)
        if isinstance(event, InvalidEventError):
            raise event
        return ParsedBody(False, [event], content)
    per_event = all(
        len(e["loc"]) >= 2 and e["loc"][0] == "events" and isinstance(e["loc"][1], int)
        for e in errors
    )
    # Text the fast parser refuses (a lone surrogate) is one event's problem too.
    per_event = per_event or (
        isinstance(data, dict)
        and list(data) == ["events"]
        and isinstance(data["events"], list)
        and len(data["events"]) <= MAX_BATCH
    )
    if not per_event or not isinstance(data, dict):
        raise InvalidEventError(
            'the body must be an event or {"events": [...]} with at most '
            f"{MAX_BATCH} events: {problem}"
        )
    return ParsedBody(
        True,
        [_event_or_error(item, now, features, tenant, content) for item in data["events"]],
        content,
    )


def parse_body(body: bytes | str, *, now: datetime) -> tuple[bool, list[Parsed]]:
    """A request body holding one event or a batch ``{"events": [...]}``.

    As :func:`parse_body_with_content`, without the text.

    Returns:
        Whether the body was a batch, and per event the event or its error.

    Raises:
        InvalidEventError: when the body is not JSON, is neither an event nor a
            batch, holds more than ``MAX_BATCH`` events, or is a single invalid event.

    Example:
        >>> from datetime import UTC
        >>> now = datetime(2025, 6, 1, tzinfo=UTC)
        >>> batch, parsed = parse_body(b'{"events": [{"ts": "2025-01-01T00:00:00Z", '
        ...     b'"provider": "openai", "model": "gpt-4o"}, {"ts": 1}]}', now=now)
        >>> batch, [type(p).__name__ for p in parsed]
        (True, ['UsageEvent', 'InvalidEventError'])
    """
    body_read = parse_body_with_content(body, now=now)
    return body_read.batch, body_read.parsed


def _converted(
    wire: EventIn,
    now: datetime,
    features: Collection[str],
    tenant: str | None,
    content: list[tuple[UsageEvent, ContentIn]],
) -> Parsed:
    try:
        event = to_event(wire, now=now, features=features, tenant=tenant)
    except InvalidEventError as exc:
        return exc
    except (OverflowError, ValueError) as exc:
        # A value no calendar or number type holds answers for its event alone.
        return InvalidEventError(f"an event's value is out of range: {exc}")
    if wire.content is not None:
        content.append((event, wire.content))
    return event


def _event_or_error(
    data: Any,
    now: datetime,
    features: Collection[str],
    tenant: str | None,
    content: list[tuple[UsageEvent, ContentIn]],
) -> Parsed:
    try:
        wire = _validated(data)
    except InvalidEventError as exc:
        return exc
    return _converted(wire, now, features, tenant, content)
