"""Budgets and alert rules, pure: no I/O, no clock (time is an argument).

* :mod:`~llmledger.alerts.budgets`: a budget, its window and its status;
* :mod:`~llmledger.alerts.evaluate`: many budgets answered by few report queries;
* :mod:`~llmledger.alerts.rules`: the alert rules and their baselines;
* :mod:`~llmledger.alerts.limits`: the rule on spending limits passed;
* :mod:`~llmledger.alerts.state`: fire once per crossing, resolve when clear;
* :mod:`~llmledger.alerts.messages`: notifications as data, retries' backoff;
* :mod:`~llmledger.alerts.recipients`: ``email:…``, ``webhook:…``, ``slack:…``.

The store keeps budgets, alerts and the outbox; :mod:`llmledger.monitor` runs
the checks and :mod:`llmledger.notify` delivers.

Example:
    >>> from datetime import UTC, datetime
    >>> from decimal import Decimal
    >>> b = Budget(name="team", amount=Decimal(100), period="month", where=("feature=chat",))
    >>> budget_window(b, datetime(2025, 2, 10, tzinfo=UTC))[1].isoformat()
    '2025-03-01T00:00:00+00:00'
"""

from __future__ import annotations

from llmledger.alerts.budgets import (
    PERIODS,
    Budget,
    BudgetStatus,
    Period,
    budget_status,
    budget_window,
    crossing_key,
    matches,
)
from llmledger.alerts.evaluate import BudgetPlan, budget_conditions, plan_budgets, statuses
from llmledger.alerts.limits import limit_conditions
from llmledger.alerts.messages import (
    Message,
    alert_messages,
    digest_messages,
    retry_delay,
    slack_body,
    test_messages,
)
from llmledger.alerts.recipients import Recipient, parse_recipients
from llmledger.alerts.rules import AlertSettings, windows
from llmledger.alerts.state import RULES, Alert, Condition, Rule, Transition, transition

__all__ = [
    "PERIODS",
    "RULES",
    "Alert",
    "AlertSettings",
    "Budget",
    "BudgetPlan",
    "BudgetStatus",
    "Condition",
    "Message",
    "Period",
    "Recipient",
    "Rule",
    "Transition",
    "alert_messages",
    "budget_conditions",
    "budget_status",
    "budget_window",
    "crossing_key",
    "digest_messages",
    "limit_conditions",
    "matches",
    "parse_recipients",
    "plan_budgets",
    "retry_delay",
    "slack_body",
    "statuses",
    "test_messages",
    "transition",
    "windows",
]
