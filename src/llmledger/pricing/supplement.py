"""Supplementary prices: llmledger's own dated rows for rates the catalog lacks.

genai-prices leaves some published rates out (the audio tokens of the GPT-4o audio
models, for one).  Those rates are shipped with llmledger in
``pricing/data/supplement.yaml``, in the price-file row format plus the page each
row was read from (``source``) and the day it was last checked against it
(``checked``), both required.  The resolver fills a catalog price's missing rates
from these rows bucket by bucket; the catalog's own rate wins wherever it has one.
``tiers`` rows are multipliers on the catalog's standard rates for a service tier
the catalog has no variant for (the discount-row format, with a required tier).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import pydantic

from llmledger.core.errors import PriceFileError
from llmledger.pricing.files import (
    Alias,
    Discount,
    DiscountRow,
    PriceBook,
    PriceRow,
    read_yaml,
    row_ref,
    row_to_price,
    validation_message,
)
from llmledger.pricing.model import REQUESTS, Price

__all__ = [
    "SUPPLEMENT_NAME",
    "SUPPLEMENT_PATH",
    "fill_missing_rates",
    "load_supplement",
    "own_price",
    "supplement_book",
]

#: The data file shipped with the package.
SUPPLEMENT_PATH = Path(__file__).parent / "data" / "supplement.yaml"

#: Name of the supplementary rows in ``price_ref`` (``supplement:openai/gpt-4o-audio-preview``).
SUPPLEMENT_NAME = "supplement"

_Page = Annotated[str, pydantic.StringConstraints(strip_whitespace=True, pattern=r"^https://\S+$")]


class SupplementRow(PriceRow):
    """A price-file row that must say where it was read and when it was checked."""

    source: _Page
    checked: date


class TierRow(DiscountRow):
    """A service tier's multiplier on the catalog's standard rates, where the
    catalog has no variant for the tier (Vertex AI Flex PayGo: half price)."""

    service_tier: Annotated[str, pydantic.StringConstraints(strip_whitespace=True, min_length=1)]
    source: _Page
    checked: date


_Text = Annotated[str, pydantic.StringConstraints(strip_whitespace=True, min_length=1)]


class AliasRow(pydantic.BaseModel):
    """A floating name and the model it pointed to from a day on (the provider's page)."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    provider: _Text
    model: _Text
    target: _Text
    valid_from: date = pydantic.Field(alias="from")
    source: _Page
    checked: date


class _SupplementFile(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    version: int = pydantic.Field(default=1, ge=1, le=1)
    prices: list[SupplementRow] = pydantic.Field(default_factory=list)
    tiers: list[TierRow] = pydantic.Field(default_factory=list)
    aliases: list[AliasRow] = pydantic.Field(default_factory=list)


def _alias(row: AliasRow) -> Alias:
    ref = f"{SUPPLEMENT_NAME}:alias {row.provider}/{row.model}@{row.valid_from.isoformat()}"
    return Alias(
        provider=row.provider,
        model=row.model,
        target=row.target,
        valid_from=row.valid_from,
        ref=ref,
        checked=row.checked,
        source_url=row.source,
    )


def _tier(row: TierRow) -> Discount:
    ref = row_ref(
        SUPPLEMENT_NAME,
        row.provider,
        row.model,
        row.valid_from,
        row.service_tier,
        source="supplement",
    )
    return Discount(
        provider=row.provider,
        model=row.model,
        discount=row.discount,
        valid_from=row.valid_from,
        ref=ref.replace(f"{SUPPLEMENT_NAME}:", f"{SUPPLEMENT_NAME}:tier ", 1),
        checked=row.checked,
        service_tier=row.service_tier,
    )


def supplement_book(data: Any, *, where: str | Path = SUPPLEMENT_NAME) -> PriceBook:
    """Validate supplementary rows (the data file's content) into a price book.

    Raises:
        PriceFileError: naming ``where`` and the field, e.g. a row without ``source``.

    Example:
        >>> book = supplement_book({"prices": [{
        ...     "provider": "openai", "model": "m", "input": 1, "input_audio": 8,
        ...     "source": "https://example.com/pricing", "checked": date(2026, 1, 2)}]})
        >>> row = book.prices[0]
        >>> row.source, row.ref, row.source_url
        ('supplement', 'supplement:openai/m', 'https://example.com/pricing')
    """
    try:
        parsed = _SupplementFile.model_validate(data)
    except pydantic.ValidationError as exc:
        raise PriceFileError(validation_message(where, exc)) from None
    prices = tuple(
        row_to_price(row, None, SUPPLEMENT_NAME, source="supplement", source_url=row.source)
        for row in parsed.prices
    )
    tiers = tuple(_tier(row) for row in parsed.tiers)
    aliases = tuple(_alias(row) for row in parsed.aliases)
    try:
        return PriceBook().merged(
            PriceBook(prices=prices, discounts=tiers, aliases=aliases), same_file=True
        )
    except PriceFileError as exc:
        raise PriceFileError(f"{where}: {exc}") from None


def load_supplement(path: str | Path = SUPPLEMENT_PATH) -> PriceBook:
    """The supplementary rows shipped with llmledger (or those of another file).

    Raises:
        PriceFileError: when the file is unreadable or a row is invalid.

    Example:
        >>> rows = load_supplement().prices
        >>> all(p.source == "supplement" and p.checked and p.source_url for p in rows)
        True
    """
    return supplement_book(read_yaml(Path(path)), where=path)


def fill_missing_rates(price: Price, supplement: Price | None) -> Price:
    """A catalog price with the rates it lacks taken from a supplementary row.

    The catalog's own rate wins for every bucket it prices; a filled rate gets the
    catalog row's discount, since both are the provider's list prices.

    Example:
        >>> catalog = Price(provider="openai", model="m", rates={"input_tokens": Decimal("2.5")})
        >>> row = Price(provider="openai", model="m", source="supplement", ref="supplement:m",
        ...             rates={"input_tokens": Decimal("9"), "input_audio_tokens": Decimal("40")})
        >>> filled = fill_missing_rates(catalog, row)
        >>> filled.rates["input_tokens"], filled.rates["input_audio_tokens"], filled.filled
        (Decimal('2.5'), Decimal('40'), ('input_audio_tokens',))
    """
    if supplement is None:
        return price
    factor = price.discount if price.discount is not None else Decimal(1)
    missing = [bucket for bucket in supplement.rates if bucket not in price.rates]
    per_request = price.per_request
    if per_request is None and supplement.per_request is not None:
        per_request = supplement.per_request * factor
        missing.append(REQUESTS)
    fees = {**{k: v * factor for k, v in supplement.fees.items()}, **price.fees}
    missing += [fee for fee in supplement.fees if fee not in price.fees]
    if not missing:
        return price
    rates = dict(price.rates)
    tiers = dict(price.tiers)
    for bucket in missing:
        if bucket in supplement.rates:
            rates[bucket] = supplement.rates[bucket] * factor
            if bucket in supplement.tiers:
                tiers[bucket] = tuple(
                    replace(tier, usd_per_mtok=tier.usd_per_mtok * factor)
                    for tier in supplement.tiers[bucket]
                )
    return replace(
        price,
        rates=rates,
        tiers=tiers,
        per_request=per_request,
        fees=fees,
        filled=tuple(missing),
        filled_ref=supplement.ref,
        source_url=supplement.source_url,
    )


def own_price(row: Price, discount: Decimal | None, discount_ref: str | None) -> Price:
    """A provider's own supplementary row in place of the catalog row it borrows.

    Vertex AI is priced through Google's catalog models, at the Gemini API's list
    prices; where Google Cloud lists other prices, the ``vertex`` row replaces the
    borrowed one whole (a bucket it has no rate for is then unpriced and flagged,
    never paid at the other price list's rate). The discount the catalog row would
    have had (a user's discount, a service tier multiplier) applies to it.

    Example:
        >>> row = Price(provider="vertex", model="m", source="supplement",
        ...             ref="supplement:vertex/m", rates={"input_tokens": Decimal("0.15")})
        >>> own_price(row, None, None) is row
        True
        >>> half = own_price(row, Decimal("0.5"), "supplement:tier vertex/m")
        >>> half.rates["input_tokens"], half.ref
        (Decimal('0.075'), 'supplement:vertex/m;discount=0.5(supplement:tier vertex/m)')
    """
    if discount is None:
        return row
    return replace(
        row,
        rates={bucket: rate * discount for bucket, rate in row.rates.items()},
        tiers={
            bucket: tuple(replace(t, usd_per_mtok=t.usd_per_mtok * discount) for t in tiers)
            for bucket, tiers in row.tiers.items()
        },
        per_request=None if row.per_request is None else row.per_request * discount,
        fees={fee: rate * discount for fee, rate in row.fees.items()},
        discount=discount,
        ref=f"{row.ref};discount={discount}" + (f"({discount_ref})" if discount_ref else ""),
    )
