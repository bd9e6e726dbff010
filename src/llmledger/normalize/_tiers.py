"""Each provider's words for the service tier a call ran on, mapped onto :data:`ServiceTier`.

A word no table knows is not guessed at: the reading's tier stays None and a
warning names the word, so the event is flagged rather than priced as standard
without a word said.
"""

from __future__ import annotations

from typing import Literal

from llmledger.core.billing import ServiceTier

__all__ = ["TierField", "read_tier"]

#: Which response field the word came from; each has its own vocabulary.
TierField = Literal["openai", "anthropic", "gemini", "vertex", "bedrock"]

# None: the provider says it did not specify a tier; that is not a problem to flag.
_WORDS: dict[TierField, dict[str, ServiceTier | None]] = {
    # OpenAI and OpenAI-shaped bodies: top-level ``service_tier``. ``default`` is
    # the standard tier; ``on_demand`` is Groq's word for the same thing. A
    # background response still queued or in progress says ``auto``: the tier
    # is decided later, and the completed response names it. OpenRouter passes
    # on ``provisioned`` for Gemini served from provisioned throughput.
    "openai": {
        "auto": None,
        "default": "standard",
        "standard": "standard",
        "on_demand": "standard",
        "flex": "flex",
        "priority": "priority",
        "scale": "scale",
        "batch": "batch",
        "fast": "fast",
        "provisioned": "provisioned",
    },
    # Anthropic: ``usage.service_tier``; Message Batches results say ``batch``.
    "anthropic": {"standard": "standard", "priority": "priority", "batch": "batch"},
    # Gemini API: ``usageMetadata.serviceTier``.
    "gemini": {
        "unspecified": None,
        "standard": "standard",
        "flex": "flex",
        "priority": "priority",
    },
    # Vertex AI: ``usageMetadata.trafficType``.
    "vertex": {
        "traffic_type_unspecified": None,
        "on_demand": "standard",
        "on_demand_flex": "flex",
        "on_demand_priority": "priority",
        "on_demand_offpeak": "offpeak",
        "provisioned_throughput": "provisioned",
    },
    # Bedrock Converse: ``serviceTier.type``.
    "bedrock": {
        "default": "standard",
        "standard": "standard",
        "flex": "flex",
        "priority": "priority",
    },
}


def read_tier(value: object, field: TierField) -> tuple[ServiceTier | None, list[str]]:
    """The tier a provider's word names, and the warning to record when it names none known.

    Example:
        >>> read_tier("ON_DEMAND_FLEX", "vertex")
        ('flex', [])
        >>> read_tier("turbo", "openai")
        (None, ["unknown service tier 'turbo' in the response"])
    """
    # google-genai dumps an enum here unless dumped in JSON mode.
    value = getattr(value, "value", value)
    if not isinstance(value, str) or not value:
        return None, []
    words = _WORDS[field]
    key = value.strip().lower()
    if key in words:
        return words[key], []
    return None, [f"unknown service tier {value!r} in the response"]
