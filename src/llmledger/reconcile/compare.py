"""The provider's bill beside the ledger, day by model, with the likely cause of each gap.

Pure: rows in, rows out.  The provider side comes from its organisation usage and
cost APIs (:mod:`llmledger.reconcile.providers`); the ledger side from a report by
day and model (the query model).  Model names are matched without their date
suffix, since the provider reports the dated snapshot that served a call
(``gpt-4o-mini-2024-07-18``) while the ledger groups by the name the call asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any, Literal

__all__ = [
    "COST_TOLERANCE",
    "Cause",
    "Difference",
    "UsageRow",
    "compare",
    "ledger_rows",
    "model_key",
]

Cause = Literal[
    "ok",
    "rounding",
    "calls not tracked",
    "recorded, not billed",
    "unpriced",
    "incomplete price",
    "tier or price",
    "cost not reported",
]

#: Cost differences at most this large (USD), or this share of the bill, are rounding.
COST_TOLERANCE = Decimal("0.0001")
COST_SHARE_TOLERANCE = Decimal("0.005")

_DATE_SUFFIX = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8})$")
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def model_key(model: str) -> str:
    """A model name without its snapshot date, to match both sides on.

    Example:
        >>> model_key("gpt-4o-mini-2024-07-18"), model_key("claude-sonnet-4-5-20250929")
        ('gpt-4o-mini', 'claude-sonnet-4-5')
    """
    return _DATE_SUFFIX.sub("", model.strip().lower())


@dataclass(frozen=True)
class UsageRow:
    """One day of one model, from either side.

    ``input_tokens`` counts every input token, cached or not (the ledger's bucket);
    ``calls`` is None where the source does not count requests (Anthropic).
    ``unpriced_calls`` and ``incomplete_calls`` come from the ledger only.
    """

    day: date
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    calls: int | None = None
    cost: Decimal | None = None
    unpriced_calls: int = 0
    incomplete_calls: int = 0
    tiers: tuple[str, ...] = ()

    def plus(self, other: UsageRow) -> UsageRow:
        """The two rows added up (same day and model)."""

        def add(a: Any, b: Any) -> Any:
            if a is None:
                return b
            if b is None:
                return a
            return a + b

        return replace(
            self,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            calls=add(self.calls, other.calls),
            cost=add(self.cost, other.cost),
            unpriced_calls=self.unpriced_calls + other.unpriced_calls,
            incomplete_calls=self.incomplete_calls + other.incomplete_calls,
            tiers=tuple(sorted(set(self.tiers) | set(other.tiers))),
        )


@dataclass(frozen=True)
class Difference:
    """One day and model: the provider's figures, the ledger's, and what differs."""

    day: date
    model: str
    provider: UsageRow | None
    ledger: UsageRow | None
    cause: Cause
    explanation: str
    token_differences: Mapping[str, int] = field(default_factory=dict)
    cost_difference: Decimal | None = None

    @property
    def ok(self) -> bool:
        """Nothing to look into (equal, or a rounding difference)."""
        return self.cause in ("ok", "rounding")

    def to_dict(self) -> dict[str, Any]:
        """The difference as JSON-ready values (money as decimal text)."""

        def side(row: UsageRow | None) -> dict[str, Any] | None:
            if row is None:
                return None
            values: dict[str, Any] = {name: getattr(row, name) for name in TOKEN_FIELDS}
            values["calls"] = row.calls
            values["cost"] = None if row.cost is None else str(row.cost)
            return values

        return {
            "day": self.day.isoformat(),
            "model": self.model,
            "cause": self.cause,
            "explanation": self.explanation,
            "provider": side(self.provider),
            "ledger": side(self.ledger),
            "token_differences": dict(self.token_differences),
            "cost_difference": None if self.cost_difference is None else str(self.cost_difference),
        }


def _merge(rows: Iterable[UsageRow]) -> dict[tuple[date, str], UsageRow]:
    merged: dict[tuple[date, str], UsageRow] = {}
    for row in rows:
        key = (row.day, model_key(row.model))
        row = replace(row, model=key[1])
        merged[key] = merged[key].plus(row) if key in merged else row
    return merged


def _cost_within(diff: Decimal, billed: Decimal) -> bool:
    return abs(diff) <= max(COST_TOLERANCE, abs(billed) * COST_SHARE_TOLERANCE)


def _explain(provider: UsageRow | None, ledger: UsageRow | None) -> Difference:
    some = provider or ledger
    assert some is not None
    day, model = some.day, some.model
    if ledger is None:
        assert provider is not None
        calls = f"{provider.calls} calls, " if provider.calls is not None else ""
        return Difference(
            day,
            model,
            provider,
            None,
            "calls not tracked",
            f"the provider billed {calls}{provider.input_tokens + provider.output_tokens} tokens "
            "the ledger has no call for: a code path or a key that llmledger does not see",
            {name: getattr(provider, name) for name in TOKEN_FIELDS},
            provider.cost,
        )
    if provider is None:
        return Difference(
            day,
            model,
            None,
            ledger,
            "recorded, not billed",
            "the ledger has calls the provider did not bill to this organisation: another "
            "organisation's key, test or simulated calls, or calls recorded twice",
            {name: -getattr(ledger, name) for name in TOKEN_FIELDS},
            None if ledger.cost is None else -ledger.cost,
        )
    tokens = {
        name: getattr(provider, name) - getattr(ledger, name)
        for name in TOKEN_FIELDS
        if getattr(provider, name) != getattr(ledger, name)
    }
    cost_diff = (
        None if provider.cost is None or ledger.cost is None else provider.cost - ledger.cost
    )
    if tokens.get("input_tokens", 0) > 0 or tokens.get("output_tokens", 0) > 0:
        missing = ""
        if provider.calls is not None and ledger.calls is not None:
            missing = f"{provider.calls - ledger.calls} calls and "
        return Difference(
            day,
            model,
            provider,
            ledger,
            "calls not tracked",
            f"the provider billed {missing}"
            f"{tokens.get('input_tokens', 0)} input and {tokens.get('output_tokens', 0)} output "
            "tokens more than the ledger recorded: some calls escape tracking",
            tokens,
            cost_diff,
        )
    if tokens.get("input_tokens", 0) < 0 or tokens.get("output_tokens", 0) < 0:
        return Difference(
            day,
            model,
            provider,
            ledger,
            "recorded, not billed",
            "the ledger recorded more tokens than the provider billed: test calls, another "
            "organisation's key, or calls recorded twice",
            tokens,
            cost_diff,
        )
    if ledger.unpriced_calls:
        return Difference(
            day,
            model,
            provider,
            ledger,
            "unpriced",
            f"{ledger.unpriced_calls} calls have no price in the ledger: add the model's price "
            "(llmledger prices unpriced) and reprice",
            tokens,
            cost_diff,
        )
    if cost_diff is None:
        return Difference(
            day,
            model,
            provider,
            ledger,
            "cost not reported" if provider.cost is None else "unpriced",
            "the tokens agree; the provider's cost API has no line for this model and day"
            if provider.cost is None
            else "the tokens agree; the ledger has no cost",
            tokens,
            None,
        )
    if _cost_within(cost_diff, provider.cost or Decimal(0)):
        cause: Cause = "ok" if not tokens and cost_diff == 0 else "rounding"
        if tokens:
            explanation = (
                "input and output agree; the cache split differs "
                f"({', '.join(f'{k} {v:+d}' for k, v in tokens.items())}) within the cost tolerance"
            )
        else:
            explanation = "agree" if cause == "ok" else "the costs differ by rounding only"
        return Difference(day, model, provider, ledger, cause, explanation, tokens, cost_diff)
    if ledger.incomplete_calls:
        return Difference(
            day,
            model,
            provider,
            ledger,
            "incomplete price",
            f"{ledger.incomplete_calls} calls were priced without a rate for some of their "
            "tokens (llmledger prices show)",
            tokens,
            cost_diff,
        )
    tiers = f" (tiers seen: {', '.join(provider.tiers)})" if provider.tiers else ""
    return Difference(
        day,
        model,
        provider,
        ledger,
        "tier or price",
        "the tokens agree but the provider charged another rate: a service tier or batch "
        f"discount, a cache split, or a price the ledger does not have{tiers}",
        tokens,
        cost_diff,
    )


def compare(provider: Iterable[UsageRow], ledger: Iterable[UsageRow]) -> list[Difference]:
    """Every day and model either side has, matched, with its difference and cause.

    Example:
        >>> from datetime import date
        >>> billed = [UsageRow(date(2025, 1, 1), "gpt-4o-2024-08-06", 1000, 100, calls=3,
        ...                    cost=Decimal("0.0035"))]
        >>> recorded = [UsageRow(date(2025, 1, 1), "gpt-4o", 800, 80, calls=2,
        ...                      cost=Decimal("0.0028"))]
        >>> [(d.model, d.cause, d.token_differences["input_tokens"]) for d in
        ...  compare(billed, recorded)]
        [('gpt-4o', 'calls not tracked', 200)]
    """
    billed = _merge(provider)
    recorded = _merge(ledger)
    return [
        _explain(billed.get(key), recorded.get(key)) for key in sorted(set(billed) | set(recorded))
    ]


def ledger_rows(rows: Iterable[Mapping[str, Any]]) -> list[UsageRow]:
    """Rows of a ledger report by day and model (the query model's row dicts).

    Example:
        >>> from datetime import datetime, UTC
        >>> ledger_rows([{"day": datetime(2025, 1, 1, tzinfo=UTC), "model": "gpt-4o",
        ...     "calls": 2, "input_tokens": 10, "output_tokens": 5, "cache_read_tokens": 0,
        ...     "cache_write_tokens": 0, "cost": Decimal("0.01"), "unpriced_calls": 0,
        ...     "incomplete_calls": 0}])[0].day
        datetime.date(2025, 1, 1)
    """
    out: list[UsageRow] = []
    for row in rows:
        day = row["day"]
        out.append(
            UsageRow(
                day=day.date() if hasattr(day, "date") else day,
                model=str(row["model"]),
                input_tokens=int(row.get("input_tokens") or 0),
                output_tokens=int(row.get("output_tokens") or 0),
                cache_read_tokens=int(row.get("cache_read_tokens") or 0),
                cache_write_tokens=int(row.get("cache_write_tokens") or 0),
                calls=int(row.get("calls") or 0),
                cost=None if row.get("cost") is None else Decimal(str(row["cost"])),
                unpriced_calls=int(row.get("unpriced_calls") or 0),
                incomplete_calls=int(row.get("incomplete_calls") or 0),
            )
        )
    return out
