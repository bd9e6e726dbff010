"""The one record llmledger keeps: a usage event per provider call."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, get_args

from llmledger.core.billing import UsagePart
from llmledger.core.errors import InvalidEventError
from llmledger.core.ids import new_id
from llmledger.core.usage import Usage

__all__ = [
    "ATTRIBUTION_FIELDS",
    "COST_SOURCES",
    "DATABASE_PRICE_REF",
    "OPERATIONS",
    "STATUSES",
    "USAGE_SOURCES",
    "CostSource",
    "Operation",
    "Status",
    "UsageEvent",
    "UsageSource",
    "current_cost_source",
]

Operation = Literal["chat", "responses", "embeddings", "images", "audio", "rerank", "other"]
Status = Literal["ok", "error", "incomplete", "abandoned"]
UsageSource = Literal["provider", "estimated", "missing", "manual"]
CostSource = Literal["catalog", "supplement", "file", "database", "provider-reported", "manual"]

OPERATIONS: tuple[str, ...] = get_args(Operation)
STATUSES: tuple[str, ...] = get_args(Status)
USAGE_SOURCES: tuple[str, ...] = get_args(UsageSource)
COST_SOURCES: tuple[str, ...] = get_args(CostSource)
ATTRIBUTION_FIELDS: tuple[str, ...] = ("tenant", "user", "feature", "session")

#: ``price_ref`` prefix of the prices added through the service (database rows).
DATABASE_PRICE_REF = "user:db:"


def current_cost_source(source: str | None, price_ref: str | None) -> str | None:
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
    if source != "override":
        return source
    return "database" if (price_ref or "").startswith(DATABASE_PRICE_REF) else "file"


@dataclass(slots=True)
class UsageEvent:
    """One provider call (or one manual ``record()``), priced and attributed.

    ``cost`` is ``None`` with ``unpriced_reason`` set when no price is known: an
    unknown price is never reported as zero.

    Example:
        >>> from datetime import datetime, timezone
        >>> e = UsageEvent(provider="openai", model="gpt-4o",
        ...                ts=datetime(2025, 1, 1, tzinfo=timezone.utc),
        ...                usage=Usage(input_tokens=10, output_tokens=5))
        >>> e.usage.total_tokens
        15
    """

    provider: str
    model: str
    ts: datetime
    id: str = field(default_factory=new_id)
    duration_ms: float | None = None
    ttft_ms: float | None = None
    response_model: str | None = None
    operation: str = "chat"
    stream: bool = False
    service_tier: str | None = None
    request_id: str | None = None
    finish_reason: str | None = None
    status: str = "ok"
    error_type: str | None = None
    error_message: str | None = None
    usage: Usage = field(default_factory=Usage)
    usage_raw: Any = None
    usage_source: str = "provider"
    cost: Decimal | None = None
    cost_breakdown: dict[str, Decimal] | None = None
    cost_source: str | None = None
    price_ref: str | None = None
    unpriced_reason: str | None = None
    tenant: str | None = None
    user: str | None = None
    feature: str | None = None
    session: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    api_key_fingerprint: str | None = None
    warnings: list[str] = field(default_factory=list)
    # The call's usage by billed step and the units it paid per use, as read
    # from the response (llmledger.normalize.Reading): what pricing needs to
    # price an advisor step at its own model and a web search at its fee.
    usage_parts: tuple[UsagePart, ...] = ()
    fee_counts: dict[str, int] = field(default_factory=dict)

    def validate(self) -> None:
        """Check the fields a store relies on; usage invariants become warnings.

        Raises:
            InvalidEventError: on a naive time, an unknown status or operation, a
                malformed tag map, or a negative duration.
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
        if not isinstance(self.tags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.tags.items()
        ):
            raise InvalidEventError("tags must map strings to strings")
        if self.cost is not None and (not isinstance(self.cost, Decimal) or self.cost < 0):
            raise InvalidEventError(f"cost must be a non-negative Decimal, got {self.cost!r}")
        for problem in self.usage.problems():
            if problem not in self.warnings:
                self.warnings.append(problem)
        bad = [p for p in self.usage.problems() if "integer" in p]
        if bad:
            raise InvalidEventError(bad[0])

    def replace(self, **changes: Any) -> UsageEvent:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def ts_utc(self) -> datetime:
        """The start time in UTC."""
        return self.ts.astimezone(UTC)
