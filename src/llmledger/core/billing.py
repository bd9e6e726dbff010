"""What a call is billed by besides its token buckets: service tier, per-request fees, parts.

Each vocabulary is defined here once; readers map every provider's own words onto it
and pricing looks rates up by it.

* :data:`ServiceTier`: the capacity class a call ran on. Providers name it in their
  own words (OpenAI ``default``, Vertex AI ``ON_DEMAND_FLEX``); the reading keeps
  only these values.
* :data:`Fee`: units billed per use rather than per token, counted from the
  response (web searches run by a server-side tool or by grounding).
* :class:`UsagePart`: the share of one call's usage that ran on one model. A
  call can span models (Anthropic's advisor tool runs another model inside the
  call) and steps (context compaction); each part is priced on its own.

Example:
    >>> "flex" in SERVICE_TIERS, FEES
    (True, ('web_searches', 'output_image_tokens'))
    >>> UsagePart("claude-opus-4-8", Usage(input_tokens=2518, output_tokens=22)).model
    'claude-opus-4-8'
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

from llmledger.core.usage import Usage

__all__ = ["FEES", "SERVICE_TIERS", "Fee", "ServiceTier", "UsagePart"]

#: The capacity class a call ran on. ``standard`` is the provider's default
#: pay-as-you-go capacity; ``provisioned`` is reserved capacity paid for up front
#: (Vertex AI Provisioned Throughput); ``offpeak`` is Vertex AI's off-peak
#: pay-as-you-go; ``fast`` is a faster, dearer mode some catalogs price apart.
ServiceTier = Literal[
    "standard", "flex", "priority", "scale", "batch", "fast", "provisioned", "offpeak"
]

#: Every service tier, in the order above.
SERVICE_TIERS: tuple[ServiceTier, ...] = get_args(ServiceTier)

#: A unit priced apart from the token buckets: ``web_searches`` counts the billed
#: uses of a server-side search tool or grounding (Anthropic ``web_search_requests``,
#: OpenAI ``web_search_call`` items; Gemini grounding per search query on Gemini 3,
#: per grounded prompt before); ``output_image_tokens`` counts the output tokens
#: that are images (Gemini), inside ``output_tokens`` but billed at a rate of their own.
Fee = Literal["web_searches", "output_image_tokens"]

#: Every fee name.
FEES: tuple[Fee, ...] = get_args(Fee)


class UsagePart(NamedTuple):
    """One step of a call, with the model it ran on.

    ``model`` None means the call's own model (the event's ``model``); a name
    means that model's rates apply to this part (an advisor iteration).

    Example:
        >>> part = UsagePart(None, Usage(input_tokens=220, output_tokens=8))
        >>> part.model is None, part.usage.total_tokens
        (True, 228)
    """

    model: str | None
    usage: Usage
