"""Which model a call is priced at: each part of a call spanning models at its own,
and a floating alias (``*-latest``) at what the catalog says it points to.

A call can run another model inside it (Anthropic's advisor tool): its
``usage_parts`` then name that model for the steps it ran.  The call stays one
event under its requested model; its cost is the sum of each model's share,
priced at that model's rates, and its breakdown names the other models' parts
(``input_tokens@claude-opus-4-8``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from llmledger.core.events import UsageEvent
from llmledger.core.usage import Usage
from llmledger.pricing.model import PriceResult

__all__ = ["PART_REF_SEPARATOR", "floating_note", "is_floating", "part_key", "price_parts"]

#: Joins the price refs of a call's parts in ``price_ref`` (the call's own first).
PART_REF_SEPARATOR = " & "

#: Prices usage and fee counts at an event's model (the resolver's own way).
PriceAsCalled = Callable[[UsageEvent, Usage, Mapping[str, int]], PriceResult]


def part_key(bucket: str, model: str) -> str:
    """The breakdown key of a bucket of a part priced at another model.

    Example:
        >>> part_key("input_tokens", "claude-opus-4-8")
        'input_tokens@claude-opus-4-8'
    """
    return f"{bucket}@{model}"


def price_parts(price_as_called: PriceAsCalled, event: UsageEvent) -> PriceResult:
    """The cost of an event whose ``usage_parts`` name other models.

    The parts on the event's own model (``model`` None) and the per-use fees are
    priced together at the event's model; each other model's parts at that
    model, with the event's provider, time and service tier.  A model without a
    price leaves the whole call unpriced (a part of the bill would be missing);
    an incomplete part makes the call incomplete.  Each result is rounded to
    nano-USD before the sum.

    Example:
        >>> from datetime import UTC, datetime
        >>> from llmledger.core.billing import UsagePart
        >>> from llmledger.pricing import PriceResolver
        >>> e = UsageEvent(provider="anthropic", model="claude-sonnet-4-5",
        ...     ts=datetime(2025, 11, 1, tzinfo=UTC),
        ...     usage=Usage(input_tokens=3000, output_tokens=30),
        ...     usage_parts=(UsagePart(None, Usage(input_tokens=1000, output_tokens=10)),
        ...                  UsagePart("claude-opus-4-1", Usage(input_tokens=2000,
        ...                                                     output_tokens=20))))
        >>> r = PriceResolver().event_price(e)
        >>> r.cost, r.breakdown["input_tokens@claude-opus-4-1"]
        (Decimal('0.034650000'), Decimal('0.030000000'))
    """
    shares: dict[str | None, Usage] = {None: Usage()}
    for part in event.usage_parts:
        model = part.model if part.model not in (event.model, event.response_model) else None
        shares[model] = shares.get(model, Usage()) + part.usage
    own = price_as_called(event, shares.pop(None), event.fee_counts)
    if own.cost is None:
        return own
    total = own.cost
    breakdown = dict(own.breakdown)
    refs = [own.ref or ""]
    incomplete = [own.incomplete_reason] if own.incomplete_reason else []
    for model, usage in shares.items():
        assert model is not None
        at_model = event.replace(model=model, response_model=None, usage_parts=(), fee_counts={})
        result = price_as_called(at_model, usage, {})
        if result.cost is None:
            return PriceResult(
                cost=None,
                breakdown={},
                source=None,
                ref=None,
                unpriced_reason=f"the part of the call on model '{model}' has no price: "
                f"{result.unpriced_reason}",
            )
        total += result.cost
        breakdown.update({part_key(bucket, model): v for bucket, v in result.breakdown.items()})
        refs.append(result.ref or "")
        if result.incomplete_reason:
            incomplete.append(f"part on model '{model}': {result.incomplete_reason}")
    return PriceResult(
        cost=total,
        breakdown=breakdown,
        source=own.source,
        ref=PART_REF_SEPARATOR.join(refs),
        price=own.price,
        incomplete_reason="; ".join(incomplete) or None,
    )


def is_floating(model: str) -> bool:
    """Whether a model name is a floating alias (``*-latest``), which providers move
    from one model to the next without a new name.

    Example:
        >>> is_floating("mistral-large-latest"), is_floating("claude-sonnet-4-5-20250929")
        (True, False)
    """
    return model.lower().rstrip().endswith("-latest")


def floating_note(alias: str, priced_as: str) -> str:
    """Why a floating alias the catalog does not list by name is an incomplete price.

    Example:
        >>> floating_note("gemini-2.5-flash-latest", "gemini-2.5-flash")  # doctest: +ELLIPSIS
        "'gemini-2.5-flash-latest' is a floating alias ...; priced as gemini-2.5-flash"
    """
    return f"'{alias}' is a floating alias the catalog does not list; priced as {priced_as}"
