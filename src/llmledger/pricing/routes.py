"""The resolver's cache entries and the walk through a model's dated rows.

A :class:`Route` holds, for one (provider, model, service tier), every layer's
rows and the times at which the price in force can change; each stretch between
those times resolves once into a :class:`Segment`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from types import MappingProxyType
from typing import TypeVar

from llmledger.pricing.catalog import CatalogModel
from llmledger.pricing.compiled import CompiledPrice
from llmledger.pricing.files import Discount
from llmledger.pricing.model import Price, PriceResult

__all__ = ["NO_PARTS", "Route", "Segment", "first_in_force", "in_force", "unpriced"]

#: The breakdown of a result without parts.
NO_PARTS: Mapping[str, Decimal] = MappingProxyType({})


@dataclass(slots=True)
class Segment:
    """A resolved stretch of a route: the compiled price, or why there is none."""

    compiled: CompiledPrice | None
    unpriced: PriceResult | None
    # Why the price is incomplete whatever the usage (a service tier no row prices).
    missing_tier: str | None = None
    # A supplementary tier multiplier applied to the catalog's rates.
    tier_supplement: bool = False


@dataclass(slots=True)
class Route:
    """What the resolver keeps for one (provider, model, service tier)."""

    provider: str
    model: str
    service_tier: str | None
    user_groups: list[tuple[Price, ...]]
    discount_groups: list[tuple[Discount, ...]]
    tier_groups: list[tuple[Discount, ...]]
    supplement_groups: list[tuple[Price, ...]]
    catalog: CatalogModel | None
    context: dict[str, str] | None
    days: list[int]
    times: list[int]
    segments: dict[tuple[int, int], Segment] = field(default_factory=dict)
    # The catalog models are another provider's (Vertex AI priced through Google's):
    # the provider's own supplementary row replaces the catalog row it borrows.
    borrowed: bool = False


def unpriced(reason: str) -> PriceResult:
    """A result without a cost, for ``reason``."""
    return PriceResult(cost=None, breakdown=NO_PARTS, source=None, ref=None, unpriced_reason=reason)


_Row = TypeVar("_Row", Price, Discount)


def in_force(rows: tuple[_Row, ...], day: date) -> _Row | None:
    """The row of a model's history in force on ``day`` (rows sorted by first day)."""
    found = None
    for row in rows:
        if row.valid_from is None or row.valid_from <= day:
            found = row
    return found


def first_in_force(groups: Iterable[tuple[_Row, ...]], day: date) -> _Row | None:
    """The row in force on ``day`` of the first group that has one."""
    for group in groups:
        found = in_force(group, day)
        if found is not None:
            return found
    return None
