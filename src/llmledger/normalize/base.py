"""What a provider reader returns: usage and response facts, before pricing."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from llmledger.core.billing import Fee, ServiceTier, UsagePart
from llmledger.core.usage import Usage

__all__ = ["Reading"]


@dataclass(slots=True)
class Reading:
    """The facts read from one provider response or stream transcript.

    ``usage_source`` is ``"missing"`` when the provider sent no usage at all (an
    OpenAI stream without ``include_usage``): the usage is then unknown, not zero.
    ``reported_cost`` is a cost the provider or a gateway (OpenRouter's
    ``usage.cost``) stated itself; it wins over any price list.
    ``extra_units`` holds counts the provider reported that have no canonical
    bucket (Gemini output image tokens, Cohere rerank search units, ...): they
    are informational, and when they are tokens they are already inside the
    canonical totals, so nothing is lost and nothing is counted twice.

    ``usage_parts`` splits ``usage`` by billed step when the provider reports steps
    (Anthropic ``usage.iterations``: context compaction, advisor calls), one
    :class:`~llmledger.core.billing.UsagePart` per step, in the provider's order.
    A part whose model is None ran on the call's own model; a named model's rates
    apply to its part. The parts add up to ``usage`` exactly. Empty means one
    step on the call's own model: ``usage`` is the whole of it.
    ``service_tier`` is the tier the response says the call ran on, in
    llmledger's vocabulary (:data:`~llmledger.core.billing.SERVICE_TIERS`).
    ``fee_counts`` counts units billed per use (web searches), zero counts left
    out.
    """

    provider: str
    operation: str
    usage: Usage
    usage_raw: Any = None
    usage_source: str = "provider"
    response_model: str | None = None
    request_id: str | None = None
    finish_reason: str | None = None
    service_tier: ServiceTier | None = None
    stream: bool = False
    reported_cost: Decimal | None = None
    warnings: list[str] = field(default_factory=list)
    extra_units: dict[str, int] = field(default_factory=dict)
    usage_parts: tuple[UsagePart, ...] = ()
    fee_counts: dict[Fee, int] = field(default_factory=dict)
