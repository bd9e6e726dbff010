"""The prices a process holds in memory, so its callers never wait for them.

A :class:`PriceCache` is what the thread that records a call prices it with: the
composed price source (:class:`~llmledger.pricing.PriceResolver`) once it is
loaded, answering from what it resolved before.  The resolver is the one price
source; the cache only keeps its answers:

* per (provider, model, service tier, day): the day's price, compiled once, so a
  warm price costs dictionary look-ups and a few Decimal operations (the
  resolver's routes, which split a model's history at the days its price
  changes, and at the times of day when a price differs within the day);
* until the prices are loaded there is no cache at all and an event is
  ``pending`` (:data:`~llmledger.core.events.PRICE_PENDING_REASON`): the writer
  prices it before it is stored;
* when prices change (a row added to the database, a price file edited), the
  cache is not patched: a new one, built from a new resolver, replaces it whole,
  so no answer from the old prices survives.

Pure: no threads, no I/O.  Loading it off the caller's thread and noticing that
prices changed is :mod:`llmledger.runtime.prices`' job.

Example:
    >>> from datetime import UTC, datetime
    >>> from llmledger.core.events import UsageEvent
    >>> from llmledger.core.usage import Usage
    >>> cache = PriceCache(PriceResolver())
    >>> e = UsageEvent(provider="openai", model="gpt-4o", ts=datetime(2025, 6, 1, tzinfo=UTC),
    ...                usage=Usage(input_tokens=1000, output_tokens=100))
    >>> cache.priced(e).cost
    Decimal('0.003500000')
"""

from __future__ import annotations

from collections.abc import Hashable

from llmledger.core.events import PRICE_PENDING_REASON, UsageEvent
from llmledger.pricing.model import PriceResult, with_price
from llmledger.pricing.resolver import PriceResolver

__all__ = ["PriceCache", "needs_price"]


def needs_price(event: UsageEvent) -> bool:
    """Whether the writer still has to price the event: it has no cost, no reason
    for having none (or the reason is that its price was pending), and no source.

    Example:
        >>> from datetime import UTC, datetime
        >>> e = UsageEvent(provider="openai", model="m", ts=datetime(2025, 1, 1, tzinfo=UTC))
        >>> needs_price(e), needs_price(e.replace(unpriced_reason="no price for model 'm'"))
        (True, False)
        >>> needs_price(e.replace(unpriced_reason=PRICE_PENDING_REASON))
        True
    """
    if event.cost is not None or event.cost_source is not None:
        return False
    reason = event.unpriced_reason
    return reason is None or reason == PRICE_PENDING_REASON


class PriceCache:
    """One loaded price source, priced from memory; replaced whole when prices change.

    Args:
        resolver: The composed price source (database rows, price files, the
            catalog and the supplementary rows).
        version: What the prices were built from (the database's price version,
            the price files' times), to tell when they changed.
    """

    __slots__ = ("resolver", "version")

    def __init__(self, resolver: PriceResolver, version: Hashable = None) -> None:
        self.resolver = resolver
        self.version = version

    def event_price(self, event: UsageEvent) -> PriceResult:
        """What the event cost at its own time (see :meth:`PriceResolver.event_price`)."""
        return self.resolver.event_price(event)

    def priced(self, event: UsageEvent) -> UsageEvent:
        """The event with its cost: a copy, or ``event`` itself when nothing changes."""
        return with_price(event, self.resolver.event_price(event))
