"""Evaluating many budgets with few queries (pure: the queries are run by the caller).

Budgets that share a window, a currency and the set of dimensions their scopes
filter on are answered by one report grouped by those dimensions; each budget
then sums the rows its filters keep (:func:`~llmledger.alerts.budgets.matches`,
the same rule the store compiles to SQL).  When every budget of a group keeps
only listed values of a dimension, the report is filtered to the union of those
values, so a group of tag-scoped budgets reads only their tags' events.  The
forecast's recent spend is one more report per (currency, dimensions).

Example:
    >>> from datetime import UTC, datetime
    >>> from decimal import Decimal
    >>> a = Budget(name="a", amount=Decimal(1), period="day", tenant="acme")
    >>> b = Budget(name="b", amount=Decimal(2), period="day", tenant="globex")
    >>> plan = plan_budgets([a, b], datetime(2025, 3, 15, 10, tzinfo=UTC))
    >>> [(q.by, [f.to_text() for f in q.where]) for q in plan.queries]
    [(('tenant',), ['tenant=acme,globex']), (('tenant',), ['tenant=acme,globex'])]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from llmledger.alerts.budgets import (
    Budget,
    BudgetStatus,
    budget_status,
    budget_window,
    crossing_key,
    matches,
)
from llmledger.alerts.state import Condition
from llmledger.query.spec import Filter, Query

__all__ = ["BASIS_DAYS", "BudgetPlan", "budget_conditions", "plan_budgets", "statuses"]

#: Days of recent spend the forecast's run rate is the mean of.
BASIS_DAYS = 7


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    """The reports that answer a set of budgets, and which answers which.

    Attributes:
        now: The moment evaluated.
        queries: Distinct report queries to run (grouped, cost only).
        spent: Budget id -> index of the query giving its window's spend.
        recent: Budget id -> index of the query giving its last ``BASIS_DAYS`` days.
        windows: Budget id -> its window ``(since, until)``.
    """

    now: datetime
    queries: tuple[Query, ...]
    spent: Mapping[str, int]
    recent: Mapping[str, int]
    windows: Mapping[str, tuple[datetime, datetime]]


def _dimensions(budget: Budget) -> tuple[str, ...]:
    return tuple(sorted({f.dimension for f in budget.filters()}))


def _narrowing(members: Sequence[Budget], dims: tuple[str, ...]) -> tuple[Filter, ...]:
    """Filters every member's scope implies: for each dimension all members keep
    only listed values of, the union of those values."""
    out = []
    for dim in dims:
        union: list[str | None] = []
        for budget in members:
            kept = [f for f in budget.filters() if f.dimension == dim and not f.negate]
            if not kept:
                break
            # Several positive filters on one dimension intersect; any of them bounds it.
            for value in kept[0].values:
                if value not in union:
                    union.append(value)
        else:
            out.append(Filter(dim, tuple(union)))
    return tuple(out)


def plan_budgets(
    budgets: Sequence[Budget], now: datetime, *, basis_days: int = BASIS_DAYS
) -> BudgetPlan:
    """The queries answering ``budgets`` at ``now``, shared wherever budgets allow."""
    windows = {b.id: budget_window(b, now) for b in budgets}
    spent_groups: dict[tuple[Any, ...], list[Budget]] = {}
    recent_groups: dict[tuple[Any, ...], list[Budget]] = {}
    for budget in budgets:
        dims = _dimensions(budget)
        spent_groups.setdefault((windows[budget.id], budget.currency, dims), []).append(budget)
        recent_groups.setdefault((budget.currency, dims), []).append(budget)
    queries: list[Query] = []
    spent: dict[str, int] = {}
    recent: dict[str, int] = {}
    for (window, currency, dims), members in spent_groups.items():
        queries.append(
            Query(
                since=window[0],
                until=window[1],
                by=dims,
                where=_narrowing(members, dims),
                metrics=("cost",),
                currency=currency,
            )
        )
        spent.update((b.id, len(queries) - 1) for b in members)
    for (currency, dims), members in recent_groups.items():
        queries.append(
            Query(
                since=now - timedelta(days=basis_days),
                until=now,
                by=dims,
                where=_narrowing(members, dims),
                metrics=("cost",),
                currency=currency,
            )
        )
        recent.update((b.id, len(queries) - 1) for b in members)
    return BudgetPlan(now, tuple(queries), spent, recent, windows)


def _sum(budget: Budget, rows: Sequence[Mapping[str, Any]]) -> Decimal:
    filters = budget.filters()
    total = Decimal(0)
    for row in rows:
        if matches(filters, dict(row)):
            total += row.get("cost") or Decimal(0)
    return total


def statuses(
    plan: BudgetPlan,
    budgets: Sequence[Budget],
    answers: Sequence[Sequence[Mapping[str, Any]]],
    *,
    basis_days: int = BASIS_DAYS,
) -> list[BudgetStatus]:
    """Each budget's status from the rows answering the plan's queries, in order.

    Example:
        >>> from datetime import UTC
        >>> b = Budget(name="a", amount=Decimal(1), period="day", tenant="acme")
        >>> plan = plan_budgets([b], datetime(2025, 3, 15, 12, tzinfo=UTC))
        >>> rows = [{"tenant": "acme", "cost": Decimal("0.6")}, {"tenant": "x", "cost": 9}]
        >>> [s.percent for s in statuses(plan, [b], [rows, rows])]
        [Decimal('60.00')]
    """
    return [
        budget_status(
            budget,
            spent=_sum(budget, answers[plan.spent[budget.id]]),
            recent=_sum(budget, answers[plan.recent[budget.id]]),
            basis_days=basis_days,
            now=plan.now,
            window=plan.windows[budget.id],
        )
        for budget in budgets
    ]


def budget_conditions(found: Sequence[BudgetStatus]) -> list[Condition]:
    """A condition per threshold each budget has reached in its current window.

    Example:
        >>> from datetime import UTC
        >>> b = Budget(name="a", amount=Decimal(1), period="day", thresholds=(50, 100))
        >>> plan = plan_budgets([b], datetime(2025, 3, 15, 12, tzinfo=UTC))
        >>> found = statuses(plan, [b], [[{"cost": Decimal("0.6")}], []])
        >>> [c.title for c in budget_conditions(found)]
        ['Budget a at 50%: 0.60 of 1 USD (day)']
    """
    out = []
    for status in found:
        budget = status.budget
        for threshold in status.crossed:
            period = (
                f"last {budget.rolling_days} days" if budget.period == "rolling" else budget.period
            )
            out.append(
                Condition(
                    "budget",
                    crossing_key(budget, status.since, threshold),
                    budget.tenant,
                    f"Budget {budget.name} at {threshold}%: {status.spent:.2f} of "
                    f"{budget.amount:f} {budget.currency} ({period})",
                    f"{budget.name} has spent {status.spent:.2f} {budget.currency} of "
                    f"{budget.amount:f} ({status.percent}%) since {status.since.isoformat()}; "
                    f"{status.remaining:.2f} left. Forecast for the period: "
                    f"{status.forecast:.2f}"
                    + (
                        f", reaching the amount on {status.exceeds_on.isoformat()}."
                        if status.exceeds_on is not None
                        else "."
                    ),
                    {**status.to_dict(), "threshold": threshold},
                    budget.recipients,
                )
            )
    return out
