"""A catalog document fetched from the network: read, checked and compared.

genai-prices publishes its live data as one JSON document (a list of providers,
each with its models and their dated prices), the shape its own updater reads.
This module turns such a document into a :class:`~llmledger.pricing.Catalog`,
refusing one that is not JSON, not in that shape, or lists no model, and says
what changed from one catalog to another.  Pure: the document is handed in
(``llmledger.monitor`` fetches it, the store keeps it).

Example:
    >>> from datetime import UTC, datetime
    >>> import json
    >>> document = json.dumps([{
    ...     "id": "acme", "name": "Acme", "api_pattern": "https://api\\\\.acme\\\\.example",
    ...     "models": [{"id": "acme-1", "match": {"equals": "acme-1"},
    ...                 "prices": {"input_mtok": 1, "output_mtok": 2}}]}])
    >>> catalog = read_catalog(document, fetched=datetime(2026, 12, 3, tzinfo=UTC))
    >>> catalog.name, catalog.find("acme", "acme-1").info.id
    ('catalog (fetched 2026-12-03)', 'acme-1')
    >>> read_catalog("[]", fetched=datetime(2026, 12, 3, tzinfo=UTC))
    Traceback (most recent call last):
    ...
    llmledger.core.errors.CatalogError: the catalog document lists no providers
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from llmledger.core.errors import CatalogError
from llmledger.pricing.catalog import Catalog

if TYPE_CHECKING:
    from genai_prices.types import Provider

__all__ = ["CatalogChanges", "catalog_changes", "read_catalog"]


def read_providers(document: bytes | str) -> list[Provider]:
    """The providers of a genai-prices data document.

    Numbers are read as decimals, never through binary floats.

    Raises:
        CatalogError: when the document is not JSON, not a list of providers in
            the genai-prices shape, or lists no provider or no model.
    """
    from genai_prices.types import _providers_from_raw

    try:
        raw: Any = json.loads(document, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CatalogError(f"the catalog document is not JSON: {exc}") from None
    if not isinstance(raw, list):
        raise CatalogError(
            f"the catalog document is not a list of providers (it is a JSON {_kind(raw)})"
        )
    if not raw:
        raise CatalogError("the catalog document lists no providers")
    try:
        with warnings.catch_warnings():
            # An extractor writing a unit this genai-prices does not read is
            # skipped by it; that is no reason to refuse the prices.
            warnings.simplefilter("ignore")
            providers = _providers_from_raw(raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise CatalogError(
            f"the catalog document is not in the genai-prices data shape: {_first_line(exc)}"
        ) from None
    if not any(provider.models for provider in providers):
        raise CatalogError("the catalog document lists no models")
    _check_price_keys(providers)
    return providers


def _check_price_keys(providers: list[Provider]) -> None:
    """Refuse a price in units this genai-prices does not know (it could not charge them)."""
    from genai_prices.types import ModelPrice
    from genai_prices.units import _get_registry
    from genai_prices.validation import validate_price_keys

    registry = _get_registry()
    for provider in providers:
        for model in provider.models:
            prices = model.prices
            found = [prices] if isinstance(prices, ModelPrice) else [c.prices for c in prices]
            found += [variant.prices for variant in model.price_variants or ()]
            for price in found:
                keys = {k for k, v in price.__dict__.items() if not k.startswith("_") and v}
                try:
                    validate_price_keys(keys, registry)
                except ValueError as exc:
                    raise CatalogError(
                        f"the catalog document is not in the genai-prices data shape: "
                        f"{provider.id}/{model.id}: {exc}"
                    ) from None


def read_catalog(document: bytes | str, *, fetched: datetime) -> Catalog:
    """A :class:`Catalog` of a fetched document, named by the day it was fetched.

    Raises:
        CatalogError: as :func:`read_providers`.
    """
    return Catalog(read_providers(document), fetched=fetched)


@dataclass(frozen=True, slots=True)
class CatalogChanges:
    """What one catalog lists that another does not, model by model.

    Attributes:
        added: ``provider/model`` of the models only the new catalog lists.
        removed: Those only the old one lists.
        changed: Those both list whose prices (their dated history, tiers or
            service-tier variants) differ.
    """

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line of counts.

        Example:
            >>> CatalogChanges(added=("acme/a",), changed=("x/b", "x/c")).summary()
            '1 model(s) added, 2 price(s) changed, 0 model(s) removed'
        """
        return (
            f"{len(self.added)} model(s) added, {len(self.changed)} price(s) changed, "
            f"{len(self.removed)} model(s) removed"
        )


def catalog_changes(old: Catalog, new: Catalog) -> CatalogChanges:
    """The models added, removed and repriced from ``old`` to ``new``.

    Example:
        >>> bundled = Catalog()
        >>> catalog_changes(bundled, Catalog(bundled.providers)).summary()
        '0 model(s) added, 0 price(s) changed, 0 model(s) removed'
    """
    before = {(m.owner, m.info.id): m.info for m in old.models()}
    after = {(m.owner, m.info.id): m.info for m in new.models()}
    added = sorted(f"{p}/{m}" for p, m in after.keys() - before.keys())
    removed = sorted(f"{p}/{m}" for p, m in before.keys() - after.keys())
    changed = sorted(
        f"{p}/{m}"
        for (p, m), info in after.items()
        if (p, m) in before
        and (info.prices, info.price_variants)
        != (before[(p, m)].prices, before[(p, m)].price_variants)
    )
    return CatalogChanges(tuple(added), tuple(removed), tuple(changed))


def _kind(value: object) -> str:
    return {dict: "object", str: "string", bool: "boolean"}.get(type(value), type(value).__name__)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = text.splitlines()
    # A pydantic error starts with a count line; the first error is on the next two.
    return " ".join(line.strip() for line in lines[:3]) if lines else type(exc).__name__
