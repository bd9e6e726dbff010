"""The prices a process holds in memory, so its callers never wait for them.

A :class:`PriceCache` is what the thread that records a call prices it with: the
composed price source (:class:`~llmledger.pricing.PriceResolver`) once it is
loaded, answering from what it resolved before.  The resolver is the one price
source; the cache only keeps its answers:

* per (provider, model, service tier, day): the day's price, compiled once, so a
  warm price costs one dictionary look-up and a few Decimal operations (the
  resolver's routes, which split a model's history at the days its price
  changes, and at the times of day when a price differs within the day: a day
  so split, and any event the day's price alone cannot price, goes the
  resolver's whole way);
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
from datetime import UTC, datetime

from llmledger.core.events import PRICE_PENDING_REASON, UsageEvent
from llmledger.pricing.files import Alias
from llmledger.pricing.model import PriceResult, with_price
from llmledger.pricing.resolver import PriceResolver, segment_price
from llmledger.pricing.routes import Segment

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

    __slots__ = ("_days", "resolver", "version")

    def __init__(self, resolver: PriceResolver, version: Hashable = None) -> None:
        self.resolver = resolver
        self.version = version
        # (provider, model, service tier, UTC day) -> the day's price, or None when
        # the resolver's whole way is needed (a price that changes within the day).
        self._days: dict[_DayKey, tuple[Segment, Alias | None] | None] = {}

    def event_price(self, event: UsageEvent) -> PriceResult:
        """What the event cost at its own time (see :meth:`PriceResolver.event_price`)."""
        return self.resolver.event_price(event)

    def priced(
        self, event: UsageEvent, *, usage_sound: bool = False, in_place: bool = False
    ) -> UsageEvent:
        """The event with its cost: a copy, or ``event`` itself when nothing changes.

        The same event as ``with_price(event, resolver.event_price(event))``; the
        common event (no cost yet, usage counted, priced under its own model name)
        costs a look-up of its day's price.

        Args:
            event: The event to price.
            usage_sound: The caller saw ``event.usage.problems()`` empty already.
            in_place: The caller just made ``event`` and nobody else holds it: it may
                get its cost fields itself (and is returned) rather than a copy.
        """
        ts = event.ts
        model = event.model
        returned = event.response_model
        if (
            event.cost is None
            and not event.usage_parts
            and event.usage_source != "missing"
            and (not returned or returned == model)
            and model
            and type(ts) is datetime
            and ts.tzinfo is not None
        ):
            usage = event.usage
            if usage_sound or not usage.problems():
                key = (event.provider, model, event.service_tier, (ts - _EPOCH).days)
                try:
                    day = self._days[key]
                except KeyError:
                    day = self._day_price(key, ts)
                if day is not None:
                    return with_price(event, segment_price(*day, usage, event.fee_counts), in_place)
        return with_price(event, self.resolver.event_price(event))

    def _day_price(self, key: _DayKey, at: datetime) -> tuple[Segment, Alias | None] | None:
        provider, model, service_tier, _ = key
        day = self.resolver.day_segment(provider, model, service_tier, at)
        if len(self._days) >= _DAY_LIMIT:
            self._days.clear()
        self._days[key] = day
        return day


#: (provider, model, service tier, UTC day number).
_DayKey = tuple[str, str, str | None, int]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Days kept before the cache starts over (bounds memory against endless model names).
_DAY_LIMIT = 20_000
