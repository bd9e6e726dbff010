"""Spending limits as pure rules: what a limit is, its window, the estimate of a call, the decision.

A limit caps what one tenant, user, feature or provider key may spend in a
calendar window (an hour, a day, a week from Monday or a month, in UTC): cost in
USD, tokens, or requests.  Every amount is counted in integer *units*: nano-USD
for cost, tokens for tokens, calls for requests, so the store adds integers.

Nothing here does I/O or reads the clock; the store applies :func:`decide` inside
its transaction, the runtime computes the estimate before a call.

Example:
    >>> from datetime import UTC, datetime
    >>> limit = Limit(scope="user", value="ana", metric="requests", amount=Decimal(3),
    ...               period="hour", mode="block")
    >>> now = datetime(2025, 3, 5, 14, 27, tzinfo=UTC)
    >>> window_start(limit.period, now).isoformat()
    '2025-03-05T14:00:00+00:00'
    >>> decide(limit, used=2, reserved=0, needed=1), decide(limit, used=2, reserved=1, needed=1)
    ('ok', 'block')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal, get_args

from llmledger.core.errors import InvalidLimitError
from llmledger.core.ids import new_id

__all__ = [
    "METRICS",
    "MODES",
    "NANOS_PER_USD",
    "NOTE_TAG",
    "OUTCOMES",
    "PERIODS",
    "POLICIES",
    "SCOPES",
    "Amounts",
    "Decision",
    "Limit",
    "LimitMetric",
    "LimitMode",
    "LimitScope",
    "Outcome",
    "Period",
    "Policy",
    "Subject",
    "decide",
    "estimate_tokens",
    "window_end",
    "window_start",
]

LimitScope = Literal["tenant", "user", "feature", "api_key"]
LimitMetric = Literal["cost", "tokens", "requests"]
Period = Literal["hour", "day", "week", "month"]
LimitMode = Literal["warn", "block"]
Outcome = Literal["ok", "warn", "block"]
#: What a guarded call does when the limit store cannot be reached.
Policy = Literal["open", "closed"]

SCOPES: tuple[str, ...] = get_args(LimitScope)
METRICS: tuple[str, ...] = get_args(LimitMetric)
PERIODS: tuple[str, ...] = get_args(Period)
MODES: tuple[str, ...] = get_args(LimitMode)
OUTCOMES: tuple[str, ...] = get_args(Outcome)
POLICIES: tuple[str, ...] = get_args(Policy)

#: The tag a guarded call's event carries when a limit warned or refused it, or the
#: limit store could not be reached: ``warn:<limit ids>``, ``block:<limit ids>``,
#: ``unavailable:open`` / ``unavailable:closed``.
NOTE_TAG = "llmledger.limits"

#: Cost units: nano-USD, as the events table stores cost.
NANOS_PER_USD = 1_000_000_000
_MAX_UNITS = 2**62


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit.

    Attributes:
        scope: What it is counted per: ``tenant``, ``user``, ``feature`` or ``api_key``
            (the provider key's fingerprint, ``sha256:…``, as events carry it).
        value: Which tenant, user, feature or key fingerprint.
        metric: ``cost`` (USD), ``tokens`` (input + output) or ``requests``.
        amount: The most allowed per window (USD for cost, a whole number otherwise).
        period: The calendar window in UTC: ``hour``, ``day``, ``week`` (from Monday), ``month``.
        mode: ``block`` refuses a call that would pass the limit; ``warn`` lets it
            through and records the warning.
        tenant: The tenant the limit belongs to: only that tenant's calls count
            (for ``scope="tenant"`` it is ``value``); None for a limit over every tenant.
        name: A label for people.
        id: The limit's id (a ULID).
        created: When it was added.

    Example:
        >>> Limit(scope="tenant", value="acme", metric="cost", amount=Decimal("5"),
        ...       period="day").validate().tenant
        'acme'
    """

    scope: LimitScope
    value: str
    metric: LimitMetric
    amount: Decimal
    period: Period
    mode: LimitMode = "block"
    tenant: str | None = None
    name: str | None = None
    id: str = field(default_factory=new_id)
    created: datetime | None = None

    def validate(self) -> Limit:
        """The limit, checked (and, for a tenant limit, its tenant set).

        Raises:
            InvalidLimitError: naming the field that is wrong.
        """
        for name, value, allowed in (
            ("scope", self.scope, SCOPES),
            ("metric", self.metric, METRICS),
            ("period", self.period, PERIODS),
            ("mode", self.mode, MODES),
        ):
            if value not in allowed:
                raise InvalidLimitError(
                    f"{name} must be one of {', '.join(allowed)}, got {value!r}"
                )
        if not isinstance(self.value, str) or not self.value.strip():
            raise InvalidLimitError(f"a {self.scope} limit needs the {self.scope} it applies to")
        try:
            amount = Decimal(self.amount)
        except (InvalidOperation, TypeError, ValueError):
            raise InvalidLimitError(f"amount must be a number, got {self.amount!r}") from None
        if not amount.is_finite() or amount <= 0:
            raise InvalidLimitError(f"amount must be a positive number, got {self.amount!r}")
        if self.metric != "cost" and amount != amount.to_integral_value():
            raise InvalidLimitError(f"a {self.metric} limit counts whole units, got {amount}")
        if self.metric == "cost" and amount.as_tuple().exponent < -9:  # type: ignore[operator]
            raise InvalidLimitError(f"a cost limit has at most 9 decimals, got {amount}")
        if self.created is not None and self.created.tzinfo is None:
            raise InvalidLimitError("created must be timezone-aware")
        tenant = self.tenant
        if self.scope == "tenant":
            if tenant is not None and tenant != self.value:
                raise InvalidLimitError(
                    f"a tenant limit on {self.value!r} cannot belong to tenant {tenant!r}"
                )
            tenant = self.value
        limit = Limit(
            scope=self.scope,
            value=self.value,
            metric=self.metric,
            amount=amount,
            period=self.period,
            mode=self.mode,
            tenant=tenant,
            name=self.name,
            id=self.id,
            created=self.created,
        )
        if limit.units > _MAX_UNITS:
            raise InvalidLimitError(f"amount {amount} is too large")
        return limit

    @property
    def units(self) -> int:
        """The amount in units (nano-USD for cost).

        Example:
            >>> Limit("tenant", "acme", "cost", Decimal("1.5"), "day").units
            1500000000
        """
        if self.metric == "cost":
            return int(self.amount * NANOS_PER_USD)
        return int(self.amount)

    def matches(self, subject: Subject) -> bool:
        """Whether a call by ``subject`` counts against this limit.

        Example:
            >>> limit = Limit("user", "ana", "requests", Decimal(5), "day", tenant="acme")
            >>> ana_at_acme, ana_alone = Subject(tenant="acme", user="ana"), Subject(user="ana")
            >>> limit.matches(ana_at_acme), limit.matches(ana_alone)
            (True, False)
        """
        if self.tenant is not None and subject.tenant != self.tenant:
            return False
        return subject.value(self.scope) == self.value


@dataclass(frozen=True, slots=True)
class Subject:
    """Who makes a call, as limits see it.

    Example:
        >>> Subject(tenant="acme", api_key="sha256:e0dbaa0c6455").value("api_key")
        'sha256:e0dbaa0c6455'
    """

    tenant: str | None = None
    user: str | None = None
    feature: str | None = None
    api_key: str | None = None

    def value(self, scope: str) -> str | None:
        """The subject's tenant, user, feature or key fingerprint."""
        found: str | None = getattr(self, scope)
        return found


@dataclass(frozen=True, slots=True)
class Amounts:
    """What a call reserves or spent, in units of each metric.

    Example:
        >>> Amounts.of_call(cost=Decimal("0.0025"), tokens=1200).cost
        2500000
    """

    cost: int = 0
    tokens: int = 0
    requests: int = 1

    @classmethod
    def of_call(cls, *, cost: Decimal | None, tokens: int, requests: int = 1) -> Amounts:
        """The amounts of a call from its cost in USD (None: unknown, counted 0) and tokens."""
        nanos = 0 if cost is None else max(int((cost * NANOS_PER_USD).to_integral_value()), 0)
        return cls(cost=nanos, tokens=max(tokens, 0), requests=max(requests, 0))

    def get(self, metric: str) -> int:
        """The units of one metric."""
        found: int = getattr(self, metric)
        return found


@dataclass(frozen=True, slots=True)
class Decision:
    """What one limit says about one call.

    Attributes:
        limit: The limit.
        window: Start of the limit's window the call falls in.
        used: Units settled in the window before this call.
        reserved: Units reserved by calls in flight (not yet settled) in the window.
        needed: Units this call reserves.
        outcome: ``ok``, ``warn`` (over a warn limit: let through) or ``block``.
    """

    limit: Limit
    window: datetime
    used: int
    reserved: int
    needed: int
    outcome: Outcome

    @property
    def remaining(self) -> int:
        """Units left in the window once the calls in flight settle at their estimates."""
        return self.limit.units - self.used - self.reserved

    def describe(self) -> str:
        """One line for people.

        Example:
            >>> from datetime import UTC, datetime
            >>> limit = Limit("user", "ana", "cost", Decimal("1"), "day", id="L1")
            >>> Decision(limit, datetime(2025, 1, 1, tzinfo=UTC), 900_000_000, 0,
            ...          200_000_000, "block").describe()
            'limit L1 (user ana, cost 1 USD per day, block): used 0.9, in flight 0, this call 0.2'
        """
        limit = self.limit
        unit = " USD" if limit.metric == "cost" else ""
        return (
            f"limit {limit.id} ({limit.scope} {limit.value}, {limit.metric} "
            f"{limit.amount}{unit} per {limit.period}, {limit.mode}): used "
            f"{_show(limit, self.used)}, in flight {_show(limit, self.reserved)}, "
            f"this call {_show(limit, self.needed)}"
        )


def _show(limit: Limit, units: int) -> str:
    if limit.metric != "cost":
        return str(units)
    return format((Decimal(units) / NANOS_PER_USD).normalize(), "f")


def decide(limit: Limit, *, used: int, reserved: int, needed: int) -> Outcome:
    """Whether a call needing ``needed`` units fits under the limit.

    It fits when what is settled, what calls in flight reserved, and this call's
    need (at least one unit, so a spent limit lets nothing through even when the
    estimate is 0) stay within the amount.

    Example:
        >>> limit = Limit("tenant", "acme", "tokens", Decimal(1000), "day", mode="warn")
        >>> decide(limit, used=990, reserved=0, needed=10), decide(limit, used=1000, reserved=0,
        ...                                                        needed=0)
        ('ok', 'warn')
    """
    if used + reserved + max(needed, 1) <= limit.units:
        return "ok"
    return "warn" if limit.mode == "warn" else "block"


def window_start(period: str, now: datetime) -> datetime:
    """The start of the calendar window (UTC) that ``now`` falls in.

    Raises:
        InvalidLimitError: on a naive time or an unknown period.

    Example:
        >>> window_start("week", datetime(2025, 3, 6, 9, tzinfo=UTC)).isoformat()
        '2025-03-03T00:00:00+00:00'
        >>> window_start("month", datetime(2025, 3, 6, 9, tzinfo=UTC)).isoformat()
        '2025-03-01T00:00:00+00:00'
    """
    if now.tzinfo is None:
        raise InvalidLimitError(f"the time must be timezone-aware, got {now!r}")
    now = now.astimezone(UTC)
    if period == "hour":
        return now.replace(minute=0, second=0, microsecond=0)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise InvalidLimitError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")


def window_end(period: str, now: datetime) -> datetime:
    """The end (excluded) of the window ``now`` falls in.

    Example:
        >>> window_end("month", datetime(2025, 12, 6, tzinfo=UTC)).isoformat()
        '2026-01-01T00:00:00+00:00'
    """
    start = window_start(period, now)
    if period == "hour":
        return start + timedelta(hours=1)
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def estimate_tokens(
    prompt_bytes: int,
    max_tokens: int | None,
    *,
    bytes_per_token: float,
    default_output_tokens: int,
) -> tuple[int, int]:
    """The input and output tokens reserved for a call before it is sent.

    Input: the size in bytes of the request as sent (UTF-8 JSON, so the field
    names and punctuation count too) divided by ``bytes_per_token``, rounded up.
    Output: the call's own cap (``max_tokens`` and its aliases) or, without one,
    ``default_output_tokens``.

    Example:
        >>> estimate_tokens(4001, 256, bytes_per_token=4.0, default_output_tokens=4096)
        (1001, 256)
        >>> estimate_tokens(10, None, bytes_per_token=4.0, default_output_tokens=4096)
        (3, 4096)
    """
    input_tokens = math.ceil(max(prompt_bytes, 0) / bytes_per_token)
    output = default_output_tokens if max_tokens is None or max_tokens < 0 else max_tokens
    return input_tokens, output
