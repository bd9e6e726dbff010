"""Pricing calls from one composed price source.

:class:`PriceResolver` answers "what did this call cost?" for a provider, model,
usage and time.  Resolution order, first that knows: a cost the provider or
gateway reported for the call (``provider-reported``) -> the database's price
rows, added through the service (``database``) -> the user's price files
(``file``) -> the bundled genai-prices catalog (``catalog``), whose missing rates
are filled bucket by bucket from llmledger's supplementary rows (``supplement``)
-> unpriced, with ``cost=None`` and a reason.  An unknown price is never
reported as zero.  Every layer is passed in: the resolver reads no database.

Speed: the first call for a (provider, model, service tier) builds a *route*:
every day and time of day at which its price in force can change.  Each stretch
between those breaks resolves once into a :class:`CompiledPrice`; later calls
cost a dictionary lookup, two bisections and a few Decimal operations.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from llmledger.core.errors import InvalidEventError, UnknownModelError
from llmledger.core.events import UsageEvent
from llmledger.core.usage import Usage
from llmledger.pricing.catalog import (
    Catalog,
    CatalogModel,
    borrows_catalog,
    day_and_time,
    ledger_provider_name,
)
from llmledger.pricing.compiled import CompiledPrice, usage_problem
from llmledger.pricing.files import Alias, PriceBook
from llmledger.pricing.fx import ExchangeRates
from llmledger.pricing.model import Price, PriceResult, to_nano, with_price
from llmledger.pricing.parts import floating_note, is_floating, price_parts
from llmledger.pricing.routes import NO_PARTS as _NO_PARTS
from llmledger.pricing.routes import Route as _Route
from llmledger.pricing.routes import Segment as _Segment
from llmledger.pricing.routes import first_in_force as _first_in_force
from llmledger.pricing.routes import in_force as _in_force
from llmledger.pricing.routes import unpriced as _unpriced
from llmledger.pricing.supplement import fill_missing_rates, load_supplement, own_price

__all__ = ["KEPT_COST_SOURCES", "PriceResolver", "segment_price"]

#: Costs an event arrives with that pricing keeps: the caller's and the provider's.
KEPT_COST_SOURCES = frozenset({"manual", "provider-reported"})

# Order of price rows of one model in listings: the layer that wins first.
_LAYER_RANK = {"database": 0, "file": 1, "supplement": 2, "catalog": 3}
#: Routes kept before the cache starts over (bounds memory against endless model names).
_ROUTE_LIMIT = 20_000


class PriceResolver:
    """Prices calls from one composed source: database rows, price files, the
    bundled catalog and llmledger's supplementary rows.

    Args:
        catalog: ``True`` for the bundled genai-prices catalog, ``False`` for none
            (user prices only), or a :class:`Catalog` built from other data.
        user_prices: The user's price files: a :class:`PriceBook`, or paths of
            YAML price files.
        now: Default time for :meth:`lookup` and :meth:`list_prices` when the
            caller passes none (the resolver never reads the clock).
        database: The database's price rows (prices added through the service),
            as a :class:`PriceBook` the caller read; they win over price files.
        supplement: ``True`` for the supplementary rows shipped with llmledger,
            ``False`` for none, or a :class:`PriceBook` of such rows.

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
        *,
        database: PriceBook | None = None,
        supplement: bool | PriceBook = True,
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
        self.database = database if database is not None else PriceBook()
        if supplement is True:
            self.supplement = load_supplement()
        elif supplement is False:
            self.supplement = PriceBook()
        else:
            self.supplement = supplement
        #: Exchange rates of the price files and the database (the database's win).
        self.exchange_rates = ExchangeRates()
        self.exchange_rates.merge(self.book.exchange_rates)
        self.exchange_rates.merge(self.database.exchange_rates)
        if now is not None and now.tzinfo is None:
            raise InvalidEventError(f"now must be timezone-aware, got {now!r}")
        self.now = now
        self._routes: dict[tuple[str, str, str | None], _Route] = {}
        # The alias of each (provider, name, UTC day) looked up so far: the rows
        # never change while this resolver lives (new prices make a new resolver).
        self._aliases: dict[tuple[str, str, int], Alias | None] = {}

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
        fee_counts: Mapping[str, int] | None = None,
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
            fee_counts: Units billed per use (``{"web_searches": 2}``).

        Returns:
            A :class:`PriceResult`; ``cost`` is ``None`` with ``unpriced_reason``
            when no price is known or the usage breaks its invariants.  When the
            usage holds a bucket or a fee the price has no rate for, the cost is
            that of the rates it has and ``incomplete_reason`` names what had none.

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
        alias = self._alias(provider, model, at)
        segment = self._segment(
            provider, model if alias is None else alias.target, service_tier, at
        )
        return segment_price(segment, alias, usage, fee_counts)

    def _alias(self, provider: str, model: str, at: datetime) -> Alias | None:
        """The model a floating name pointed to at ``at``, by the supplementary rows,
        unless the database or a price file prices the name itself."""
        if not self.supplement.aliases:
            return None
        day = day_and_time(at)[0]
        key = (provider, model, day)
        try:
            return self._aliases[key]
        except KeyError:
            pass
        alias = None
        if not (
            self.database.price_groups(provider, model, None)
            or self.book.price_groups(provider, model, None)
        ):
            alias = self.supplement.alias_at(provider, model, date.fromordinal(day))
        if len(self._aliases) >= _ROUTE_LIMIT:
            self._aliases.clear()
        self._aliases[key] = alias
        return alias

    def event_price(
        self, event: UsageEvent, *, reported_cost: Decimal | None = None
    ) -> PriceResult:
        """What an event cost; the event is not changed (see :meth:`priced`).

        The returned model name (``response_model``) is tried first, then the
        requested one.  A cost the event already carries from its caller
        (``manual``), from the provider (``provider-reported``) or with no source
        is kept: the result repeats it.

        Example:
            >>> from datetime import UTC, datetime
            >>> e = UsageEvent(provider="openai", model="gpt-4o",
            ...                ts=datetime(2025, 1, 1, tzinfo=UTC),
            ...                usage=Usage(input_tokens=1_000_000))
            >>> r = PriceResolver().event_price(e)
            >>> r.cost, r.source, e.cost
            (Decimal('2.500000000'), 'catalog', None)
        """
        if event.cost is not None and (
            event.cost_source is None or event.cost_source in KEPT_COST_SOURCES
        ):
            return PriceResult(
                cost=event.cost,
                breakdown=event.cost_breakdown or _NO_PARTS,
                source=(
                    "provider-reported"
                    if event.cost_source == "provider-reported"
                    else "manual"
                    if event.cost_source
                    else None
                ),
                ref=event.price_ref,
            )
        # A failed request with no usage is billed nothing, so it is priced at its
        # (empty) usage; a successful call without usage has an unknown cost.
        # A call refused by a limit before any request left costs nothing alike.
        if (
            event.usage_source == "missing"
            and reported_cost is None
            and event.status != "error"
            and event.status != "blocked"
        ):
            return _unpriced("the provider reported no usage for this call")
        return self._price_names(event, reported_cost)

    def priced(self, event: UsageEvent, *, reported_cost: Decimal | None = None) -> UsageEvent:
        """A copy of ``event`` with the cost :meth:`event_price` finds.

        Example:
            >>> from datetime import UTC, datetime
            >>> e = UsageEvent(provider="openai", model="gpt-4o",
            ...                ts=datetime(2025, 1, 1, tzinfo=UTC),
            ...                usage=Usage(input_tokens=1_000_000))
            >>> PriceResolver().priced(e).cost, e.cost
            (Decimal('2.500000000'), None)
        """
        return with_price(event, self.event_price(event, reported_cost=reported_cost))

    def _price_names(self, event: UsageEvent, reported_cost: Decimal | None) -> PriceResult:
        if (
            reported_cost is None
            and event.usage_parts
            and any(part.model for part in event.usage_parts)
        ):
            return price_parts(self._price_as_called, event)
        return self._price_as_called(event, event.usage, event.fee_counts, reported_cost)

    def _price_as_called(
        self,
        event: UsageEvent,
        usage: Usage,
        fee_counts: Mapping[str, int],
        reported_cost: Decimal | None = None,
    ) -> PriceResult:
        """Price usage at the event's model: the returned name first, then the requested."""
        returned, requested = event.response_model, event.model
        names = (returned, requested) if returned and returned != requested else (requested,)
        result: PriceResult | None = None
        for name in names:
            if not name:
                continue
            result = self.price(
                event.provider,
                name,
                usage,
                event.ts,
                service_tier=event.service_tier,
                reported_cost=reported_cost,
                fee_counts=fee_counts,
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

    def day_segment(
        self, provider: str, model: str, service_tier: str | None, at: datetime
    ) -> tuple[_Segment, Alias | None] | None:
        """What prices a call to ``model`` all through the UTC day of ``at``: the
        resolved segment and the alias that led to it; ``None`` when the price in
        force changes within that day at a time of day (the call's time decides).
        """
        alias = self._alias(provider, model, at)
        target = model if alias is None else alias.target
        route = self._routes.get((provider, target, service_tier))
        if route is None:
            route = self._route(provider, target, service_tier)
        if route.times:
            return None
        return self._segment(provider, target, service_tier, at), alias

    def _route(self, provider: str, model: str, service_tier: str | None) -> _Route:
        # Database rows first: a price added through the service wins over the files.
        user_groups = self.database.price_groups(provider, model, service_tier)
        user_groups += self.book.price_groups(provider, model, service_tier)
        discount_groups = self.database.discount_groups(provider, model, service_tier)
        discount_groups += self.book.discount_groups(provider, model, service_tier)
        tier_groups = (
            self.supplement.discount_groups(provider, model, service_tier) if service_tier else []
        )
        found = self.catalog.find(provider, model) if self.catalog is not None else None
        supplement_groups = self._supplement_groups(provider, model, service_tier, found)
        days: set[int] = set()
        times: list[int] = []
        starts = [r.valid_from for rows in user_groups for r in rows]
        starts += [r.valid_from for rows in discount_groups + tier_groups for r in rows]
        starts += [r.valid_from for rows in supplement_groups for r in rows]
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
            tier_groups=tier_groups,
            supplement_groups=supplement_groups,
            catalog=found,
            context=context,
            days=sorted(days),
            times=times,
            borrowed=borrows_catalog(provider),
        )
        if len(self._routes) >= _ROUTE_LIMIT:
            self._routes.clear()
        self._routes[(provider, model, service_tier)] = route
        return route

    def _supplement_groups(
        self, provider: str, model: str, service_tier: str | None, found: CatalogModel | None
    ) -> list[tuple[Price, ...]]:
        """Supplementary rows for a call: by the catalog's model id (which a dated
        or prefixed name resolves to), then by the name as sent."""
        groups: list[tuple[Price, ...]] = []
        if found is not None:
            groups += self.supplement.price_groups(provider, found.info.id, service_tier)
        for group in self.supplement.price_groups(provider, model, service_tier):
            if not any(group[0] is seen[0] for seen in groups):
                groups.append(group)
        return groups

    def _resolve(self, route: _Route, at: datetime) -> _Segment:
        day = date.fromordinal(day_and_time(at)[0])
        row = _first_in_force(route.user_groups, day)
        if row is not None:
            return _Segment(CompiledPrice(row), None)
        supplement = _first_in_force(route.supplement_groups, day)
        if route.catalog is not None:
            discount = _first_in_force(route.discount_groups, day)
            tier = route.service_tier
            # A borrowing provider's own row replaces the catalog row, tier variants
            # included: the lender's variant is not the borrower's price.
            own = supplement if route.borrowed else None
            if own is not None:
                priced_tier = not tier or tier == "standard" or own.service_tier == tier
            else:
                priced_tier = not tier or route.catalog.tier_in_force(tier, at)
            # A tier the catalog has no variant for: a supplementary multiplier on
            # its standard rates, on top of any discount of the user's.
            multiplier = None if priced_tier else _first_in_force(route.tier_groups, day)
            factors = [d for d in (discount, multiplier) if d is not None]
            factor = None
            if factors:
                factor = factors[0].discount * (factors[1].discount if len(factors) > 1 else 1)
            factor_ref = " * ".join(d.ref for d in factors) or None
            if own is not None:
                price = own_price(own, factor, factor_ref)
            else:
                price = fill_missing_rates(
                    route.catalog.price_at(
                        at,
                        route.context,
                        provider_name=route.provider,
                        discount=factor,
                        discount_ref=factor_ref,
                    ),
                    supplement,
                )
            compiled = CompiledPrice(price)
            missing_tier = None
            tier_row = supplement is not None and supplement.service_tier == tier
            if not priced_tier and multiplier is None and not tier_row:
                missing_tier = (
                    f"no price for service tier '{tier}' of model '{route.model}'; "
                    "priced at the standard rates"
                )
            if is_floating(route.model) and not route.catalog.names_exactly(route.model):
                missing_tier = "; ".join(
                    n for n in (missing_tier, floating_note(route.model, price.model)) if n
                )
            if not compiled.counts_anything:
                units = ", ".join(price.uncounted_units)
                return _Segment(
                    compiled,
                    _unpriced(
                        f"the price of model '{route.model}' from provider '{route.provider}' "
                        f"({price.ref}) is only for units llmledger does not count: {units}"
                    ),
                )
            return _Segment(compiled, None, missing_tier, multiplier is not None)
        if supplement is not None:
            return _Segment(CompiledPrice(supplement), None)
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

    def service_tiers(
        self, provider: str, model: str, at: datetime | None = None
    ) -> tuple[str, ...]:
        """The service tiers some price knows for a model (empty when none prices it).

        ``standard`` when the model is priced at all, the catalog's tier variants,
        and the tiers of database, file and supplementary rows for the model.

        Example:
            >>> from datetime import UTC, datetime
            >>> PriceResolver().service_tiers("openai", "gpt-5", datetime(2025, 11, 1, tzinfo=UTC))
            ('standard', 'flex', 'priority', 'fast', 'batch')
        """
        when = self._when(at)
        found: list[str] = []
        try:
            self.lookup(provider, model, when)
        except UnknownModelError:
            return ()
        catalog = self.catalog.find(provider, model) if self.catalog is not None else None
        # The lender's tier variants are not the borrower's once its own row prices it.
        if (
            catalog is not None
            and borrows_catalog(provider)
            and self._supplement_groups(provider, model, None, catalog)
        ):
            catalog = None
        found += catalog.service_tiers() if catalog is not None else ["standard"]
        for book in (self.database, self.book, self.supplement):
            for row in book.prices:
                tier = row.service_tier
                if tier and tier not in found and book.price_groups(provider, model, tier):
                    found.append(tier)
            for rule in book.discounts:
                tier = rule.service_tier
                if tier and tier not in found and book.discount_groups(provider, model, tier):
                    found.append(tier)
        return tuple(found)

    def _guess_provider(self, model: str) -> str | None:
        if self.catalog is not None:
            found = self.catalog.find(None, model)
            if found is not None:
                return ledger_provider_name(found.provider.id)
        for book in (self.database, self.book, self.supplement):
            for row in book.prices:
                if book.price_groups(row.provider, model, row.service_tier):
                    return row.provider
        return None

    def list_prices(self, provider: str | None = None, at: datetime | None = None) -> list[Price]:
        """Every price row in force at ``at``: database, file and supplementary rows,
        and catalog models.

        Catalog rows show standard prices (no service tier) with user discounts
        applied and missing rates filled from supplementary rows; a catalog model
        a user row overrides is listed too, so both can be compared.

        Example:
            >>> from datetime import UTC, datetime
            >>> rows = PriceResolver().list_prices("openai", datetime(2025, 6, 1, tzinfo=UTC))
            >>> any(p.model == "gpt-4o" for p in rows)
            True
        """
        when = self._when(at)
        day = date.fromordinal(day_and_time(when)[0])
        found: list[Price] = []
        for group in self._row_groups():
            row = _in_force(group, day)
            if row is not None and (
                provider is None
                or PriceBook(prices=(row,)).price_groups(provider, row.model, row.service_tier)
            ):
                found.append(row)
        if self.catalog is not None:
            for entry in self.catalog.models(provider):
                name = provider or ledger_provider_name(entry.provider.id)
                discount = _first_in_force(
                    self.database.discount_groups(name, entry.info.id, None)
                    + self.book.discount_groups(name, entry.info.id, None),
                    day,
                )
                supplement = _first_in_force(
                    self._supplement_groups(name, entry.info.id, None, entry), day
                )
                if supplement is not None and borrows_catalog(name):
                    continue  # the provider's own row, listed with the supplementary rows
                found.append(
                    fill_missing_rates(
                        entry.price_at(
                            when,
                            None,
                            provider_name=name,
                            discount=discount.discount if discount else None,
                            discount_ref=discount.ref if discount else None,
                        ),
                        supplement,
                    )
                )
        return sorted(found, key=lambda p: (p.provider, p.model, _LAYER_RANK[p.source]))

    def _row_groups(self) -> list[tuple[Price, ...]]:
        """Rows of the database, the files and the supplement, by model and tier."""
        groups: dict[tuple[str, str, str, str | None], list[Price]] = {}
        for book in (self.database, self.book, self.supplement):
            for row in book.prices:
                key = (row.source, row.provider.lower(), row.model.lower(), row.service_tier)
                groups.setdefault(key, []).append(row)
        return [
            tuple(sorted(rows, key=lambda p: p.valid_from or date.min)) for rows in groups.values()
        ]

    def stale(self, before: date) -> list[Price]:
        """Database, file and supplementary rows not checked since ``before`` (or never).

        Only the latest row of each model (and tier) counts: older rows are
        history.  genai-prices 0.2.3 carries no per-model checked dates, so
        catalog rows are not listed.

        Example:
            >>> PriceResolver(catalog=False, supplement=False).stale(date(2025, 1, 1))
            []
        """
        found = [
            group[-1]
            for group in self._row_groups()
            if group[-1].checked is None or group[-1].checked < before
        ]
        return sorted(found, key=lambda p: (p.checked or date.min, p.provider, p.model))


def segment_price(
    segment: _Segment,
    alias: Alias | None,
    usage: Usage,
    fee_counts: Mapping[str, int] | None = None,
) -> PriceResult:
    """What ``usage`` (and ``fee_counts``) cost under a resolved segment, reached through
    ``alias`` (None: the model's own name); the usage's invariants were checked.

    The one place a price is applied: :meth:`PriceResolver.price`, and the price
    cache for a day's segment it keeps (:mod:`llmledger.pricing.cache`).
    """
    if segment.unpriced is not None:
        return segment.unpriced
    compiled = segment.compiled
    assert compiled is not None
    computed = compiled.compute(usage, fee_counts)
    if computed is None:
        return _unpriced(
            f"usage parts priced separately by {compiled.price.ref} add up to more than "
            f"their total ({_nonzero(usage)})"
        )
    total, parts = computed
    price = compiled.price
    incomplete = segment.missing_tier
    missing = compiled.unpriced_units(usage, fee_counts)
    if missing:
        note = f"no rate for {', '.join(missing)} in {price.ref}; priced from the rates it has"
        incomplete = f"{incomplete}; {note}" if incomplete else note
    if segment.tier_supplement or (
        price.filled and any(bucket in parts for bucket in price.filled)
    ):
        ref = f"{price.ref}+{price.filled_ref}" if price.filled_ref else price.ref
        return PriceResult(total, parts, "supplement", _via(ref, alias), None, price, incomplete)
    return PriceResult(total, parts, price.source, _via(price.ref, alias), None, price, incomplete)


def _via(ref: str, alias: Alias | None) -> str:
    """A price's ref, naming the alias row through which a floating name reached it."""
    return ref if alias is None else f"{ref};alias={alias.ref}"


def _nonzero(usage: Usage) -> str:
    return ", ".join(f"{k}={v}" for k, v in usage.as_dict().items() if v)
