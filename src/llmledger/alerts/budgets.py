"""Money budgets: what they are, the window each one covers, and their status (pure).

A budget caps the cost of the calls its scope selects (any ``--where`` filter of
the query model, plus its tenant) over a period: a calendar day, ISO week or
month in the budget's time zone, or a rolling number of days ending now.  Its
status is the spend in the current window, what is left, the percentage used,
the thresholds crossed and a forecast to the end of the window.

Example:
    >>> from datetime import UTC, datetime
    >>> b = Budget(name="acme daily", amount=Decimal("1"), period="day", tenant="acme",
    ...            thresholds=(100, 50))
    >>> b.thresholds, [f.to_text() for f in b.filters()]
    ((50, 100), ['tenant=acme'])
    >>> since, until = budget_window(b, datetime(2025, 3, 15, 10, tzinfo=UTC))
    >>> since.isoformat(), until.isoformat()
    ('2025-03-15T00:00:00+00:00', '2025-03-16T00:00:00+00:00')
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, get_args

from llmledger.alerts.recipients import parse_recipients
from llmledger.core.errors import BudgetError
from llmledger.core.ids import new_id
from llmledger.query.errors import InvalidQueryError
from llmledger.query.forecast import project_month
from llmledger.query.periods import parse_period
from llmledger.query.spec import Filter, parse_where, zone

__all__ = [
    "MAX_AMOUNT",
    "PERIODS",
    "Budget",
    "BudgetStatus",
    "Period",
    "budget_status",
    "budget_window",
    "crossing_key",
    "matches",
]

Period = Literal["day", "week", "month", "rolling"]
PERIODS: tuple[str, ...] = get_args(Period)
#: The largest amount a budget takes (far above any real one; keeps sums exact).
MAX_AMOUNT = Decimal("1e12")
_CALENDAR = {"day": "today", "week": "this-week", "month": "this-month"}
_CENTS = Decimal("0.01")
_MICRO = Decimal("0.000001")


def _amount(value: Any) -> Decimal:
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise BudgetError(f"amount {value!r} is not a number") from None
    if not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT:
        raise BudgetError(f"amount must be above 0 and at most {MAX_AMOUNT:,f}, got {value}")
    return amount


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending cap on a scope of calls over a period.

    Attributes:
        name: Unique name, for people and commands.
        amount: The cap, in ``currency``.
        period: ``day``, ``week`` (ISO, from Monday), ``month`` (calendar, in
            ``tz``) or ``rolling`` (the last ``rolling_days`` days).
        currency: Currency of the amount; the spend is converted with the
            exchange rates in force on each call's day.
        tz: IANA time zone of the calendar periods.
        rolling_days: Length of a rolling period (only with ``rolling``).
        where: Scope, as ``--where`` expressions (``model=gpt-4o``, ``tag:env!=test``…).
        thresholds: Percentages of the amount that raise an alert, ascending.
        recipients: Channels told of a crossing (``email:…``, ``webhook:…``, ``slack:…``).
        tenant: The tenant the budget belongs to (its calls only), or None for all.
        active: Inactive budgets are neither checked nor alerted on.
        id: A ULID.
        created: When it was made.
    """

    name: str
    amount: Decimal
    period: Period = "month"
    currency: str = "USD"
    tz: str = "UTC"
    rolling_days: int | None = None
    where: tuple[str, ...] = ()
    thresholds: tuple[int, ...] = (50, 80, 100)
    recipients: tuple[str, ...] = ()
    tenant: str | None = None
    active: bool = True
    id: str = field(default_factory=new_id)
    created: datetime | None = None

    def __post_init__(self) -> None:
        name = self.name.strip() if isinstance(self.name, str) else ""
        if not name or len(name) > 200 or "\x00" in name:
            raise BudgetError("a budget needs a name of 1 to 200 characters (no NUL)")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "amount", _amount(self.amount))
        if self.period not in PERIODS:
            raise BudgetError(f"period must be one of {', '.join(PERIODS)}, got {self.period!r}")
        if self.period == "rolling":
            if not isinstance(self.rolling_days, int) or not 1 <= self.rolling_days <= 366:
                raise BudgetError("a rolling budget needs --days between 1 and 366")
        elif self.rolling_days is not None:
            raise BudgetError("--days is for rolling budgets only")
        currency = str(self.currency).strip().upper()
        if len(currency) != 3 or not currency.isalpha():
            raise BudgetError(f"currency must be a 3-letter code, got {self.currency!r}")
        object.__setattr__(self, "currency", currency)
        try:
            zone(self.tz)
            parsed = parse_where(self.where)
        except InvalidQueryError as exc:
            raise BudgetError(str(exc)) from None
        if any("\x00" in text for text in self.where):
            raise BudgetError("a scope expression holds a NUL character")
        object.__setattr__(self, "where", tuple(f.to_text() for f in parsed))
        levels = set()
        for level in self.thresholds:
            if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 1000:
                raise BudgetError(f"thresholds are whole percentages 1 to 1000, got {level!r}")
            levels.add(level)
        if not levels:
            raise BudgetError("a budget needs at least one threshold")
        object.__setattr__(self, "thresholds", tuple(sorted(levels)))
        object.__setattr__(self, "recipients", parse_recipients(list(self.recipients)))
        if self.tenant is not None and (not self.tenant or "\x00" in self.tenant):
            raise BudgetError("tenant must be a non-empty name")

    def filters(self) -> tuple[Filter, ...]:
        """The scope as query filters, the budget's tenant included."""
        own = (Filter("tenant", (self.tenant,)),) if self.tenant is not None else ()
        return parse_where(self.where) + own

    def changed(self, **changes: Any) -> Budget:
        """A copy with ``changes`` applied and checked again."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (the amount as a decimal string)."""
        return {
            "id": self.id,
            "name": self.name,
            "amount": format(self.amount, "f"),
            "currency": self.currency,
            "period": self.period,
            "rolling_days": self.rolling_days,
            "tz": self.tz,
            "where": list(self.where),
            "thresholds": list(self.thresholds),
            "recipients": list(self.recipients),
            "tenant": self.tenant,
            "active": self.active,
            "created": None if self.created is None else self.created.isoformat(),
        }


def budget_window(budget: Budget, now: datetime) -> tuple[datetime, datetime]:
    """The window whose spend counts against ``budget`` at ``now``: ``(since, until)``.

    Calendar periods run from their first to their last day (in the budget's
    zone); a rolling period of N days is today and the N - 1 days before it.
    Every window is whole local days.

    Example:
        >>> from datetime import UTC
        >>> b = Budget(name="w", amount=Decimal(5), period="rolling", rolling_days=7)
        >>> s, e = budget_window(b, datetime(2025, 3, 15, 9, tzinfo=UTC))
        >>> s.isoformat(), e.isoformat()
        ('2025-03-09T00:00:00+00:00', '2025-03-16T00:00:00+00:00')
    """
    local = zone(budget.tz)
    if budget.period == "rolling":
        assert budget.rolling_days is not None
        today = now.astimezone(local).date()
        first = parse_period(
            (today - timedelta(days=budget.rolling_days - 1)).isoformat(), now, local
        )
        return first[0], parse_period(today.isoformat(), now, local)[1]
    return parse_period(_CALENDAR[budget.period], now, local)


def matches(filters: tuple[Filter, ...], row: dict[str, Any]) -> bool:
    """Whether a report row (grouped by every filtered dimension) passes the filters.

    The same rule the store compiles to SQL: a value is kept when it is among a
    filter's values (None standing for "not set"), dropped when negated.

    Example:
        >>> matches(parse_where(["model=gpt-4o", "tag:env!=test"]),
        ...         {"model": "gpt-4o", "tag:env": None})
        True
    """
    return all((row.get(f.dimension) in f.values) != f.negate for f in filters)


def crossing_key(budget: Budget, since: datetime, threshold: int) -> str:
    """The identity of one crossing: a budget, its window and a threshold.

    A calendar window's start is part of it, so the next period's crossing is a
    new one; a rolling window has no start of its own.

    Example:
        >>> from datetime import UTC
        >>> b = Budget(name="d", amount=Decimal(1), period="day", id="01B")
        >>> crossing_key(b, datetime(2025, 3, 15, tzinfo=UTC), 50)
        'budget:01B:2025-03-15T00:00:00+00:00:50'
    """
    window = "rolling" if budget.period == "rolling" else since.isoformat()
    return f"budget:{budget.id}:{window}:{threshold}"


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Where a budget stands.

    Attributes:
        budget: The budget.
        since: Start of the window counted.
        until: End of the window (the end of its last day).
        spent: Cost of the scope's calls in the window, in the budget's currency.
        remaining: ``amount - spent`` (negative once over).
        percent: ``spent / amount`` as a percentage (two places).
        crossed: The thresholds reached.
        run_rate_per_day: Mean daily cost of the whole days before today (7).
        forecast: Projected spend at the end of the window at that rate
            (for rolling budgets: the run rate times the window's days).
        exceeds_on: The day (in the budget's zone) the amount is, or is
            projected to be, reached inside the window; None when not.
    """

    budget: Budget
    since: datetime
    until: datetime
    spent: Decimal
    remaining: Decimal
    percent: Decimal
    crossed: tuple[int, ...]
    run_rate_per_day: Decimal
    forecast: Decimal
    exceeds_on: date | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (amounts as decimal strings)."""
        return {
            "budget": self.budget.to_dict(),
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "currency": self.budget.currency,
            "spent": format(self.spent, "f"),
            "remaining": format(self.remaining, "f"),
            "percent": format(self.percent, "f"),
            "crossed": list(self.crossed),
            "run_rate_per_day": format(self.run_rate_per_day, "f"),
            "forecast": format(self.forecast, "f"),
            "exceeds_on": None if self.exceeds_on is None else self.exceeds_on.isoformat(),
        }


def budget_status(
    budget: Budget,
    *,
    spent: Decimal,
    recent: Decimal,
    basis_days: int,
    now: datetime,
    window: tuple[datetime, datetime],
) -> BudgetStatus:
    """A budget's status from its window's spend and the spend of the last ``basis_days``.

    The forecast is the run-rate projection of :func:`~llmledger.query.project_month`
    taken to the window's end: ``spent + recent / basis_days x days left``.

    Example:
        >>> from datetime import UTC
        >>> b = Budget(name="m", amount=Decimal(300), period="month")
        >>> now = datetime(2025, 4, 20, tzinfo=UTC)
        >>> s = budget_status(b, spent=Decimal(200), recent=Decimal(70), basis_days=7,
        ...                   now=now, window=budget_window(b, now))
        >>> s.percent, s.crossed, s.forecast, s.exceeds_on
        (Decimal('66.67'), (50,), Decimal('310.000000'), datetime.date(2025, 4, 30))
    """
    since, until = window
    amount = budget.amount
    percent = (spent / amount * 100).quantize(_CENTS)
    crossed = tuple(t for t in budget.thresholds if spent * 100 >= amount * t)
    local = zone(budget.tz)
    if budget.period == "rolling":
        assert budget.rolling_days is not None
        rate = (recent / basis_days).quantize(_MICRO)
        forecast = (rate * budget.rolling_days).quantize(_MICRO)
        exceeds_on = now.astimezone(local).date() if spent >= amount else None
    else:
        projection = project_month(
            spent, recent, basis_days, now, until, month=since.isoformat(), currency=""
        )
        rate, forecast = projection.run_rate_per_day, projection.projected
        exceeds_on = None
        if spent >= amount:
            exceeds_on = now.astimezone(local).date()
        elif rate > 0:
            days = (amount - spent) / rate
            if days < 400:
                moment = now + timedelta(seconds=float(days * 86400))
                if moment < until:
                    exceeds_on = moment.astimezone(local).date()
    return BudgetStatus(
        budget=budget,
        since=since,
        until=until,
        spent=spent,
        remaining=amount - spent,
        percent=percent,
        crossed=crossed,
        run_rate_per_day=rate,
        forecast=forecast,
        exceeds_on=exceeds_on,
    )
