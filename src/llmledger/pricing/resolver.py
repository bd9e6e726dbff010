"""Pricing calls: per-call reported cost, then user prices, then the catalog.

:class:`PriceResolver` answers "what did this call cost?" for a provider, model,
usage and time.  Resolution order: a cost the provider or gateway reported for
the call (``provider-reported``) -> user price files (``override``) -> the
bundled genai-prices catalog (``catalog``) -> unpriced, with ``cost=None`` and a
reason.  An unknown price is never reported as zero.

Speed: the first call for a (provider, model, service tier) builds a *route*:
every day and time of day at which its price in force can change.  Each stretch
between those breaks resolves once into a :class:`CompiledPrice`; later calls
cost a dictionary lookup, two bisections and a few Decimal operations.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

from llmledger.core.errors import InvalidEventError, UnknownModelError
from llmledger.core.events import UsageEvent
from llmledger.core.usage import Usage
from llmledger.pricing.catalog import Catalog, CatalogModel, day_and_time, ledger_provider_name
from llmledger.pricing.compiled import CompiledPrice, usage_problem
from llmledger.pricing.files import Discount, PriceBook
from llmledger.pricing.model import Price, PriceResult, to_nano

__all__ = ["PriceResolver"]

_NO_PARTS: Mapping[str, Decimal] = MappingProxyType({})
#: Routes kept before the cache starts over (bounds memory against endless model names).
_ROUTE_LIMIT = 20_000


@dataclass(slots=True)
class _Segment:
    compiled: CompiledPrice | None
    unpriced: PriceResult | None


@dataclass(slots=True)
class _Route:
    provider: str
    model: str
    service_tier: str | None
    user_groups: list[tuple[Price, ...]]
    discount_groups: list[tuple[Discount, ...]]
    catalog: CatalogModel | None
    context: dict[str, str] | None
    days: list[int]
    times: list[int]
    segments: dict[tuple[int, int], _Segment] = field(default_factory=dict)


def _unpriced(reason: str) -> PriceResult:
    return PriceResult(
        cost=None, breakdown=_NO_PARTS, source=None, ref=None, unpriced_reason=reason
    )


def _in_force(rows: tuple[Price, ...] | tuple[Discount, ...], day: date) -> Price | Discount | None:
    found = None
    for row in rows:
        if row.valid_from is None or row.valid_from <= day:
            found = row
    return found


class PriceResolver:
    """Prices calls from user price files and the bundled catalog.

    Args:
        catalog: ``True`` for the bundled genai-prices catalog, ``False`` for none
            (user prices only), or a :class:`Catalog` built from other data.
        user_prices: A :class:`PriceBook`, or paths of YAML price files.
        now: Default time for :meth:`lookup` and :meth:`list_prices` when the
            caller passes none (the resolver never reads the clock).

    Example:
        >>> from datetime import UTC, datetime
        >>> resolver = PriceResolver()
        >>> at = datetime(2025, 6, 1, tzinfo=UTC)
        >>> r = resolver.price("openai", "gpt-4o-2024-08-06",
        ...                    Usage(input_tokens=1000, output_tokens=100), at)
        >>> r.cost, r.source
        (Decimal('0.003500000'), 'catalog')
        >>> resolver.price("openai", "foo", Usage(input_tokens=1), at).unpriced_reason
        "no price for model 'foo' from provider 'openai'"
    """

    def __init__(
        self,
        catalog: bool | Catalog = True,
        user_prices: PriceBook | Iterable[str | Path] | None = None,
        now: datetime | None = None,
    ) -> None:
        if catalog is True:
            self.catalog: Catalog | None = Catalog()
        elif catalog is False:
            self.catalog = None
        else:
            self.catalog = catalog
        if user_prices is None:
            self.book = PriceBook()
        elif isinstance(user_prices, PriceBook):
            self.book = user_prices
        else:
            self.book = PriceBook.load(user_prices)
        if now is not None and now.tzinfo is None:
            raise InvalidEventError(f"now must be timezone-aware, got {now!r}")
        self.now = now
        self._routes: dict[tuple[str, str, str | None], _Route] = {}

    # -- pricing ----------------------------------------------------------------

    def price(
        self,
        provider: str,
        model: str,
        usage: Usage,
        at: datetime,
        *,
        service_tier: str | None = None,
        reported_cost: Decimal | None = None,
    ) -> PriceResult:
        """The cost of one call, or why it has none.

        Args:
            provider: llmledger provider name (``openai``, ``bedrock``, ``groq``, ...).
            model: Model name as sent or returned (``claude-sonnet-4-5-20250929``,
                ``us.anthropic.claude-...-v1:0``, ``models/gemini-2.5-flash``).
            usage: Token counts in canonical buckets.
            at: Aware time of the call; the price in force then is used.
            service_tier: Service tier the provider reported (``flex``,
                ``priority``, ``batch``, ...), selecting the catalog's variant.
            reported_cost: USD the provider or a gateway reported for this call; it
                wins over every price list.

        Returns:
            A :class:`PriceResult`; ``cost`` is ``None`` with ``unpriced_reason``
            when no price is known or the usage breaks its invariants.

        Raises:
            InvalidEventError: when ``at`` is naive.

        Example:
            >>> from datetime import UTC, datetime
            >>> PriceResolver(catalog=False).price(
            ...     "openrouter", "x", Usage(), datetime(2025, 1, 1, tzinfo=UTC),
            ...     reported_cost=Decimal("0.0012")).source
            'provider-reported'
        """
        if reported_cost is not None:
            reported = self._reported(provider, reported_cost)
            if reported is not None:
                return reported
        if at.tzinfo is None:
            raise InvalidEventError(f"the time of a call must be timezone-aware, got {at!r}")
        problem = usage_problem(usage)
        if problem is not None:
            return _unpriced(f"usage is inconsistent: {problem}")
        segment = self._segment(provider, model, service_tier, at)
        if segment.unpriced is not None:
            return segment.unpriced
        compiled = segment.compiled
        assert compiled is not None
        computed = compiled.compute(usage)
        if computed is None:
            return _unpriced(
                f"usage parts priced separately by {compiled.price.ref} add up to more than "
                f"their total ({_nonzero(usage)})"
            )
        total, parts = computed
        price = compiled.price
        return PriceResult(total, parts, price.source, price.ref, None, price)

    def price_event(self, event: UsageEvent, *, reported_cost: Decimal | None = None) -> None:
        """Fill an event's cost fields in place.

        The returned model name (``response_model``) is tried first, then the
        requested one.  A ``manual`` cost already on the event is kept.

        Example:
            >>> from datetime import UTC, datetime
            >>> e = UsageEvent(provider="openai", model="gpt-4o",
            ...                ts=datetime(2025, 1, 1, tzinfo=UTC),
            ...                usage=Usage(input_tokens=1_000_000))
            >>> PriceResolver().price_event(e)
            >>> e.cost, e.cost_source
            (Decimal('2.500000000'), 'catalog')
        """
        if event.cost_source == "manual" and event.cost is not None:
            return
        # A failed request with no usage is billed nothing, so it is priced at its
        # (empty) usage; a successful call without usage has an unknown cost.
        if event.usage_source == "missing" and reported_cost is None and event.status != "error":
            result = _unpriced("the provider reported no usage for this call")
        else:
            result = self._price_names(event, reported_cost)
        event.cost = result.cost
        event.cost_breakdown = dict(result.breakdown) if result.cost is not None else None
        event.cost_source = result.source
        event.price_ref = result.ref
        event.unpriced_reason = result.unpriced_reason

    def _price_names(self, event: UsageEvent, reported_cost: Decimal | None) -> PriceResult:
        names = [event.response_model, event.model]
        result: PriceResult | None = None
        for name in dict.fromkeys(n for n in names if n):
            result = self.price(
                event.provider,
                name,
                event.usage,
                event.ts,
                service_tier=event.service_tier,
                reported_cost=reported_cost,
            )
            if result.cost is not None:
                return result
        assert result is not None
        return result

    def _reported(self, provider: str, reported_cost: object) -> PriceResult | None:
        if isinstance(reported_cost, float):
            reported_cost = Decimal(repr(reported_cost))
        elif isinstance(reported_cost, (int, str)) and not isinstance(reported_cost, bool):
            reported_cost = Decimal(reported_cost)
        if (
            not isinstance(reported_cost, Decimal)
            or not reported_cost.is_finite()
            or reported_cost < 0
        ):
            return None
        return PriceResult(
            cost=to_nano(reported_cost),
            breakdown=_NO_PARTS,
            source="provider-reported",
            ref=f"provider-reported:{provider}",
        )

    # -- routes and segments ------------------------------------------------------

    def _segment(
        self, provider: str, model: str, service_tier: str | None, at: datetime
    ) -> _Segment:
        key = (provider, model, service_tier)
        route = self._routes.get(key)
        if route is None:
            route = self._route(provider, model, service_tier)
        day, micros = day_and_time(at)
        where = (
            bisect.bisect_right(route.days, day),
            bisect.bisect_right(route.times, micros) if route.times else 0,
        )
        segment = route.segments.get(where)
        if segment is None:
            segment = route.segments[where] = self._resolve(route, at)
        return segment

    def _route(self, provider: str, model: str, service_tier: str | None) -> _Route:
        user_groups = self.book.price_groups(provider, model, service_tier)
        discount_groups = self.book.discount_groups(provider, model, service_tier)
        found = self.catalog.find(provider, model) if self.catalog is not None else None
        days: set[int] = set()
        times: list[int] = []
        starts = [r.valid_from for rows in user_groups for r in rows]
        starts += [r.valid_from for rows in discount_groups for r in rows]
        days.update(start.toordinal() for start in starts if start is not None)
        context = None
        if found is not None:
            catalog_days, times = found.breaks()
            days.update(catalog_days)
            context = found.price_context(service_tier)
        route = _Route(
            provider=provider,
            model=model,
            service_tier=service_tier,
            user_groups=user_groups,
            discount_groups=discount_groups,
            catalog=found,
            context=context,
            days=sorted(days),
            times=times,
        )
        if len(self._routes) >= _ROUTE_LIMIT:
            self._routes.clear()
        self._routes[(provider, model, service_tier)] = route
        return route

    def _resolve(self, route: _Route, at: datetime) -> _Segment:
        day = date.fromordinal(day_and_time(at)[0])
        for group in route.user_groups:
            row = _in_force(group, day)
            if isinstance(row, Price):
                return _Segment(CompiledPrice(row), None)
        if route.catalog is not None:
            discount = None
            for discounts in route.discount_groups:
                rule = _in_force(discounts, day)
                if isinstance(rule, Discount):
                    discount = rule
                    break
            price = route.catalog.price_at(
                at,
                route.context,
                provider_name=route.provider,
                discount=discount.discount if discount else None,
                discount_ref=discount.ref if discount else None,
            )
            compiled = CompiledPrice(price)
            if not compiled.counts_anything:
                units = ", ".join(price.uncounted_units)
                return _Segment(
                    compiled,
                    _unpriced(
                        f"the price of model '{route.model}' from provider '{route.provider}' "
                        f"({price.ref}) is only for units llmledger does not count: {units}"
                    ),
                )
            return _Segment(compiled, None)
        reason = f"no price for model '{route.model}' from provider '{route.provider}'"
        starts = [g[0].valid_from for g in route.user_groups if g and g[0].valid_from]
        if starts:
            reason += f" on {day} (the earliest user price starts {min(starts)})"
        return _Segment(None, _unpriced(reason))

    # -- display -------------------------------------------------------------------

    def _when(self, at: datetime | None) -> datetime:
        when = at or self.now
        if when is None:
            raise InvalidEventError("pass at= (or build the resolver with now=)")
        if when.tzinfo is None:
            raise InvalidEventError(f"the time must be timezone-aware, got {when!r}")
        return when

    def lookup(
        self,
        provider: str | None,
        model: str,
        at: datetime | None = None,
        *,
        service_tier: str | None = None,
    ) -> Price:
        """The price row in force for a model at a time (for ``prices show``).

        With ``provider=None`` the provider is guessed from the model name (the
        catalog's rules, then the first user row naming the model).

        Raises:
            UnknownModelError: when no price is known.

        Example:
            >>> from datetime import UTC, datetime
            >>> p = PriceResolver().lookup("bedrock",
            ...     "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            ...     datetime(2025, 11, 1, tzinfo=UTC))
            >>> p.provider, p.rates["input_tokens"]
            ('bedrock', Decimal('3.3'))
        """
        when = self._when(at)
        if provider is None:
            provider = self._guess_provider(model)
            if provider is None:
                raise UnknownModelError(f"no price for model '{model}' from any provider")
        segment = self._segment(provider, model, service_tier, when)
        if segment.compiled is None:
            assert segment.unpriced is not None and segment.unpriced.unpriced_reason
            raise UnknownModelError(segment.unpriced.unpriced_reason)
        return segment.compiled.price

    def _guess_provider(self, model: str) -> str | None:
        if self.catalog is not None:
            found = self.catalog.find(None, model)
            if found is not None:
                return ledger_provider_name(found.provider.id)
        for row in self.book.prices:
            if self.book.price_groups(row.provider, model, row.service_tier):
                return row.provider
        return None

    def list_prices(self, provider: str | None = None, at: datetime | None = None) -> list[Price]:
        """Every price row in force at ``at``: user rows and catalog models.

        Catalog rows show standard prices (no service tier) with user discounts
        applied; a catalog model a user row overrides is listed too, so both can
        be compared.

        Example:
            >>> from datetime import UTC, datetime
            >>> rows = PriceResolver().list_prices("openai", datetime(2025, 6, 1, tzinfo=UTC))
            >>> any(p.model == "gpt-4o" for p in rows)
            True
        """
        when = self._when(at)
        day = date.fromordinal(day_and_time(when)[0])
        found: list[Price] = []
        for group in self._user_groups():
            row = _in_force(group, day)
            if isinstance(row, Price) and (
                provider is None or self.book.price_groups(provider, row.model, row.service_tier)
            ):
                found.append(row)
        if self.catalog is not None:
            for entry in self.catalog.models(provider):
                name = provider or ledger_provider_name(entry.provider.id)
                discount = None
                for discounts in self.book.discount_groups(name, entry.info.id, None):
                    rule = _in_force(discounts, day)
                    if isinstance(rule, Discount):
                        discount = rule
                        break
                found.append(
                    entry.price_at(
                        when,
                        None,
                        provider_name=name,
                        discount=discount.discount if discount else None,
                        discount_ref=discount.ref if discount else None,
                    )
                )
        return sorted(found, key=lambda p: (p.provider, p.model, p.source != "override"))

    def _user_groups(self) -> list[tuple[Price, ...]]:
        groups: dict[tuple[str, str, str | None], list[Price]] = {}
        for row in self.book.prices:
            key = (row.provider.lower(), row.model.lower(), row.service_tier)
            groups.setdefault(key, []).append(row)
        return [
            tuple(sorted(rows, key=lambda p: p.valid_from or date.min)) for rows in groups.values()
        ]

    def stale(self, before: date) -> list[Price]:
        """User price rows not checked since ``before`` (or never).

        Only the latest row of each model (and tier) counts: older rows are
        history.  genai-prices 0.2.3 carries no per-model checked dates, so
        catalog rows are not listed.

        Example:
            >>> PriceResolver(catalog=False).stale(date(2025, 1, 1))
            []
        """
        found = [
            group[-1]
            for group in self._user_groups()
            if group[-1].checked is None or group[-1].checked < before
        ]
        return sorted(found, key=lambda p: (p.checked or date.min, p.provider, p.model))


def _nonzero(usage: Usage) -> str:
    return ", ".join(f"{k}={v}" for k, v in usage.as_dict().items() if v)
