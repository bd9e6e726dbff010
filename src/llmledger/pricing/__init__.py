"""Pricing: what a call cost, from one composed price source.

The source is, first that knows: a cost reported for the call, the database's
price rows (passed in, never read here), the user's price files, the bundled
catalog with its missing rates filled from llmledger's supplementary rows.
Pure: no clock, no network; the only I/O is reading the price files the caller
names and the supplementary data file shipped with llmledger.

Example:
    >>> from datetime import UTC, datetime
    >>> from llmledger.core.usage import Usage
    >>> resolver = PriceResolver()
    >>> resolver.price("anthropic", "claude-sonnet-4-5-20250929",
    ...                Usage(input_tokens=2000, cache_read_tokens=1000, output_tokens=100),
    ...                datetime(2025, 11, 1, tzinfo=UTC)).cost
    Decimal('0.004800000')
"""

from llmledger.pricing.catalog import (
    CATALOG_PROVIDER_IDS,
    Catalog,
    CatalogModel,
    catalog_provider_id,
)
from llmledger.pricing.compiled import CompiledPrice
from llmledger.pricing.files import RATE_FIELDS, Discount, PriceBook
from llmledger.pricing.fx import USD, ExchangeRates, Rate
from llmledger.pricing.model import (
    NANO_USD,
    PRICE_BUCKETS,
    REQUESTS,
    Price,
    PriceResult,
    PriceSource,
    ResultSource,
    Tier,
    to_nano,
    with_price,
)
from llmledger.pricing.resolver import KEPT_COST_SOURCES, PriceResolver
from llmledger.pricing.supplement import SUPPLEMENT_PATH, load_supplement

__all__ = [
    "CATALOG_PROVIDER_IDS",
    "KEPT_COST_SOURCES",
    "NANO_USD",
    "PRICE_BUCKETS",
    "RATE_FIELDS",
    "REQUESTS",
    "SUPPLEMENT_PATH",
    "USD",
    "Catalog",
    "CatalogModel",
    "CompiledPrice",
    "Discount",
    "ExchangeRates",
    "Price",
    "PriceBook",
    "PriceResolver",
    "PriceResult",
    "PriceSource",
    "Rate",
    "ResultSource",
    "Tier",
    "catalog_provider_id",
    "load_supplement",
    "to_nano",
    "with_price",
]
