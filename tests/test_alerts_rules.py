"""The pure rules of budgets and alerts: windows, status, crossings, the state machine,
the baselines and the retry backoff."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from llmledger.alerts import (
    Alert,
    AlertSettings,
    Budget,
    Condition,
    budget_conditions,
    budget_window,
    plan_budgets,
    retry_delay,
    statuses,
    transition,
)
from llmledger.alerts.rules import (
    error_rate_conditions,
    latency_conditions,
    spike_conditions,
    stale_price_conditions,
)
from llmledger.core.errors import BudgetError

NOW = datetime(2025, 3, 15, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _alert(condition: Condition, fired: datetime = NOW) -> Alert:
    return Alert(
        "01" + condition.key,
        condition.rule,
        condition.key,
        condition.tenant,
        condition.title,
        condition.message,
        {},
        (),
        fired,
    )


def _run(
    holding: list[Condition],
    open_alerts: list[Alert],
    resolved: dict[str, datetime],
    now: datetime,
    cooldown: timedelta = HOUR,
) -> tuple[list[Alert], dict[str, datetime], list[str]]:
    """One check: what fires (as open alerts after) and what resolves."""
    change = transition(
        open_alerts, resolved, holding, {c.rule for c in holding} | {"x"}, now, cooldown
    )
    fired = [_alert(c, now) for c in change.fire]
    still = [a for a in open_alerts if a not in change.resolve] + fired
    after = dict(resolved) | {a.key: now for a in change.resolve}
    return still, after, [c.key for c in change.fire]


def test_a_condition_fires_once_while_it_holds_and_resolves_when_it_clears() -> None:
    hot = Condition("error_rate", "error_rate:openai", None, "hot", "m")
    open_, resolved, fired = _run([hot], [], {}, NOW)
    assert fired == ["error_rate:openai"]
    for minutes in range(5, 60, 5):
        open_, resolved, fired = _run([hot], open_, resolved, NOW + timedelta(minutes=minutes))
        assert fired == []
    change = transition(open_, resolved, [], {"error_rate"}, NOW + HOUR, HOUR)
    assert [a.key for a in change.resolve] == ["error_rate:openai"] and change.fire == ()


def test_a_flapping_condition_does_not_storm() -> None:
    hot = Condition("latency", "latency:openai", None, "slow", "m")
    open_: list[Alert] = []
    resolved: dict[str, datetime] = {}
    fired_total = 0
    # The condition flips every check for two hours, one check a minute.
    for minute in range(120):
        holding = [hot] if minute % 2 == 0 else []
        now = NOW + timedelta(minutes=minute)
        change = transition(open_, resolved, holding, {"latency"}, now, HOUR)
        fired_total += len(change.fire)
        for alert in change.resolve:
            resolved[alert.key] = now
        open_ = [a for a in open_ if a not in change.resolve] + [
            _alert(c, now) for c in change.fire
        ]
    assert fired_total == 2  # once, then once more after an hour's cooldown


def test_a_rule_that_was_not_checked_resolves_nothing() -> None:
    alert = _alert(Condition("auth_failure", "auth_failure:openai:-", None, "t", "m"))
    change = transition([alert], {}, [], {"budget", "error_rate"}, NOW, HOUR)
    assert change.resolve == ()


def test_repeated_conditions_in_one_check_fire_once() -> None:
    hot = Condition("price_gap", "price_gap:x:y:unpriced", None, "t", "m")
    assert len(transition([], {}, [hot, hot], {"price_gap"}, NOW, HOUR).fire) == 1


@pytest.mark.parametrize(
    ("period", "days", "tz", "since", "until"),
    [
        ("day", None, "UTC", "2025-03-15T00:00:00+00:00", "2025-03-16T00:00:00+00:00"),
        ("week", None, "UTC", "2025-03-10T00:00:00+00:00", "2025-03-17T00:00:00+00:00"),
        ("month", None, "UTC", "2025-03-01T00:00:00+00:00", "2025-04-01T00:00:00+00:00"),
        (
            "day",
            None,
            "America/New_York",
            "2025-03-15T00:00:00-04:00",
            "2025-03-16T00:00:00-04:00",
        ),
        ("rolling", 7, "UTC", "2025-03-09T00:00:00+00:00", "2025-03-16T00:00:00+00:00"),
    ],
)
def test_budget_windows(period: str, days: int | None, tz: str, since: str, until: str) -> None:
    budget = Budget(name="b", amount=Decimal(1), period=period, rolling_days=days, tz=tz)  # type: ignore[arg-type]
    start, end = budget_window(budget, NOW)
    assert (start.isoformat(), end.isoformat()) == (since, until)


def test_each_threshold_is_one_crossing_per_window() -> None:
    budget = Budget(name="d", amount=Decimal(1), period="day", thresholds=(50, 100))

    def keys(now: datetime, spent: str) -> list[str]:
        plan = plan_budgets([budget], now)
        day = now.replace(hour=0)
        found = statuses(plan, [budget], [[{"day": day, "cost": Decimal(spent)}]])
        return [c.key for c in budget_conditions(found)]

    today = keys(NOW, "0.5")
    assert len(today) == 1 and today[0].endswith(":50")
    assert keys(NOW + HOUR, "0.7") == today  # still the same crossing
    assert len(keys(NOW + 2 * HOUR, "1.0")) == 2
    tomorrow = keys(NOW + timedelta(days=1), "0.5")
    assert tomorrow != today  # a new day's crossing is a new one


def test_status_remaining_percent_and_forecast() -> None:
    budget = Budget(name="m", amount=Decimal(100), period="month", thresholds=(50, 80, 100))
    plan = plan_budgets([budget], NOW)
    rows = [
        {"day": datetime(2025, 3, 10, tzinfo=UTC), "cost": Decimal("14")},
        {"day": datetime(2025, 3, 15, tzinfo=UTC), "cost": Decimal("67")},
        {"day": datetime(2025, 2, 28, tzinfo=UTC), "cost": Decimal("1000")},  # last month
    ]
    (status,) = statuses(plan, [budget], [rows])
    assert status.remaining == Decimal(19)
    assert status.percent == Decimal("81.00")
    assert status.crossed == (50, 80)
    assert status.run_rate_per_day == Decimal("2.000000")
    # 16.5 days left in March at $2 a day.
    assert status.forecast == Decimal("114.000000")
    assert status.exceeds_on == date(2025, 3, 25)  # $19 left at $2 a day: 9.5 days


def test_scope_matching_follows_the_query_model() -> None:
    budget = Budget(
        name="s",
        amount=Decimal(10),
        where=("model=gpt-4o,o3", "tag:env!=test", "feature!=(none)"),
        tenant="acme",
    )
    plan = plan_budgets([budget], NOW)
    (query,) = plan.queries
    assert query.by == ("feature", "model", "tag:env", "tenant")
    rows: list[dict[str, Any]] = [
        {"tenant": "acme", "model": "gpt-4o", "tag:env": None, "feature": "chat", "cost": 1},
        {"tenant": "acme", "model": "o3", "tag:env": "prod", "feature": "x", "cost": 2},
        {"tenant": "acme", "model": "o3", "tag:env": "test", "feature": "x", "cost": 4},
        {"tenant": "acme", "model": "o3", "tag:env": "prod", "feature": None, "cost": 8},
        {"tenant": "globex", "model": "o3", "tag:env": "prod", "feature": "x", "cost": 16},
        {"tenant": "acme", "model": "gpt-4.1", "tag:env": None, "feature": "x", "cost": 32},
    ]
    for row in rows:
        row["day"] = datetime(2025, 3, 15, tzinfo=UTC)
    (status,) = statuses(plan, [budget], [rows])
    assert status.spent == Decimal(3)


def test_budgets_sharing_a_window_share_their_queries() -> None:
    budgets = [
        Budget(name=f"t{i}", amount=Decimal(1), period="month", tenant=f"t{i}") for i in range(50)
    ] + [
        Budget(name=f"p{i}", amount=Decimal(1), period="month", where=(f"tag:project=p{i}",))
        for i in range(50)
    ]
    plan = plan_budgets(budgets, NOW)
    assert len(plan.queries) == 2
    tag_query = next(q for q in plan.queries if q.by == ("tag:project",))
    assert len(tag_query.where[0].values) == 50


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount": Decimal(0)}, "amount must be above 0"),
        ({"amount": "lots"}, "is not a number"),
        ({"period": "year"}, "period must be one of"),
        ({"period": "rolling"}, "rolling budget needs --days"),
        ({"rolling_days": 3}, "--days is for rolling budgets only"),
        ({"where": ("colour=red",)}, "unknown dimension"),
        ({"thresholds": (0,)}, "thresholds are whole percentages"),
        ({"thresholds": ()}, "at least one threshold"),
        ({"recipients": ("sms:123",)}, "write email:ADDRESS"),
        ({"recipients": ("email:a@b.c\nBcc: x@y.z",)}, "not an email address"),
        ({"recipients": ("webhook:ftp://x",)}, "http(s) URL"),
        ({"tz": "Mars/Base"}, "unknown time zone"),
        ({"currency": "dollars"}, "3-letter code"),
        ({"name": " "}, "needs a name"),
    ],
)
def test_a_bad_budget_is_refused_with_its_reason(changes: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"name": "b", "amount": Decimal(1)}
    with pytest.raises(BudgetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Budget(**(fields | changes))  # type: ignore[arg-type]


def test_error_rate_needs_enough_calls_and_a_rate_above_the_threshold() -> None:
    cfg = AlertSettings()
    rows = [
        {"provider": "openai", "calls": 19, "errors": 19},  # too few calls
        {"provider": "anthropic", "calls": 100, "errors": 5},  # 5% is not above 5%
        {"provider": "google", "calls": 100, "errors": 6},
    ]
    assert [c.key for c in error_rate_conditions(rows, cfg)] == ["error_rate:google"]


def test_spend_spike_against_the_trailing_mean() -> None:
    cfg = AlertSettings(spike_factor=3.0, spike_min_cost=Decimal(1))
    week = [{"tenant": "acme", "cost": Decimal(168)}, {"tenant": "quiet", "cost": Decimal(0)}]
    now = [
        {"tenant": "acme", "cost": Decimal("3")},  # 3x of $1/h is not above 3x
        {"tenant": "quiet", "cost": Decimal("0.5")},  # under the minimum
        {"tenant": "new", "cost": Decimal("2")},  # no baseline: a spike
    ]
    assert [c.tenant for c in spike_conditions("cost", now, week, cfg)] == ["new"]
    now[0]["cost"] = Decimal("3.01")
    assert [c.tenant for c in spike_conditions("cost", now, week, cfg)] == ["acme", "new"]


def test_token_spike_and_latency_against_baselines() -> None:
    cfg = AlertSettings(spike_min_tokens=1000)
    assert (
        spike_conditions("tokens", [{"tenant": None, "total_tokens": 5000}], [], cfg)[0].key
        == "token_spike:-"
    )
    current = [{"provider": "openai", "calls": 30, "latency_p95": 1600.0}]
    assert latency_conditions(
        current, [{"provider": "openai", "calls": 500, "latency_p95": 1000.0}], cfg
    )
    assert not latency_conditions(
        current, [{"provider": "openai", "calls": 500, "latency_p95": 1100.0}], cfg
    )
    assert not latency_conditions(
        current, [{"provider": "openai", "calls": 5, "latency_p95": 1.0}], cfg
    )


def test_stale_prices_are_one_condition() -> None:
    cfg = AlertSettings(stale_days=30)
    rows = [("a", "m1", date(2025, 2, 1)), ("a", "m2", None), ("a", "m3", date(2025, 3, 1))]
    (found,) = stale_price_conditions(rows, date(2025, 3, 15), cfg)
    assert found.key == "stale_prices" and found.details["rows"] == [
        ["a", "m1", "2025-02-01"],
        ["a", "m2", None],
    ]
    assert stale_price_conditions(rows[2:], date(2025, 3, 15), cfg) == []


def test_retries_back_off_then_hold() -> None:
    assert [retry_delay(n).total_seconds() for n in range(1, 9)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
    ]
    assert retry_delay(100) == timedelta(hours=1)
