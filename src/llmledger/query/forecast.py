"""Month-end forecast from the recent run rate.

The projection is the month's cost so far plus the mean daily cost of the last
``basis_days`` days (ending now) times the days left in the calendar month of
the report's time zone.  It is a run-rate estimate, not a model: it assumes the
recent pace continues.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from llmledger.pricing.fx import ExchangeRates
from llmledger.query.errors import InvalidQueryError
from llmledger.query.periods import month_bounds
from llmledger.query.report import Report
from llmledger.query.spec import Query

__all__ = ["Forecast", "Reporter", "month_forecast", "project_month"]


class Reporter(Protocol):
    """What answers a query: a store (``SqlStore.report``)."""

    def report(self, query: Query, *, rates: ExchangeRates | None = None) -> Report:
        """Answer ``query``, costs in its currency at ``rates``."""
        ...


_MICRO = Decimal("0.000001")
_DAY_SECONDS = Decimal(86400)


@dataclass(frozen=True, slots=True)
class Forecast:
    """A month-end projection.

    Attributes:
        month: The month, ``YYYY-MM`` in the report's zone.
        spent: Cost from the start of the month to now.
        run_rate_per_day: Mean daily cost over the basis window.
        basis_days: Length of the basis window in days.
        remaining_days: Days left in the month after now (fractional).
        projected: ``spent + run_rate_per_day * remaining_days``.
        currency: The currency of every amount.
    """

    month: str
    spent: Decimal
    run_rate_per_day: Decimal
    basis_days: int
    remaining_days: Decimal
    projected: Decimal
    currency: str = "USD"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (amounts as decimal strings)."""
        return {
            "month": self.month,
            "currency": self.currency,
            "spent": format(self.spent, "f"),
            "run_rate_per_day": format(self.run_rate_per_day, "f"),
            "basis_days": self.basis_days,
            "remaining_days": format(self.remaining_days, "f"),
            "projected": format(self.projected, "f"),
        }


def project_month(
    spent: Decimal,
    window_cost: Decimal,
    basis_days: int,
    now: datetime,
    month_end: datetime,
    *,
    month: str,
    currency: str = "USD",
) -> Forecast:
    """The month-end projection from the cost so far and a recent window (pure).

    Example:
        >>> from datetime import UTC
        >>> f = project_month(Decimal("100"), Decimal("70"), 7,
        ...                   datetime(2025, 4, 20, tzinfo=UTC),
        ...                   datetime(2025, 5, 1, tzinfo=UTC), month="2025-04")
        >>> f.run_rate_per_day, f.remaining_days, f.projected
        (Decimal('10.000000'), Decimal('11.000000'), Decimal('210.000000'))
    """
    if basis_days < 1:
        raise InvalidQueryError("the forecast needs a basis of at least one day")
    remaining = max(Decimal(0), Decimal(int((month_end - now).total_seconds())) / _DAY_SECONDS)
    rate = window_cost / basis_days
    projected = spent + rate * remaining
    return Forecast(
        month=month,
        spent=spent,
        run_rate_per_day=rate.quantize(_MICRO),
        basis_days=basis_days,
        remaining_days=remaining.quantize(_MICRO),
        projected=projected.quantize(_MICRO),
        currency=currency,
    )


def month_forecast(
    store: Reporter,
    query: Query,
    now: datetime,
    *,
    basis_days: int = 7,
    rates: ExchangeRates | None = None,
) -> Forecast:
    """Project the cost of the calendar month containing ``now``, with ``query``'s filters.

    ``query``'s zone and currency apply; its range, grouping and buckets are ignored.

    Example:
        >>> from datetime import UTC
        >>> from llmledger.store import open_store
        >>> f = month_forecast(open_store("sqlite://"), Query(),
        ...                    datetime(2025, 4, 20, tzinfo=UTC))
        >>> f.month, f.projected
        ('2025-04', Decimal('0.000000'))
    """
    start, end = month_bounds(now, query.zone)
    flat = replace(query, by=(), every=None, sort=(), limit=None, metrics=("cost",))

    def cost(since: datetime, until: datetime) -> Decimal:
        if since >= until:
            return Decimal(0)
        total = store.report(replace(flat, since=since, until=until), rates=rates).total
        found: Decimal | None = total["cost"]
        return found or Decimal(0)

    spent = cost(start, now)
    window = cost(now - timedelta(days=basis_days), now)
    local = start.astimezone(query.zone)
    return project_month(
        spent,
        window,
        basis_days,
        now,
        end,
        month=f"{local.year:04d}-{local.month:02d}",
        currency=query.currency,
    )
