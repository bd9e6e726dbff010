"""Pricing: what a call cost, from reported costs, user prices and the bundled catalog.

Pure: no clock, no network; the only I/O is reading price files the caller names.

Example:
    >>> from datetime import UTC, datetime
    >>> from llmledger.core.usage import Usage
    >>> resolver = PriceResolver()
    >>> resolver.price("anthropic", "claude-sonnet-4-5-20250929",
    ...                Usage(input_tokens=2000, cache_read_tokens=1000, output_tokens=100),
    ...                datetime(2025, 11, 1, tzinfo=UTC)).cost
    Decimal('0.004800000')
"""

from llmledger.pricing.catalog import PROVIDER_ALIASES, Catalog, CatalogModel, catalog_provider_id
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
)
from llmledger.pricing.resolver import PriceResolver

__all__ = [
    "NANO_USD",
    "PRICE_BUCKETS",
    "PROVIDER_ALIASES",
    "RATE_FIELDS",
    "REQUESTS",
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
    "to_nano",
]
