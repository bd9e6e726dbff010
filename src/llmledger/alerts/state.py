"""Alerts as a state machine: a condition fires once per crossing and resolves when it clears.

A check observes the conditions that hold now (:class:`Condition`, each with a
``key`` naming one crossing: a budget's threshold in one window, the error rate
of one provider…).  :func:`transition` compares them with the alerts still open:

* a condition without an open alert of its key fires a new alert, unless an
  alert of that key was resolved less than ``cooldown`` ago (a condition that
  flaps around its threshold alerts once per cooldown, not once per check);
* an open alert whose rule was checked and whose condition no longer holds
  resolves;
* an open alert whose condition still holds stays as it is (no repeat).

Everything here is pure; the store keeps the alerts and the outbox of messages.

Example:
    >>> from datetime import UTC, datetime, timedelta
    >>> now = datetime(2025, 3, 15, tzinfo=UTC)
    >>> c = Condition("error_rate", "error_rate:openai", None, "Error rate 9%", "…")
    >>> first = transition([], {}, [c], {"error_rate"}, now, timedelta(hours=1))
    >>> [x.key for x in first.fire], first.resolve
    (['error_rate:openai'], ())
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

__all__ = [
    "RULES",
    "Alert",
    "Condition",
    "Rule",
    "Transition",
    "transition",
]

Rule = Literal[
    "budget",
    "error_rate",
    "cost_spike",
    "token_spike",
    "auth_failure",
    "latency",
    "price_gap",
    "stale_prices",
    "limit",
]
RULES: tuple[str, ...] = get_args(Rule)


@dataclass(frozen=True, slots=True)
class Condition:
    """A condition that holds now.

    Attributes:
        rule: The rule that found it.
        key: The crossing it is (equal keys are the same crossing).
        tenant: The tenant it concerns (None: the whole ledger).
        title: One line for people (a mail's subject).
        message: What happened and the figures behind it.
        details: Figures for programs (JSON-ready).
        recipients: Who is told (``KIND:TARGET``).
    """

    rule: Rule
    key: str
    tenant: str | None
    title: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert in the history: fired once, resolved when its condition cleared.

    Attributes:
        id: A ULID.
        rule: The rule that fired it.
        key: Its crossing.
        tenant: The tenant it concerns (None: the whole ledger).
        title: One line for people.
        message: What happened.
        details: Figures for programs.
        recipients: Who was told.
        fired: When it fired.
        resolved: When its condition cleared, or None while it holds.
        acked: When someone acknowledged it, or None.
        acked_by: Who acknowledged it (a key's prefix or a name).
    """

    id: str
    rule: str
    key: str
    tenant: str | None
    title: str
    message: str
    details: Mapping[str, Any]
    recipients: tuple[str, ...]
    fired: datetime
    resolved: datetime | None = None
    acked: datetime | None = None
    acked_by: str | None = None

    @property
    def state(self) -> str:
        """``firing`` or ``resolved``."""
        return "firing" if self.resolved is None else "resolved"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "id": self.id,
            "rule": self.rule,
            "key": self.key,
            "state": self.state,
            "tenant": self.tenant,
            "title": self.title,
            "message": self.message,
            "details": dict(self.details),
            "recipients": list(self.recipients),
            "fired": self.fired.isoformat(),
            "resolved": None if self.resolved is None else self.resolved.isoformat(),
            "acked": None if self.acked is None else self.acked.isoformat(),
            "acked_by": self.acked_by,
        }


@dataclass(frozen=True, slots=True)
class Transition:
    """What a check changes: the conditions that fire, the open alerts that resolve."""

    fire: tuple[Condition, ...] = ()
    resolve: tuple[Alert, ...] = ()


def transition(
    open_alerts: Sequence[Alert],
    last_resolved: Mapping[str, datetime],
    holding: Sequence[Condition],
    checked: Collection[str],
    now: datetime,
    cooldown: timedelta,
) -> Transition:
    """The alerts to fire and to resolve after a check.

    Args:
        open_alerts: The alerts not resolved yet.
        last_resolved: Key -> when its latest alert resolved.
        holding: The conditions that hold now.
        checked: The rules this check evaluated fully; open alerts of other
            rules are left alone (a rule that could not be evaluated resolves
            nothing).
        now: The check's time.
        cooldown: How long a resolved key stays quiet.

    Example:
        >>> from datetime import UTC
        >>> now = datetime(2025, 3, 15, tzinfo=UTC)
        >>> open_ = [Alert("01A", "latency", "latency:openai", None, "t", "m", {}, (), now)]
        >>> t = transition(open_, {}, [], {"latency"}, now, timedelta(hours=1))
        >>> [a.id for a in t.resolve], t.fire
        (['01A'], ())
    """
    open_keys = {alert.key for alert in open_alerts}
    holding_keys = {condition.key for condition in holding}
    fire: list[Condition] = []
    seen: set[str] = set()
    for condition in holding:
        if condition.key in open_keys or condition.key in seen:
            continue
        seen.add(condition.key)
        resolved_at = last_resolved.get(condition.key)
        if resolved_at is not None and now - resolved_at < cooldown:
            continue
        fire.append(condition)
    resolve = tuple(
        alert for alert in open_alerts if alert.rule in checked and alert.key not in holding_keys
    )
    return Transition(tuple(fire), resolve)
