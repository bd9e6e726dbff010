"""Evaluating many budgets with few queries (pure: the queries are run by the caller).

Budgets that share a time zone, a currency and the set of dimensions their
scopes filter on are answered by one report: cost per day (in that zone),
grouped by those dimensions, over every window the budgets need (their periods
and the run rate's days).  Each budget then sums the days of its window in the
groups its filters keep (:func:`~llmledger.alerts.budgets.matches`, the same
rule the store compiles to SQL).  Every window is whole local days, so the day
buckets add up to it exactly.  When every budget of a group keeps only listed
values of a dimension, the report is filtered to the union of those values, so
a group of tag-scoped budgets reads only their tags' events.

Example:
    >>> from datetime import UTC, datetime
    >>> from decimal import Decimal
    >>> a = Budget(name="a", amount=Decimal(1), period="day", tenant="acme")
    >>> b = Budget(name="b", amount=Decimal(2), period="day", tenant="globex")
    >>> plan = plan_budgets([a, b], datetime(2025, 3, 15, 10, tzinfo=UTC))
    >>> [(q.by, [f.to_text() for f in q.where]) for q in plan.queries]
    [(('tenant',), ['tenant=acme,globex'])]
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
from llmledger.query.periods import parse_period
from llmledger.query.spec import Filter, Query, zone

__all__ = ["BASIS_DAYS", "BudgetPlan", "budget_conditions", "plan_budgets", "statuses"]

#: Days of recent spend the forecast's run rate is the mean of.
BASIS_DAYS = 7


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    """The reports that answer a set of budgets, and which answers which.

    Attributes:
        now: The moment evaluated.
        queries: Distinct report queries to run (cost per day, grouped by the
            dimensions their budgets filter on).
        query_of: Budget id -> index of the query answering it.
        windows: Budget id -> its window ``(since, until)``.
        basis: Budget id -> the window of its run rate: the ``basis_days`` whole
            days before today (in its zone).
        basis_days: Days in the run rate's window.
    """

    now: datetime
    queries: tuple[Query, ...]
    query_of: Mapping[str, int]
    windows: Mapping[str, tuple[datetime, datetime]]
    basis: Mapping[str, tuple[datetime, datetime]]
    basis_days: int


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


def _basis(budget: Budget, now: datetime, days: int) -> tuple[datetime, datetime]:
    local = zone(budget.tz)
    today = now.astimezone(local).date()
    start = parse_period((today - timedelta(days=days)).isoformat(), now, local)[0]
    return start, parse_period(today.isoformat(), now, local)[0]


def plan_budgets(
    budgets: Sequence[Budget], now: datetime, *, basis_days: int = BASIS_DAYS
) -> BudgetPlan:
    """The queries answering ``budgets`` at ``now``: one per time zone, currency and set
    of filtered dimensions, cost per day over every window its budgets need."""
    windows = {b.id: budget_window(b, now) for b in budgets}
    basis = {b.id: _basis(b, now, basis_days) for b in budgets}
    groups: dict[tuple[Any, ...], list[Budget]] = {}
    for budget in budgets:
        groups.setdefault((budget.tz, budget.currency, _dimensions(budget)), []).append(budget)
    queries: list[Query] = []
    query_of: dict[str, int] = {}
    for (tz, currency, dims), members in groups.items():
        spans = [windows[b.id] for b in members] + [basis[b.id] for b in members]
        queries.append(
            Query(
                since=min(span[0] for span in spans),
                until=max(span[1] for span in spans),
                tz=tz,
                every="day",
                by=dims,
                where=_narrowing(members, dims),
                metrics=("cost",),
                currency=currency,
            )
        )
        query_of.update((b.id, len(queries) - 1) for b in members)
    return BudgetPlan(now, tuple(queries), query_of, windows, basis, basis_days)


_Key = tuple[str | None, ...]


class _Answer:
    """One query's rows: cost per day of each group, summed per window on demand."""

    def __init__(self, query: Query, rows: Sequence[Mapping[str, Any]]) -> None:
        self.by = query.by
        self.days: dict[_Key, list[tuple[datetime, Decimal]]] = {}
        for row in rows:
            key = tuple(row.get(d) for d in self.by)
            self.days.setdefault(key, []).append((row["day"], row.get("cost") or Decimal(0)))
        self._sums: dict[tuple[datetime, datetime], dict[_Key, Decimal]] = {}

    def keys(self, budget: Budget) -> list[_Key]:
        filters = budget.filters()
        return [key for key in self.days if matches(filters, dict(zip(self.by, key, strict=True)))]

    def sums(self, window: tuple[datetime, datetime]) -> dict[_Key, Decimal]:
        found = self._sums.get(window)
        if found is None:
            since, until = window
            found = {
                key: sum((cost for day, cost in days if since <= day < until), Decimal(0))
                for key, days in self.days.items()
            }
            self._sums[window] = found
        return found


def statuses(
    plan: BudgetPlan,
    budgets: Sequence[Budget],
    answers: Sequence[Sequence[Mapping[str, Any]]],
) -> list[BudgetStatus]:
    """Each budget's status from the rows answering the plan's queries, in order.

    Example:
        >>> from datetime import UTC
        >>> b = Budget(name="a", amount=Decimal(1), period="day", tenant="acme")
        >>> now = datetime(2025, 3, 15, 12, tzinfo=UTC)
        >>> plan = plan_budgets([b], now)
        >>> today = datetime(2025, 3, 15, tzinfo=UTC)
        >>> rows = [{"day": today, "tenant": "acme", "cost": Decimal("0.6")},
        ...         {"day": today, "tenant": "x", "cost": Decimal(9)}]
        >>> [s.percent for s in statuses(plan, [b], [rows])]
        [Decimal('60.00')]
    """
    read: dict[int, _Answer] = {}
    out = []
    for budget in budgets:
        index = plan.query_of[budget.id]
        answer = read.get(index)
        if answer is None:
            answer = read[index] = _Answer(plan.queries[index], answers[index])
        keys = answer.keys(budget)
        spent_by = answer.sums(plan.windows[budget.id])
        recent_by = answer.sums(plan.basis[budget.id])
        out.append(
            budget_status(
                budget,
                spent=sum((spent_by[k] for k in keys), Decimal(0)),
                recent=sum((recent_by[k] for k in keys), Decimal(0)),
                basis_days=plan.basis_days,
                now=plan.now,
                window=plan.windows[budget.id],
            )
        )
    return out


def budget_conditions(found: Sequence[BudgetStatus]) -> list[Condition]:
    """A condition per threshold each budget has reached in its current window.

    Example:
        >>> from datetime import UTC
        >>> b = Budget(name="a", amount=Decimal(1), period="day", thresholds=(50, 100))
        >>> plan = plan_budgets([b], datetime(2025, 3, 15, 12, tzinfo=UTC))
        >>> found = statuses(plan, [b], [[{"day": datetime(2025, 3, 15, tzinfo=UTC),
        ...                               "cost": Decimal("0.6")}]])
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
