"""User price files: dated price rows and discounts, read from YAML.

A price file adds models the catalog lacks, overrides catalog prices and sets
discounts on top of them.  Rows are history: several rows for one model with
different ``from`` days are kept side by side and the one in force at a call's
time is used.  Files are validated with pydantic at the boundary and every error
names the file and the field.  The format is documented in ``docs/prices.md``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import pydantic

from llmledger.core.errors import ConfigError, PriceFileError
from llmledger.core.events import DATABASE_PRICE_REF
from llmledger.core.providers import provider_name
from llmledger.pricing.catalog import (
    borrows_catalog,
    catalog_provider_id,
    ledger_provider_name,
    model_candidates,
)
from llmledger.pricing.compiled import BUCKET_PARENTS
from llmledger.pricing.fx import ExchangeRates, RateRow
from llmledger.pricing.model import PRICE_BUCKETS, Price, PriceSource, Tier

__all__ = [
    "DATABASE_NAME",
    "RATE_FIELDS",
    "Discount",
    "PriceBook",
    "PriceRow",
    "read_yaml",
    "row_ref",
    "row_to_price",
    "validation_message",
]

#: Field name in a price file -> bucket it prices (``input`` -> ``input_tokens``).
RATE_FIELDS: dict[str, str] = {bucket.removesuffix("_tokens"): bucket for bucket in PRICE_BUCKETS}
_FIELD_OF = {bucket: name for name, bucket in RATE_FIELDS.items()}
#: Name of the database's price rows in ``price_ref`` (``user:db:acme/acme-1``).
DATABASE_NAME = DATABASE_PRICE_REF.split(":")[1]
_GLOB_CHARS = frozenset("*?[")


def _to_decimal(value: Any) -> Any:
    # YAML reads 2.5 as a float; going through repr keeps the digits the user wrote.
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return Decimal(repr(value))
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


_Money = Annotated[
    Decimal, pydantic.BeforeValidator(_to_decimal), pydantic.Field(ge=0, allow_inf_nan=False)
]
_Multiplier = Annotated[
    Decimal, pydantic.BeforeValidator(_to_decimal), pydantic.Field(gt=0, allow_inf_nan=False)
]
_Name = Annotated[str, pydantic.StringConstraints(strip_whitespace=True, min_length=1)]


class _Rates(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    input: _Money | None = None
    output: _Money | None = None
    cache_read: _Money | None = None
    cache_write: _Money | None = None
    cache_write_5m: _Money | None = None
    cache_write_1h: _Money | None = None
    input_audio: _Money | None = None
    input_image: _Money | None = None
    reasoning: _Money | None = None
    output_audio: _Money | None = None
    tool_use_prompt: _Money | None = None

    def by_bucket(self) -> dict[str, Decimal]:
        return {
            bucket: value
            for name, bucket in RATE_FIELDS.items()
            if (value := getattr(self, name)) is not None
        }


class _TierRow(_Rates):
    above: int = pydantic.Field(ge=0)


class PriceRow(_Rates):
    """One row of ``prices`` in a price file, validated."""

    provider: _Name
    model: _Name
    valid_from: date | None = pydantic.Field(default=None, alias="from")
    checked: date | None = None
    service_tier: _Name | None = None
    per_request: _Money | None = None
    # USD per web search run for the call (a server-side tool or grounding).
    web_search: _Money | None = None
    tiers: list[_TierRow] = pydantic.Field(default_factory=list)

    @pydantic.model_validator(mode="after")
    def _check_structure(self) -> PriceRow:
        rates = self.by_bucket()
        if not rates and self.per_request is None and self.web_search is None:
            raise ValueError(
                "a price row needs at least one rate (input, output, ...) or per_request"
            )
        for bucket in rates:
            parent = BUCKET_PARENTS.get(bucket)
            if parent is not None and parent not in rates:
                raise ValueError(
                    f"{_FIELD_OF[bucket]} is a part of {_FIELD_OF[parent]}, "
                    f"so {_FIELD_OF[parent]} needs a rate too"
                )
        previous = -1
        for tier in self.tiers:
            if tier.above <= previous:
                raise ValueError("tiers must be listed by strictly increasing 'above'")
            previous = tier.above
            extra = set(tier.by_bucket()) - set(rates)
            if extra:
                names = ", ".join(sorted(_FIELD_OF[b] for b in extra))
                raise ValueError(f"tier above {tier.above} prices {names}, which has no base rate")
        return self


class DiscountRow(pydantic.BaseModel):
    """One row of ``discounts`` in a price file, validated."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    provider: _Name
    model: _Name = "*"
    discount: _Multiplier
    valid_from: date | None = pydantic.Field(default=None, alias="from")
    checked: date | None = None
    service_tier: _Name | None = None


class _PriceFile(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    version: int = pydantic.Field(default=1, ge=1, le=1)
    checked: date | None = None
    prices: list[PriceRow] = pydantic.Field(default_factory=list)
    discounts: list[DiscountRow] = pydantic.Field(default_factory=list)
    exchange_rates: dict[str, list[RateRow]] = pydantic.Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Discount:
    """A multiplier on catalog rates for matching models, from a day on.

    Example:
        >>> Discount(provider="openai", model="*", discount=Decimal("0.8"),
        ...          valid_from=None, ref="user:prices.yaml:discount openai/*").discount
        Decimal('0.8')
    """

    provider: str
    model: str
    discount: Decimal
    valid_from: date | None
    ref: str
    checked: date | None = None
    service_tier: str | None = None


@dataclass(frozen=True, slots=True)
class Alias:
    """A floating model name (``mistral-large-latest``) and the model it pointed to
    from a day on, so a call is priced as the model that served it.

    Example:
        >>> Alias(provider="mistral", model="mistral-large-latest",
        ...       target="mistral-large-2512", valid_from=date(2025, 12, 2),
        ...       ref="supplement:alias mistral/mistral-large-latest@2025-12-02").target
        'mistral-large-2512'
    """

    provider: str
    model: str
    target: str
    valid_from: date
    ref: str
    checked: date | None = None
    source_url: str | None = None


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; an empty file reads as an empty mapping.

    Raises:
        PriceFileError: when the file cannot be read or is not YAML.
    """
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: a date such as 2025-13-01
        raise PriceFileError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise PriceFileError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def validation_message(path: Path | str, error: pydantic.ValidationError) -> str:
    """One readable message per problem: ``file: prices[2].input: reason``.

    Example:
        >>> class Row(pydantic.BaseModel):
        ...     input: Decimal
        >>> class File(pydantic.BaseModel):
        ...     prices: list[Row]
        >>> try:
        ...     File.model_validate({"prices": [{"input": 1}, {"input": "cheap"}]})
        ... except pydantic.ValidationError as error:
        ...     print(validation_message("prices.yaml", error))
        prices.yaml: prices[1].input: Input should be a valid decimal
    """
    lines = []
    for problem in error.errors():
        where = ""
        for part in problem["loc"]:
            where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {where or '(top level)'}: {message}")
    return "; ".join(lines)


def _is_glob(pattern: str) -> bool:
    return bool(_GLOB_CHARS & set(pattern))


def _names_of(provider: str) -> tuple[str, ...]:
    name = provider.strip().lower()
    if borrows_catalog(name):
        # Rows for the lender's price list (google) are not the borrower's (vertex).
        return tuple(dict.fromkeys((name, provider_name(name))))
    catalog_id = catalog_provider_id(name)
    return tuple(dict.fromkeys((name, catalog_id, ledger_provider_name(catalog_id))))


def _matches(pattern: str, names: Iterable[str]) -> bool:
    pattern = pattern.lower()
    return any(fnmatch.fnmatchcase(name.lower(), pattern) for name in names)


def _specificity(
    provider: str, model: str, service_tier: str | None, order: int
) -> tuple[int, ...]:
    """Higher sorts first: tier-specific, exact model, exact provider, longer pattern, later."""
    return (
        service_tier is not None,
        not _is_glob(model),
        not _is_glob(provider),
        len(model.rstrip("*")),
        order,
    )


@dataclass(slots=True)
class PriceBook:
    """User prices: dated price rows, discounts and exchange rates.

    Example:
        >>> book = PriceBook.from_mapping({"prices": [
        ...     {"provider": "acme", "model": "acme-1", "from": date(2025, 1, 1),
        ...      "input": 1, "output": 2}]}, name="inline")
        >>> book.prices[0].ref
        'user:inline:acme/acme-1@2025-01-01'
    """

    prices: tuple[Price, ...] = ()
    discounts: tuple[Discount, ...] = ()
    exchange_rates: ExchangeRates = field(default_factory=ExchangeRates)
    aliases: tuple[Alias, ...] = ()

    @classmethod
    def load(cls, paths: Iterable[str | Path]) -> PriceBook:
        """Read price files; later files win over earlier ones for equally specific rows.

        Raises:
            PriceFileError: naming the file and field of the first problem found.
        """
        book = cls()
        for path in paths:
            book = book.merged(
                cls.from_mapping(read_yaml(Path(path)), name=Path(path).name, path=path)
            )
        return book

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        *,
        name: str,
        path: str | Path | None = None,
        source: PriceSource = "file",
    ) -> PriceBook:
        """Validate one file's content (or the same shape from a database or API).

        Args:
            data: The file's content: ``prices``, ``discounts``, ``exchange_rates``.
            name: Name recorded in each row's ref (``user:<name>:...``).
            path: Where the content was read, for error messages.
            source: What the rows are: ``file`` (a price file) or ``database``.

        Raises:
            PriceFileError: naming ``path`` (or ``name``) and the field.
        """
        where = path if path is not None else name
        try:
            parsed = _PriceFile.model_validate(data)
        except pydantic.ValidationError as exc:
            raise PriceFileError(validation_message(where, exc)) from None
        prices = tuple(
            row_to_price(row, parsed.checked, name, source=source) for row in parsed.prices
        )
        discounts = tuple(_discount(row, parsed.checked, name) for row in parsed.discounts)
        try:
            rates = ExchangeRates.from_rows(parsed.exchange_rates, source=f"user:{name}")
        except ConfigError as exc:
            raise PriceFileError(f"{where}: exchange_rates: {exc}") from None
        book = cls(exchange_rates=rates)
        try:
            return book.merged(cls(prices=prices, discounts=discounts), same_file=True)
        except PriceFileError as exc:
            raise PriceFileError(f"{where}: {exc}") from None

    @classmethod
    def from_database(cls, data: Mapping[str, Any]) -> PriceBook:
        """The database's price rows and exchange rates (read by the store, in the
        shape of a price file) as a book of ``database`` rows, refs ``user:db:...``.

        Raises:
            PriceFileError: when a stored row is not a valid price row.

        Example:
            >>> book = PriceBook.from_database({"prices": [
            ...     {"provider": "acme", "model": "acme-1", "input": "1", "from": "2025-01-01"}]})
            >>> book.prices[0].source, book.prices[0].ref
            ('database', 'user:db:acme/acme-1@2025-01-01')
        """
        return cls.from_mapping(data, name=DATABASE_NAME, source="database")

    def merged(self, other: PriceBook, *, same_file: bool = False) -> PriceBook:
        """This book plus ``other``, whose rows rank after (and so above) ours.

        Raises:
            PriceFileError: when one file has two rows for the same model, tier and day.
        """
        seen = {_row_key(p): p for p in self.prices}
        for price in other.prices:
            earlier = seen.get(_row_key(price))
            if earlier is not None and same_file:
                raise PriceFileError(
                    f"two price rows for {price.provider}/{price.model} from "
                    f"{price.valid_from or 'the beginning'} ({earlier.ref} and {price.ref}); "
                    "add a new dated row instead of repeating one"
                )
            seen[_row_key(price)] = price
        rates = ExchangeRates()
        rates.merge(self.exchange_rates)
        try:
            rates.merge(other.exchange_rates)
        except ConfigError as exc:
            raise PriceFileError(f"exchange_rates: {exc}") from None
        prices = self.prices + other.prices
        return PriceBook(
            prices=prices,
            discounts=self.discounts + other.discounts,
            exchange_rates=rates,
            aliases=self.aliases + other.aliases,
        )

    def alias_at(self, provider: str, model: str, day: date) -> Alias | None:
        """The model a floating name pointed to on ``day`` (the latest row in force), or None.

        Example:
            >>> book = PriceBook(aliases=(Alias("mistral", "m-latest", "m-2", date(2025, 6, 1),
            ...                                 "supplement:alias mistral/m-latest@2025-06-01"),))
            >>> book.alias_at("mistral", "M-Latest", date(2025, 7, 1)).target
            'm-2'
            >>> book.alias_at("mistral", "m-latest", date(2025, 5, 1)) is None
            True
        """
        names = _names_of(provider)
        wanted = model.strip().lower()
        found: Alias | None = None
        for alias in self.aliases:
            if alias.model.lower() != wanted or not _matches(alias.provider, names):
                continue
            if alias.valid_from <= day and (found is None or alias.valid_from > found.valid_from):
                found = alias
        return found

    def price_groups(
        self, provider: str, model: str, service_tier: str | None
    ) -> list[tuple[Price, ...]]:
        """Matching rows grouped by (provider, model pattern, tier), most specific
        group first; each group's rows sorted by ``valid_from``.
        """
        names = _names_of(provider)
        models = model_candidates(model)
        groups: dict[tuple[str, str, str | None], list[Price]] = {}
        rank: dict[tuple[str, str, str | None], tuple[int, ...]] = {}
        for order, price in enumerate(self.prices):
            if price.service_tier is not None and price.service_tier != service_tier:
                continue
            if not (_matches(price.provider, names) and _matches(price.model, models)):
                continue
            key = _row_key(price)[:3]
            groups.setdefault(key, []).append(price)
            rank[key] = _specificity(price.provider, price.model, price.service_tier, order)
        ordered = sorted(groups, key=lambda k: rank[k], reverse=True)
        return [tuple(sorted(groups[k], key=_from_key)) for k in ordered]

    def discount_groups(
        self, provider: str, model: str, service_tier: str | None
    ) -> list[tuple[Discount, ...]]:
        """Matching discounts grouped like :meth:`price_groups`."""
        names = _names_of(provider)
        models = model_candidates(model)
        groups: dict[tuple[str, str, str | None], list[Discount]] = {}
        rank: dict[tuple[str, str, str | None], tuple[int, ...]] = {}
        for order, rule in enumerate(self.discounts):
            if rule.service_tier is not None and rule.service_tier != service_tier:
                continue
            if not (_matches(rule.provider, names) and _matches(rule.model, models)):
                continue
            key = (rule.provider.lower(), rule.model.lower(), rule.service_tier)
            groups.setdefault(key, []).append(rule)
            rank[key] = _specificity(rule.provider, rule.model, rule.service_tier, order)
        ordered = sorted(groups, key=lambda k: rank[k], reverse=True)
        return [tuple(sorted(groups[k], key=lambda d: d.valid_from or date.min)) for k in ordered]


def _from_key(price: Price) -> date:
    return price.valid_from or date.min


def _row_key(price: Price) -> tuple[str, str, str | None, date | None]:
    return (price.provider.lower(), price.model.lower(), price.service_tier, price.valid_from)


def row_ref(
    name: str,
    provider: str,
    model: str,
    valid_from: date | None,
    tier: str | None,
    *,
    source: PriceSource = "file",
) -> str:
    """The ``price_ref`` of a price row of a file (or the database, or the supplement).

    Example:
        >>> row_ref("db", "acme", "acme-1", date(2025, 1, 1), "flex", source="database")
        'user:db:acme/acme-1@2025-01-01;service_tier=flex'
    """
    # Supplementary rows are llmledger's, not the user's: their refs say so.
    prefix = f"{name}:" if source == "supplement" else f"user:{name}:"
    ref = f"{prefix}{provider}/{model}"
    if valid_from is not None:
        ref += f"@{valid_from.isoformat()}"
    if tier is not None:
        ref += f";service_tier={tier}"
    return ref


def row_to_price(
    row: PriceRow,
    default_checked: date | None,
    name: str,
    *,
    source: PriceSource = "file",
    source_url: str | None = None,
) -> Price:
    """A validated price row as a :class:`Price` of ``source``, with its ref."""
    tiers: dict[str, list[Tier]] = {}
    for tier in row.tiers:
        for bucket, rate in tier.by_bucket().items():
            tiers.setdefault(bucket, []).append(Tier(tier.above, rate))
    return Price(
        provider=row.provider,
        model=row.model,
        rates=row.by_bucket(),
        tiers={bucket: tuple(values) for bucket, values in tiers.items()},
        per_request=row.per_request,
        fees={} if row.web_search is None else {"web_searches": row.web_search},
        valid_from=row.valid_from,
        source=source,
        ref=row_ref(name, row.provider, row.model, row.valid_from, row.service_tier, source=source),
        checked=row.checked or default_checked,
        service_tier=row.service_tier,
        source_url=source_url,
    )


def _discount(row: DiscountRow, default_checked: date | None, name: str) -> Discount:
    return Discount(
        provider=row.provider,
        model=row.model,
        discount=row.discount,
        valid_from=row.valid_from,
        ref=row_ref(name, row.provider, row.model, row.valid_from, row.service_tier).replace(
            f"user:{name}:", f"user:{name}:discount ", 1
        ),
        checked=row.checked or default_checked,
        service_tier=row.service_tier,
    )
