"""What a provider reader returns: usage and response facts, before pricing."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

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
    """

    provider: str
    operation: str
    usage: Usage
    usage_raw: Any = None
    usage_source: str = "provider"
    response_model: str | None = None
    request_id: str | None = None
    finish_reason: str | None = None
    service_tier: str | None = None
    stream: bool = False
    reported_cost: Decimal | None = None
    warnings: list[str] = field(default_factory=list)
    extra_units: dict[str, int] = field(default_factory=dict)
