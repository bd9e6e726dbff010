"""Request and response bodies of the API: separate input and output models.

Inputs refuse unknown fields.  Event bodies are the JSON shape of
:mod:`llmledger.wire.parse` (input) and :func:`llmledger.wire.serialize.event_to_json` (output).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import pydantic

from llmledger.server.keys import Role
from llmledger.wire.parse import EventJson, UsageIn, storable

__all__ = [
    "BatchAnswer",
    "ContentOut",
    "EventOut",
    "EventPage",
    "HealthOut",
    "IngestResult",
    "KeyIn",
    "KeyOut",
    "LimitAnswer",
    "LimitCallIn",
    "LimitIn",
    "LimitOut",
    "NewKeyOut",
    "PriceIn",
    "PriceOut",
    "RateIn",
    "RateOut",
    "ReportBatchIn",
    "ReportBatchOut",
    "ReportOut",
    "ReportQueryIn",
    "ReserveIn",
    "SettleIn",
    "StatsOut",
    "VerifyIn",
]

_Forbid = pydantic.ConfigDict(extra="forbid")
_Label = Annotated[
    str, pydantic.StringConstraints(min_length=1, max_length=256), pydantic.AfterValidator(storable)
]
_Money = Annotated[Decimal, pydantic.Field(ge=0, allow_inf_nan=False, max_digits=30)]


# -- events ----------------------------------------------------------------------------


class IngestResult(pydantic.BaseModel):
    """What became of one event."""

    id: str | None = pydantic.Field(description="The event's id (null when it had none).")
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = pydantic.Field(default=None, description="Why it was rejected.")


class BatchAnswer(pydantic.BaseModel):
    """One result per event sent, in order."""

    results: list[IngestResult]


class UsageOut(UsageIn):
    """Token buckets with ``total_tokens``."""

    model_config = pydantic.ConfigDict(extra="allow")


class EventOut(EventJson):
    """An event as stored: the shape ``llmledger logs --json`` prints (no text)."""

    model_config = pydantic.ConfigDict(extra="allow")

    id: str
    usage: UsageOut


class ContentOut(pydantic.BaseModel):
    """The prompt and response text kept with one event."""

    event_id: str
    prompt: str | None
    response: str | None


class EventPage(pydantic.BaseModel):
    """A page of events, newest first; ``next_cursor`` fetches the next (older) page."""

    events: list[EventOut]
    next_cursor: str | None


# -- reports ---------------------------------------------------------------------------


class ReportQueryIn(pydantic.BaseModel):
    """One report query: the options of ``llmledger report`` (see docs/reports.md)."""

    model_config = _Forbid

    by: list[str] = pydantic.Field(
        default_factory=list, max_length=8, description="Group by dimensions."
    )
    every: Literal["hour", "day", "week", "month"] | None = pydantic.Field(
        default=None, description="Time bucket."
    )
    tz: str = pydantic.Field(default="UTC", description="IANA time zone of buckets and periods.")
    since: str | None = pydantic.Field(default=None, description="Start (ISO 8601).")
    until: str | None = pydantic.Field(default=None, description="End, exclusive (ISO 8601).")
    last: str | None = pydantic.Field(default=None, description="Span ending now: 30m, 7d.")
    period: str | None = pydantic.Field(default=None, description="this-month, 2025-03, …")
    where: list[str] = pydantic.Field(
        default_factory=list, max_length=32, description="Filters: DIM=V, DIM!=V, tag:K=V."
    )
    metrics: list[str] = pydantic.Field(
        default_factory=list, max_length=64, description="Metric names, or all."
    )
    sort: list[str] = pydantic.Field(
        default_factory=list, max_length=8, description="NAME[:asc|:desc]."
    )
    limit: int | None = pydantic.Field(default=None, ge=1, le=10_000, description="Top N groups.")
    currency: str | None = pydantic.Field(default=None, description="Currency of costs.")
    source: Literal["auto", "rollups", "events"] = pydantic.Field(
        default="auto", description="Rollups where exact, or raw events only."
    )


class ReportBatchIn(pydantic.BaseModel):
    """Several report queries answered in one request (a dashboard's worth)."""

    model_config = _Forbid

    queries: list[ReportQueryIn] = pydantic.Field(min_length=1, max_length=20)


class ReportOut(pydantic.BaseModel):
    """The one JSON shape of a report (see docs/reports.md)."""

    model_config = pydantic.ConfigDict(extra="allow")

    query: dict[str, Any]
    currency: str
    total: dict[str, Any]
    rows: list[dict[str, Any]]
    rates: list[dict[str, Any]]
    source: str
    notes: list[str]


class ReportBatchOut(pydantic.BaseModel):
    """One report per query, in order."""

    reports: list[ReportOut]


class FeatureStats(pydantic.BaseModel):
    """Totals of one feature (``null``: calls without a feature)."""

    feature: str | None
    requests: int
    total_tokens: int
    success_rate: float | None
    mean_response_ms: float | None
    cost: str | None


class StatsOut(pydantic.BaseModel):
    """Totals over the last ``days`` days, within the caller's scope."""

    days: int
    since: datetime
    until: datetime
    total_requests: int
    total_tokens: int
    success_rate: float | None
    mean_response_ms: float | None
    cost: str | None
    by_feature: list[FeatureStats]


# -- prices ----------------------------------------------------------------------------


class TierIn(pydantic.BaseModel):
    """Long-context rates applying to calls whose input is above ``above`` tokens."""

    model_config = _Forbid

    above: int = pydantic.Field(ge=0)
    input: _Money | None = None
    output: _Money | None = None
    cache_read: _Money | None = None
    cache_write: _Money | None = None


class PriceIn(pydantic.BaseModel):
    """A dated price row, in USD per million tokens (the price-file row of docs/prices.md)."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    provider: _Label
    model: _Label = pydantic.Field(description="Exact model name or glob (`acme-*`).")
    valid_from: date | None = pydantic.Field(
        default=None, alias="from", description="First UTC day the row applies."
    )
    checked: date | None = None
    service_tier: _Label | None = None
    input: _Money | None = None
    output: _Money | None = None
    cache_read: _Money | None = None
    cache_write: _Money | None = None
    cache_write_5m: _Money | None = None
    cache_write_1h: _Money | None = None
    input_audio: _Money | None = None
    input_image: _Money | None = None
    reasoning: _Money | None = None
    output_audio: _Money | None = None
    tool_use_prompt: _Money | None = None
    per_request: _Money | None = None
    tiers: list[TierIn] = pydantic.Field(default_factory=list, max_length=16)

    def file_row(self) -> dict[str, Any]:
        """The row as a price file spells it."""
        row = self.model_dump(by_alias=True, exclude_none=True, exclude={"tiers"})
        if self.tiers:
            row["tiers"] = [t.model_dump(exclude_none=True) for t in self.tiers]
        return row


class PriceOut(pydantic.BaseModel):
    """A stored price row."""

    model_config = pydantic.ConfigDict(populate_by_name=True)

    id: str
    provider: str
    model: str
    service_tier: str | None
    valid_from: date | None = pydantic.Field(alias="from")
    checked: date | None
    rates: dict[str, Any]
    ref: str
    created: datetime
    created_by: str | None


class VerifyIn(pydantic.BaseModel):
    """Mark a row checked against the provider's page (default: today, UTC)."""

    model_config = _Forbid

    checked: date | None = None


class RateIn(pydantic.BaseModel):
    """A dated exchange rate: from ``from`` on, 1 USD buys ``rate`` units of ``currency``."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    currency: Annotated[str, pydantic.StringConstraints(pattern="^[A-Za-z]{3}$")]
    rate: Annotated[Decimal, pydantic.Field(gt=0, allow_inf_nan=False, max_digits=30)]
    valid_from: date = pydantic.Field(alias="from")
    source: _Label | None = None
    checked: date | None = None


class RateOut(pydantic.BaseModel):
    """A stored exchange rate."""

    model_config = pydantic.ConfigDict(populate_by_name=True)

    id: str
    currency: str
    rate: str
    valid_from: date = pydantic.Field(alias="from")
    checked: date | None
    source: str | None
    created: datetime
    created_by: str | None


# -- keys ------------------------------------------------------------------------------


class KeyIn(pydantic.BaseModel):
    """A new API key."""

    model_config = _Forbid

    role: Role
    tenant: _Label | None = None
    user: _Label | None = None
    name: _Label | None = None


class KeyOut(pydantic.BaseModel):
    """An API key as listed (never its secret)."""

    id: str
    prefix: str
    role: str
    tenant: str | None
    user: str | None
    name: str | None
    created: datetime
    revoked: datetime | None


class NewKeyOut(KeyOut):
    """A key just made, with its token: shown this once, stored only hashed."""

    secret: str


class HealthOut(pydantic.BaseModel):
    """The instance answers and reaches its database."""

    ok: bool
    database: str
    schema_version: str | None


# -- limits ----------------------------------------------------------------------------


class LimitIn(pydantic.BaseModel):
    """A new limit."""

    model_config = _Forbid

    scope: Literal["tenant", "user", "feature", "api_key"] = pydantic.Field(
        description="What the limit is counted per (`api_key`: the provider key's fingerprint)."
    )
    value: _Label = pydantic.Field(description="Which tenant, user, feature or key fingerprint.")
    metric: Literal["cost", "tokens", "requests"]
    amount: _Money = pydantic.Field(description="Most per window: USD for cost, else a count.")
    period: Literal["hour", "day", "week", "month"] = pydantic.Field(
        description="Calendar window in UTC (weeks start on Monday)."
    )
    mode: Literal["warn", "block"] = "block"
    tenant: _Label | None = pydantic.Field(
        default=None, description="Only this tenant's calls count (a tenant limit's own)."
    )
    name: _Label | None = None


class LimitOut(pydantic.BaseModel):
    """A limit, with its current window's counters."""

    id: str
    scope: str
    value: str
    metric: str
    amount: str
    period: str
    mode: str
    tenant: str | None
    name: str | None
    created: datetime | None
    window: datetime | None = pydantic.Field(description="Start of the current window.")
    used: int | None = pydantic.Field(
        description="Units settled in the window (nano-USD for cost)."
    )
    reserved: int | None = pydantic.Field(description="Units reserved by calls in flight.")


class LimitCallIn(pydantic.BaseModel):
    """A call to decide: who makes it and what it is expected to spend."""

    model_config = _Forbid

    tenant: _Label | None = pydantic.Field(
        default=None, description="Forced to the key's tenant for a tenant's key."
    )
    user: _Label | None = None
    feature: _Label | None = None
    api_key: _Label | None = pydantic.Field(
        default=None, description="The provider key's fingerprint (`sha256:…`)."
    )
    cost: _Money = pydantic.Field(default=Decimal(0), description="Expected cost in USD.")
    tokens: int = pydantic.Field(default=0, ge=0, le=2**62)
    requests: int = pydantic.Field(default=1, ge=0, le=2**31)


class ReserveIn(LimitCallIn):
    """A call to decide and, when nothing blocks, reserve for."""

    reservation: Annotated[str, pydantic.StringConstraints(min_length=1, max_length=64)] | None = (
        pydantic.Field(default=None, description="The reservation's id (made when missing).")
    )
    ttl: float | None = pydantic.Field(
        default=None,
        gt=0,
        le=86_400,
        description="Seconds before an unsettled reservation expires.",
    )


class SettleIn(pydantic.BaseModel):
    """What a reserved call really spent (zero to release it)."""

    model_config = _Forbid

    reservation: Annotated[str, pydantic.StringConstraints(min_length=1, max_length=64)]
    cost: _Money = Decimal(0)
    tokens: int = pydantic.Field(default=0, ge=0, le=2**62)
    requests: int = pydantic.Field(default=1, ge=0, le=2**31)


class LimitAnswer(pydantic.BaseModel):
    """The limits' decisions about one call."""

    allowed: bool
    reservation: str | None = pydantic.Field(description="Set when the estimate was reserved.")
    decisions: list[dict[str, Any]]


class RepriceIn(pydantic.BaseModel):
    """A reprice of stored events: the options of ``llmledger reprice``."""

    model_config = _Forbid

    since: str | None = pydantic.Field(default=None, description="Start (ISO 8601, UTC).")
    until: str | None = pydantic.Field(default=None, description="End, exclusive (ISO 8601).")
    where: list[str] = pydantic.Field(
        default_factory=list, max_length=32, description="Filters: DIM=V, DIM!=V, tag:K=V."
    )
    dry_run: bool = pydantic.Field(
        default=True, description="Only show the difference (the default); false to apply it."
    )
    batch_size: int = pydantic.Field(
        default=500, ge=1, le=100_000, description="Events per batch (one transaction each)."
    )
    restart: bool = pydantic.Field(
        default=False, description="Start over instead of resuming an interrupted run."
    )
    max_seconds: float = pydantic.Field(
        default=5.0,
        gt=0,
        le=600,
        description="No new batch starts after this many seconds; an unfinished run answers "
        "`finished: false`: send the same request again to go on (a dry run with `cursor`).",
    )
    cursor: str | None = pydantic.Field(
        default=None,
        max_length=200,
        description="For a dry run: the `cursor` of an unfinished one, to go on after it.",
    )


class RepriceRowOut(pydantic.BaseModel):
    """The difference a reprice makes for one provider and model (money as decimal text)."""

    provider: str
    model: str
    calls: int
    changed: int
    before: str
    after: str
    difference: str
    newly_priced: int
    unpriced: int
    incomplete: int
    kept: int


class RepriceOut(pydantic.BaseModel):
    """What a reprice found (dry run) or did."""

    dry_run: bool
    range: str
    batches: int
    resumed: bool
    finished: bool
    cursor: str | None
    rows: list[RepriceRowOut]
    total: dict[str, Any]
