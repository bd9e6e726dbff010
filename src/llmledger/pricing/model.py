"""What a price is and what pricing one call returns.

A :class:`Price` is one dated price row, whoever wrote it (the bundled catalog or
a user price file): USD per million tokens for each canonical usage bucket, with
optional long-context tiers and a per-request fee.  A :class:`PriceResult` is the
cost of one call, or the reason there is none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

from llmledger.core.events import CostSource, FrozenDict, PriceStatus, UsageEvent
from llmledger.core.usage import BUCKETS

__all__ = [
    "NANO_USD",
    "PRICE_BUCKETS",
    "REQUESTS",
    "Price",
    "PriceResult",
    "PriceSource",
    "ResultSource",
    "Tier",
    "to_nano",
    "with_price",
]

#: The smallest amount the ledger stores: costs are kept as integer nano-USD.
NANO_USD = Decimal("0.000000001")

#: Breakdown key of a per-request fee.
REQUESTS = "requests"

#: Buckets a price row can name a rate for (every canonical usage bucket).
PRICE_BUCKETS: tuple[str, ...] = BUCKETS

#: Where a price row comes from, lowest layer first: the bundled catalog, llmledger's
#: supplementary rows, the user's price files, the service's database.
PriceSource = Literal["catalog", "supplement", "file", "database"]
#: Where a call's cost comes from: a price row, the provider, or the caller.
ResultSource = CostSource


def to_nano(amount: Decimal) -> Decimal:
    """Round an amount of USD to whole nano-USD, half to even.

    Example:
        >>> to_nano(Decimal("0.0000000015"))
        Decimal('2E-9')
        >>> str(to_nano(Decimal("1.25")))
        '1.250000000'
    """
    return amount.quantize(NANO_USD, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class Tier:
    """A long-context rate: applies to *all* tokens of a bucket once the call's
    ``input_tokens`` is strictly above ``above`` (a cliff, not a marginal band).

    Example:
        >>> Tier(above=200_000, usd_per_mtok=Decimal("6"))
        Tier(above=200000, usd_per_mtok=Decimal('6'))
    """

    above: int
    usd_per_mtok: Decimal


@dataclass(frozen=True, slots=True)
class Price:
    """One dated price row for a model.

    Rates are USD per million tokens, keyed by canonical bucket name
    (``input_tokens``, ``cache_read_tokens``, ...).  Each bucket's rate applies to
    the tokens of that bucket not claimed by a more specific priced bucket: with
    ``input_tokens`` and ``cache_read_tokens`` priced, cached tokens pay the cache
    rate and the rest of the input pays the input rate.  A part without a rate of
    its own is paid at its total's rate (reasoning tokens as output tokens).

    Attributes:
        provider: Provider name as llmledger knows it (``openai``, ``bedrock``, ...).
        model: Model id (catalog) or model pattern (user rows, exact name or glob).
        rates: Base USD per million tokens per bucket.
        tiers: Long-context tiers per bucket, ascending by ``above``.
        per_request: USD charged once per call, if any.
        valid_from: First UTC day the row applies (``None``: since always).
        source: ``catalog`` (bundled genai-prices), ``supplement`` (llmledger's own
            dated rows for rates the catalog lacks), ``file`` (the user's price
            files) or ``database`` (rows added through the service).
        ref: Where the row comes from, e.g. ``genai-prices@0.2.3:openai/gpt-4o``,
            ``user:prices.yaml:my-model@2025-01-01`` or ``user:db:my-model``.
        checked: Day someone last checked the row against the provider's price page.
        service_tier: The service tier the row is restricted to, if any.
        discount: Multiplier applied on top of catalog rates (already included in
            ``rates``), if a user discount matched.
        uncounted_units: Units the price uses that llmledger does not count (e.g.
            ``web_searches``, ``audio_hours``); those parts of a bill are not priced.
        filled: Buckets of a catalog row whose rates come from a supplementary row.
        filled_ref: The ref of that supplementary row.
        source_url: The provider's page a supplementary row was read from.
        fees: USD per use of each per-use unit the row prices (``web_searches``).

    Example:
        >>> p = Price(provider="openai", model="gpt-4o",
        ...           rates={"input_tokens": Decimal("2.5"), "output_tokens": Decimal("10")})
        >>> p.rate("output_tokens")
        Decimal('10')
    """

    provider: str
    model: str
    rates: Mapping[str, Decimal]
    tiers: Mapping[str, tuple[Tier, ...]] = field(default_factory=dict)
    per_request: Decimal | None = None
    valid_from: date | None = None
    source: PriceSource = "catalog"
    ref: str = ""
    checked: date | None = None
    service_tier: str | None = None
    discount: Decimal | None = None
    uncounted_units: tuple[str, ...] = ()
    filled: tuple[str, ...] = ()
    filled_ref: str | None = None
    source_url: str | None = None
    fees: Mapping[str, Decimal] = field(default_factory=dict)

    def rate(self, bucket: str, input_tokens: int = 0) -> Decimal | None:
        """The USD-per-million rate of a bucket for a call with ``input_tokens``.

        Example:
            >>> p = Price(provider="x", model="m", rates={"input_tokens": Decimal("1")},
            ...           tiers={"input_tokens": (Tier(100, Decimal("2")),)})
            >>> p.rate("input_tokens", 100), p.rate("input_tokens", 101)
            (Decimal('1'), Decimal('2'))
        """
        base = self.rates.get(bucket)
        for tier in reversed(self.tiers.get(bucket, ())):
            if input_tokens > tier.above:
                return tier.usd_per_mtok
        return base

    @property
    def is_free(self) -> bool:
        """True when the row charges nothing for anything llmledger counts or not."""
        return (
            not self.rates and not self.per_request and not self.uncounted_units and not self.fees
        )


@dataclass(slots=True)
class PriceResult:
    """The cost of one call, or why it has none (treat as read-only).

    ``cost`` is ``None`` (never zero) when no price is known; ``unpriced_reason``
    then says why.  ``cost`` and each ``breakdown`` value are rounded to whole
    nano-USD independently, so the parts may differ from the total by a few
    nano-USD.  ``incomplete_reason`` names the billed units (token buckets, per-use
    fees) the price had no rate for: the cost is then a floor, priced from the
    rates there were.

    Example:
        >>> r = PriceResult(cost=None, breakdown={}, source=None, ref=None,
        ...                 unpriced_reason="no price for model 'foo' from provider 'openai'")
        >>> r.priced
        False
    """

    cost: Decimal | None
    breakdown: Mapping[str, Decimal]
    source: ResultSource | None
    ref: str | None
    unpriced_reason: str | None = None
    price: Price | None = None
    incomplete_reason: str | None = None

    @property
    def priced(self) -> bool:
        """True when a cost is known."""
        return self.cost is not None

    @property
    def status(self) -> PriceStatus:
        """``priced``, ``incomplete`` or ``unpriced`` (see :class:`UsageEvent`)."""
        if self.cost is None:
            return "unpriced"
        return "incomplete" if self.incomplete_reason else "priced"


def with_price(event: UsageEvent, result: PriceResult, in_place: bool = False) -> UsageEvent:
    """``event`` with ``result``'s cost fields: a copy, or ``event`` itself when it
    carries them already; ``event`` is never changed, unless ``in_place``: the caller
    just made it and nobody else holds it, so it takes the fields itself.

    Example:
        >>> from datetime import UTC, datetime
        >>> event = UsageEvent(provider="x", model="m", ts=datetime(2025, 1, 1, tzinfo=UTC))
        >>> result = PriceResult(cost=Decimal("0.5"), breakdown={}, source="manual", ref=None)
        >>> with_price(event, result).cost, event.cost
        (Decimal('0.5'), None)
    """
    breakdown = FrozenDict(result.breakdown) if result.cost is not None else None
    if (
        event.cost == result.cost
        and event.cost_source == result.source
        and event.price_ref == result.ref
        and event.unpriced_reason == result.unpriced_reason
        and event.incomplete_reason == result.incomplete_reason
        and event.cost_breakdown == breakdown
    ):
        # Already priced so (by the SDK, for the service): a copy would cost more
        # than the pricing did.
        return event
    if in_place:
        fields = event.__dict__
        fields["cost"] = result.cost
        fields["cost_breakdown"] = breakdown
        fields["cost_source"] = result.source
        fields["price_ref"] = result.ref
        fields["unpriced_reason"] = result.unpriced_reason
        fields["incomplete_reason"] = result.incomplete_reason
        return event
    return event.replace(
        cost=result.cost,
        cost_breakdown=breakdown,
        cost_source=result.source,
        price_ref=result.ref,
        unpriced_reason=result.unpriced_reason,
        incomplete_reason=result.incomplete_reason,
    )
