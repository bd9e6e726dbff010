"""Request and response bodies of ``/v1/budgets`` and ``/v1/alerts``."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

import pydantic

from llmledger.wire.parse import storable

__all__ = ["AckIn", "AlertOut", "BudgetIn", "BudgetOut", "BudgetPatch", "StatusOut", "TestOut"]

_Forbid = pydantic.ConfigDict(extra="forbid")
_Label = Annotated[
    str, pydantic.StringConstraints(min_length=1, max_length=256), pydantic.AfterValidator(storable)
]
_Amount = Annotated[Decimal, pydantic.Field(gt=0, allow_inf_nan=False, max_digits=30)]


class BudgetIn(pydantic.BaseModel):
    """A new budget (the fields of ``llmledger budgets add``)."""

    model_config = _Forbid

    name: _Label
    amount: _Amount
    currency: str = "USD"
    period: Literal["day", "week", "month", "rolling"] = "month"
    rolling_days: int | None = pydantic.Field(default=None, description="For rolling periods.")
    tz: str = "UTC"
    where: list[Annotated[str, pydantic.StringConstraints(max_length=2000)]] = pydantic.Field(
        default_factory=list, description="Scope: `--where` expressions (`model=gpt-4o`…)."
    )
    thresholds: list[int] = pydantic.Field(default_factory=lambda: [50, 80, 100])
    recipients: list[str] = pydantic.Field(
        default_factory=list, description="`email:ADDRESS`, `webhook:URL` or `slack:URL`."
    )
    tenant: _Label | None = None
    active: bool = True


class BudgetPatch(pydantic.BaseModel):
    """Changes to a budget: only the fields given change."""

    model_config = _Forbid

    name: _Label | None = None
    amount: _Amount | None = None
    currency: str | None = None
    period: Literal["day", "week", "month", "rolling"] | None = None
    rolling_days: int | None = None
    tz: str | None = None
    where: list[Annotated[str, pydantic.StringConstraints(max_length=2000)]] | None = None
    thresholds: list[int] | None = None
    recipients: list[str] | None = None
    active: bool | None = None


class BudgetOut(pydantic.BaseModel):
    """A budget as stored."""

    id: str
    name: str
    amount: str
    currency: str
    period: str
    rolling_days: int | None
    tz: str
    where: list[str]
    thresholds: list[int]
    recipients: list[str]
    tenant: str | None
    active: bool
    created: str | None


class StatusOut(pydantic.BaseModel):
    """Where a budget stands: spend, what is left, % used, forecast, thresholds crossed."""

    budget: BudgetOut
    since: str
    until: str
    currency: str
    spent: str
    remaining: str
    percent: str
    crossed: list[int]
    run_rate_per_day: str
    forecast: str
    exceeds_on: str | None


class AlertOut(pydantic.BaseModel):
    """An alert of the history."""

    id: str
    rule: str
    key: str
    state: Literal["firing", "resolved"]
    tenant: str | None
    title: str
    message: str
    details: dict[str, Any]
    recipients: list[str]
    fired: str
    resolved: str | None
    acked: str | None
    acked_by: str | None


class AckIn(pydantic.BaseModel):
    """Who acknowledges (the key's prefix when not given)."""

    model_config = _Forbid

    by: _Label | None = None


class TestOut(pydantic.BaseModel):
    """The outcome of a test notification to one recipient."""

    recipient: str
    delivered: bool
    error: str | None
