"""The bundled price catalog: genai-prices, read through llmledger's own snapshot.

The catalog is the pinned ``genai-prices`` data, held in a ``DataSnapshot`` of our
own (never the library's global one, never refreshed from the network).  This
module finds a model from the names people actually send and turns the
genai-prices price in force at a moment into an llmledger :class:`Price` row.

genai-prices prices more units than llmledger counts (audio seconds, output
image tokens, cached audio tokens, ...).  Those rates are listed in
:attr:`Price.uncounted_units` and not charged: the tokens they would claim are
paid at their total's rate (cached audio as cached text).  Units llmledger counts
apart from its buckets (web searches, output image tokens) become
:attr:`Price.fees`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from importlib.metadata import version as _package_version
from typing import TYPE_CHECKING

from llmledger.core.providers import provider_name
from llmledger.pricing.model import Price, Tier

if TYPE_CHECKING:
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelInfo, ModelPrice, Provider

__all__ = [
    "BORROWED_CATALOGS",
    "CATALOG_PRICE_KEYS",
    "CATALOG_PROVIDER_IDS",
    "CATALOG_USAGE_KEYS",
    "Catalog",
    "CatalogModel",
    "borrows_catalog",
    "catalog_provider_id",
    "day_and_time",
    "model_candidates",
]

#: llmledger bucket -> genai-prices price key.
CATALOG_PRICE_KEYS: dict[str, str] = {
    "input_tokens": "input_mtok",
    "output_tokens": "output_mtok",
    "cache_read_tokens": "cache_read_mtok",
    "cache_write_tokens": "cache_write_mtok",
    "cache_write_5m_tokens": "cache_write_5m_mtok",
    "cache_write_1h_tokens": "cache_write_1h_mtok",
    "input_audio_tokens": "input_audio_mtok",
    "input_image_tokens": "input_image_mtok",
    "reasoning_tokens": "output_reasoning_mtok",
    "output_audio_tokens": "output_audio_mtok",
    "tool_use_prompt_tokens": "input_tool_mtok",
}

#: llmledger bucket -> genai-prices usage key (the same units, named its way).
CATALOG_USAGE_KEYS: dict[str, str] = {
    bucket: key.replace("_mtok", "_tokens") for bucket, key in CATALOG_PRICE_KEYS.items()
}

_BUCKET_BY_PRICE_KEY = {key: bucket for bucket, key in CATALOG_PRICE_KEYS.items()}
_REQUESTS_KEY = "requests_kcount"
#: genai-prices keys of units priced apart from the buckets, the fee each prices and
#: how many units its price is for (per thousand uses, per million tokens).
_FEE_KEYS: dict[str, tuple[str, int]] = {
    "web_searches_kcount": ("web_searches", 1000),
    "output_image_mtok": ("output_image_tokens", 1_000_000),
}

#: llmledger provider names that genai-prices spells differently (other spellings
#: of llmledger's names are in :data:`llmledger.core.providers.PROVIDER_ALIASES`).
CATALOG_PROVIDER_IDS: dict[str, str] = {
    "bedrock": "aws",
    "xai": "x-ai",
    "moonshot": "moonshotai",
    "voyage": "voyageai",
}
_LEDGER_NAMES = {"aws": "bedrock"}

#: llmledger providers that the catalog does not list apart, priced through another
#: provider's catalog models: Vertex AI serves Google's Gemini models, at Google
#: Cloud's list prices. Unlike a spelling above, a borrowed row is another price
#: list: the provider's own supplementary rows replace it where its prices differ,
#: and rows written for the lender (``google``) do not apply to the borrower.
BORROWED_CATALOGS: dict[str, str] = {"vertex": "google"}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.date().toordinal()


def day_and_time(at: datetime) -> tuple[int, int]:
    """The UTC day (proleptic ordinal) and microsecond of that day of an aware time.

    Example:
        >>> day, micros = day_and_time(datetime(2025, 1, 2, 0, 0, 1, tzinfo=UTC))
        >>> date.fromordinal(day), micros
        (datetime.date(2025, 1, 2), 1000000)
    """
    delta = at - _EPOCH
    return delta.days + _EPOCH_ORDINAL, delta.seconds * 1_000_000 + delta.microseconds


def _micros_of_day(value: time) -> int:
    if value.tzinfo is not None:
        value = datetime.combine(date(1970, 1, 1), value).astimezone(UTC).time()
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


def catalog_provider_id(provider: str) -> str:
    """The genai-prices provider id for an llmledger provider name.

    Example:
        >>> catalog_provider_id("bedrock"), catalog_provider_id("vertex")
        ('aws', 'google')
    """
    name = provider_name(provider)
    return CATALOG_PROVIDER_IDS.get(name) or BORROWED_CATALOGS.get(name, name)


def borrows_catalog(provider: str) -> bool:
    """Whether a provider is priced through another provider's catalog models.

    Example:
        >>> borrows_catalog("vertex"), borrows_catalog("bedrock"), borrows_catalog("google")
        (True, False, False)
    """
    return provider_name(provider) in BORROWED_CATALOGS


def ledger_provider_name(catalog_id: str) -> str:
    """The llmledger provider name for a genai-prices provider id (``aws`` -> ``bedrock``)."""
    return _LEDGER_NAMES.get(catalog_id, catalog_id)


def model_candidates(model: str) -> tuple[str, ...]:
    """Spellings to try for a model name, as sent first.

    Gemini resource names (``models/gemini-2.5-flash``,
    ``publishers/google/models/...``) and gateway-style ``vendor/model`` names are
    also tried without their prefix.

    Example:
        >>> model_candidates("models/gemini-2.5-flash")
        ('models/gemini-2.5-flash', 'gemini-2.5-flash')
        >>> model_candidates("openai/gpt-4o")
        ('openai/gpt-4o', 'gpt-4o')
    """
    name = model.strip()
    found = [name]
    if "models/" in name:
        found.append(name.rsplit("models/", 1)[1])
    if "/" in name:
        found.append(name.split("/", 1)[1])
        found.append(name.rsplit("/", 1)[1])
    return tuple(dict.fromkeys(candidate for candidate in found if candidate))


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """A catalog model as found for one provider name.

    ``provider`` is the genai-prices provider the call went to; ``owner`` is the
    one that lists the model (they differ when genai-prices falls back, e.g. Azure
    serving an OpenAI model).

    Example:
        >>> found = Catalog().find("azure", "gpt-5-mini")
        >>> found.provider.id, found.owner, found.in_provider
        ('azure', 'openai', False)
    """

    provider: Provider
    info: ModelInfo
    owner: str
    version: str

    @property
    def in_provider(self) -> bool:
        """Whether the model is the provider's own (service-tier variants apply only then)."""
        return any(self.info is model for model in self.provider.models)

    def names_exactly(self, model: str) -> bool:
        """Whether the catalog lists ``model`` by that very name (its id, or an exact
        name it matches), rather than reaching it by a prefix or a pattern.

        Example:
            >>> Catalog().find("google", "gemini-flash-latest").names_exactly("gemini-flash-latest")
            True
            >>> Catalog().find("anthropic", "claude-sonnet-4-5-latest").names_exactly(
            ...     "claude-sonnet-4-5-latest")
            False
        """
        names = {name.lower() for name in model_candidates(model)}
        return self.info.id.lower() in names or bool(names & _exact_names(self.info.match))

    def service_tiers(self) -> tuple[str, ...]:
        """The service tiers the catalog prices apart for this model (``standard``
        first: the catalog's ``default`` variant and the base price)."""
        found = ["standard"]
        if self.in_provider:
            for variant in self.info.price_variants or ():
                for value in variant.when.values():
                    tier = "standard" if value == "default" else value
                    if tier not in found:
                        found.append(tier)
        return tuple(found)

    def tier_in_force(self, service_tier: str, at: datetime) -> bool:
        """Whether the catalog prices ``service_tier`` apart for this model at ``at``.

        A variant the catalog dates from a later day (genai-prices dates a tier
        from the day it listed it, which can be long after the provider billed
        it) does not price calls before that day.
        """
        if service_tier == "standard":
            return True
        if not self.in_provider:
            return False
        for variant in self.info.price_variants or ():
            if service_tier not in variant.when.values():
                continue
            if variant.constraint is None or variant.constraint.active(at):
                return True
        return False

    def breaks(self) -> tuple[list[int], list[int]]:
        """UTC days and microseconds of day at which the price in force can change."""
        from genai_prices.types import StartDateConstraint, TimeOfDateConstraint

        constraints = (
            [c.constraint for c in self.info.prices] if isinstance(self.info.prices, list) else []
        )
        constraints += [v.constraint for v in self.info.price_variants or ()]
        days: set[int] = set()
        times: set[int] = set()
        for constraint in constraints:
            if isinstance(constraint, StartDateConstraint):
                days.add(constraint.start_date.toordinal())
            elif isinstance(constraint, TimeOfDateConstraint):
                times.add(_micros_of_day(constraint.start_time))
                times.add(_micros_of_day(constraint.end_time))
        return sorted(days), sorted(times)

    def price_context(self, service_tier: str | None) -> dict[str, str] | None:
        """The genai-prices price context selecting a service tier's variant.

        The catalog keys variants by ``service_tier`` (OpenAI, Google),
        ``processing`` (``batch``) or ``speed`` (Anthropic ``fast``); the key whose
        value matches the tier is used, else ``service_tier``.
        """
        if not service_tier:
            return None
        for variant in self.info.price_variants or ():
            if len(variant.when) == 1:
                ((key, value),) = variant.when.items()
                if value == service_tier:
                    return {key: value}
        return {"service_tier": service_tier}

    def price_at(
        self,
        at: datetime,
        context: Mapping[str, str] | None,
        *,
        provider_name: str,
        discount: Decimal | None = None,
        discount_ref: str | None = None,
    ) -> Price:
        """The llmledger price row genai-prices would use at ``at``.

        Args:
            at: Aware time of the call.
            context: genai-prices price context (service tier variant), if any.
            provider_name: Provider name to show on the row.
            discount: Multiplier applied to every rate, if any.
            discount_ref: Where the discount comes from, recorded in the ref.
        """
        from genai_prices.types import StartDateConstraint, TimeOfDateConstraint

        effective = context if context and self.in_provider else None
        model_price = self.info.get_prices(at, effective)
        qualifiers: list[str] = []
        valid_from: date | None = None
        if isinstance(self.info.prices, list):
            chosen = self.info.prices[0].constraint
            for conditional in reversed(self.info.prices):
                if conditional.constraint is None or conditional.constraint.active(at):
                    chosen = conditional.constraint
                    break
            if isinstance(chosen, StartDateConstraint):
                valid_from = chosen.start_date
            elif isinstance(chosen, TimeOfDateConstraint):
                qualifiers.append(f"hours={chosen.start_time:%H:%M}-{chosen.end_time:%H:%M}UTC")
        if effective:
            for variant in self.info.price_variants or ():
                if variant.constraint is not None and not variant.constraint.active(at):
                    continue
                if not all(effective.get(k) == v for k, v in variant.when.items()):
                    continue
                if not _price_items(variant.prices):
                    continue
                qualifiers.append(",".join(f"{k}={v}" for k, v in sorted(variant.when.items())))
                if isinstance(variant.constraint, StartDateConstraint):
                    start = variant.constraint.start_date
                    valid_from = start if valid_from is None else max(valid_from, start)
        if discount is not None:
            qualifiers.append(
                f"discount={discount}" + (f"({discount_ref})" if discount_ref else "")
            )
        ref = f"genai-prices@{self.version}:{self.owner}/{self.info.id}"
        if valid_from is not None:
            ref += f"@{valid_from.isoformat()}"
        for qualifier in qualifiers:
            ref += f";{qualifier}"
        return _to_price(
            model_price,
            provider=provider_name,
            model=self.info.id,
            valid_from=valid_from,
            ref=ref,
            service_tier=next(iter(effective.values())) if effective else None,
            discount=discount,
        )


def _exact_names(clause: object) -> set[str]:
    """The names a genai-prices match clause accepts by equality."""
    equals = getattr(clause, "equals", None)
    found = {equals.lower()} if isinstance(equals, str) else set()
    for inner in getattr(clause, "or_", None) or ():
        found |= _exact_names(inner)
    return found


def _price_items(model_price: ModelPrice) -> list[tuple[str, object]]:
    return [
        (key, value)
        for key, value in model_price.__dict__.items()
        if not key.startswith("_") and value is not None
    ]


def _to_price(
    model_price: ModelPrice,
    *,
    provider: str,
    model: str,
    valid_from: date | None,
    ref: str,
    service_tier: str | None,
    discount: Decimal | None,
) -> Price:
    from genai_prices.types import TieredPrices

    factor = Decimal(1) if discount is None else discount
    rates: dict[str, Decimal] = {}
    tiers: dict[str, tuple[Tier, ...]] = {}
    per_request: Decimal | None = None
    uncounted: list[str] = []
    fees: dict[str, Decimal] = {}
    for key, value in _price_items(model_price):
        bucket = _BUCKET_BY_PRICE_KEY.get(key)
        if isinstance(value, TieredPrices):
            base = value.base
            if bucket is not None:
                tiers[bucket] = tuple(Tier(t.start, t.price * factor) for t in value.tiers)
        else:
            base = value  # type: ignore[assignment]
        if bucket is not None:
            rates[bucket] = base * factor
        elif key == _REQUESTS_KEY:
            per_request = base * factor / 1000
        elif key in _FEE_KEYS:
            fee, per = _FEE_KEYS[key]
            fees[fee] = base * factor / per
        else:
            uncounted.append(_usage_key(key))
    return Price(
        provider=provider,
        model=model,
        rates=rates,
        tiers=tiers,
        per_request=per_request,
        valid_from=valid_from,
        source="catalog",
        ref=ref,
        service_tier=service_tier,
        discount=discount,
        uncounted_units=tuple(uncounted),
        fees=fees,
    )


def _usage_key(price_key: str) -> str:
    from genai_prices.units import _get_registry

    try:
        return _get_registry().unit_for_price_key(price_key).usage_key
    except KeyError:
        return price_key


class Catalog:
    """The bundled genai-prices data behind an llmledger-owned snapshot.

    Args:
        providers: Provider data to use instead of the bundled
            ``genai_prices.data.providers`` (e.g. a refreshed copy the caller
            fetched on purpose).
        version: Label recorded in price refs; defaults to the installed
            genai-prices version (``fetched-<day>`` for a fetched catalog).
        fetched: When the data was fetched from the network, for a catalog
            that is not the bundled one.

    Example:
        >>> catalog = Catalog()
        >>> found = catalog.find("openai", "gpt-4o-2024-08-06")
        >>> found.info.id, found.owner
        ('gpt-4o', 'openai')
        >>> catalog.name
        'catalog (genai-prices 0.2.3, bundled)'
    """

    def __init__(
        self,
        providers: Sequence[Provider] | None = None,
        *,
        version: str | None = None,
        fetched: datetime | None = None,
    ) -> None:
        from genai_prices.data_snapshot import DataSnapshot

        if providers is None:
            from genai_prices.data import providers as bundled

            providers = bundled
        self.fetched = fetched
        if version is None:
            version = (
                _package_version("genai-prices")
                if fetched is None
                else f"fetched-{fetched.date().isoformat()}"
            )
        self.version = version
        self._snapshot: DataSnapshot = DataSnapshot(
            providers=list(providers), from_auto_update=False, timestamp=_EPOCH
        )
        self._owners = {
            id(model): provider.id
            for provider in self._snapshot.providers
            for model in provider.models
        }

    @property
    def name(self) -> str:
        """Which catalog this is, as listings name it: the bundled one or a fetched one."""
        if self.fetched is not None:
            return f"catalog (fetched {self.fetched.date().isoformat()})"
        return f"catalog (genai-prices {self.version}, bundled)"

    @property
    def providers(self) -> list[Provider]:
        """The genai-prices providers in this catalog."""
        return self._snapshot.providers

    def find_provider(self, provider: str) -> Provider | None:
        """The catalog provider for an llmledger provider name, if any."""
        from genai_prices.data_snapshot import find_provider_by_id

        return find_provider_by_id(self._snapshot.providers, catalog_provider_id(provider))

    def find(self, provider: str | None, model: str) -> CatalogModel | None:
        """The catalog model a call to ``model`` at ``provider`` is priced with.

        When the provider is unknown to the catalog (or ``None``), the provider is
        guessed from the model name the way genai-prices does (``claude-*`` is
        Anthropic, ``gpt-*`` OpenAI).
        """
        known = self.find_provider(provider) if provider else None
        for candidate in model_candidates(model):
            try:
                if known is not None:
                    found, info = self._snapshot.find_provider_model(candidate, known, None, None)
                else:
                    found, info = self._snapshot.find_provider_model(candidate, None, None, None)
            except LookupError:
                continue
            return CatalogModel(found, info, self._owners.get(id(info), found.id), self.version)
        return None

    def models(self, provider: str | None = None) -> Iterator[CatalogModel]:
        """Every model the catalog lists, for one provider or all."""
        if provider is not None:
            found = self.find_provider(provider)
            chosen = [found] if found is not None else []
        else:
            chosen = list(self._snapshot.providers)
        for entry in chosen:
            for info in entry.models:
                yield CatalogModel(entry, info, entry.id, self.version)
