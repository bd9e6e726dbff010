"""The alert rule on spending limits (pure): one alert per limit per window it was passed in.

A limit is *passed* in its current window when a guarded call was warned by it
(``warn`` mode) or refused by it (``block`` mode), which the call's event records
in its tag ``llmledger.limits`` (``warn:<ids>``, ``block:<ids>``), or when what is
settled and in flight reaches its amount (which also catches the calls checked
with ``llmledger.check``, which record no event).  The key is the limit and its
window's start, so a limit passed again and again in one window alerts once, and
the next window's crossing is a new one; the alert resolves once its window has
ended.

Example:
    >>> from datetime import UTC, datetime
    >>> from decimal import Decimal
    >>> limit = Limit("tenant", "acme", "requests", Decimal(100), "day", mode="warn", id="L1")
    >>> day = datetime(2025, 3, 5, tzinfo=UTC)
    >>> rows = [{"hour": datetime(2025, 3, 5, 9, tzinfo=UTC), NOTED: "warn:L1", "calls": 3}]
    >>> [c.title for c in limit_conditions([limit], {"L1": (day, 100, 0)}, rows, ())]
    ['Limit L1 passed: 3 call(s) warned (tenant acme, requests 100 per day)']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from llmledger.alerts.state import Condition
from llmledger.core.limits import NOTE_TAG, Limit

__all__ = ["NOTED", "limit_conditions", "noted_limits"]

#: The report column of the tag the guarded calls' events carry.
NOTED = f"tag:{NOTE_TAG}"


def noted_limits(value: object) -> tuple[str, tuple[str, ...]]:
    """The outcome (``warn``, ``block`` or another) and the limit ids of a tag's value.

    Example:
        >>> noted_limits("block:L1,L2"), noted_limits("unavailable:open")
        (('block', ('L1', 'L2')), ('unavailable', ()))
    """
    outcome, _, ids = str(value or "").partition(":")
    if outcome not in ("warn", "block"):
        return outcome, ()
    return outcome, tuple(i for i in ids.split(",") if i)


def limit_conditions(
    limits: Sequence[Limit],
    states: Mapping[str, tuple[datetime, int, int]],
    noted: Iterable[Mapping[str, Any]],
    recipients: tuple[str, ...],
) -> list[Condition]:
    """A condition per limit passed in its current window.

    Args:
        limits: The limits.
        states: Per limit id: its window's start, the units settled and in flight
            (``Store.limit_states``).
        noted: Rows of a report of the calls per hour and value of the tag
            ``llmledger.limits`` (columns ``hour``, :data:`NOTED`, ``calls``), from
            the earliest window start on.
        recipients: Who is told (the ``alert_recipients``).
    """
    counted: dict[tuple[str, str], list[tuple[datetime, int]]] = {}
    for row in noted:
        outcome, ids = noted_limits(row.get(NOTED))
        for limit_id in ids:
            counted.setdefault((limit_id, outcome), []).append(
                (row["hour"], int(row.get("calls") or 0))
            )
    out = []
    for limit in limits:
        if limit.id not in states:
            continue
        window, used, reserved = states[limit.id]

        def calls(outcome: str, limit_id: str = limit.id, since: datetime = window) -> int:
            return sum(n for hour, n in counted.get((limit_id, outcome), ()) if hour >= since)

        warned, refused = calls("warn"), calls("block")
        reached = used + reserved >= limit.units
        if not (warned or refused or reached):
            continue
        what = (
            f"{refused} call(s) refused"
            if refused
            else f"{warned} call(s) warned"
            if warned
            else "amount reached"
        )
        label = limit.name or limit.id
        unit = " USD" if limit.metric == "cost" else ""
        rule_text = (
            f"{limit.scope} {limit.value}, {limit.metric} {limit.amount}{unit} per {limit.period}"
        )
        out.append(
            Condition(
                "limit",
                f"limit:{limit.id}:{window.isoformat()}",
                limit.tenant,
                f"Limit {label} passed: {what} ({rule_text})",
                f"Limit {label} ({rule_text}, {limit.mode}) in the window from "
                f"{window.isoformat()}: {warned} call(s) let through past it, {refused} "
                f"refused; {used} units settled and {reserved} in flight of {limit.units}.",
                {
                    "limit": limit.id,
                    "name": limit.name,
                    "scope": limit.scope,
                    "value": limit.value,
                    "metric": limit.metric,
                    "amount": format(limit.amount, "f"),
                    "period": limit.period,
                    "mode": limit.mode,
                    "window": window.isoformat(),
                    "warned": warned,
                    "refused": refused,
                    "used_units": used,
                    "reserved_units": reserved,
                    "units": limit.units,
                },
                recipients,
            )
        )
    return out
