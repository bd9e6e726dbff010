"""Limits and their decisions as JSON: what the service answers and the SDK reads back.

Example:
    >>> from datetime import UTC, datetime
    >>> from decimal import Decimal
    >>> limit = Limit("tenant", "acme", "cost", Decimal("2.5"), "day", id="L1",
    ...               created=datetime(2025, 1, 1, tzinfo=UTC)).validate()
    >>> limit_from_json(limit_json(limit)) == limit
    True
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from llmledger.core.limits import Decision, Limit

__all__ = ["decision_from_json", "decision_json", "limit_from_json", "limit_json"]


def limit_json(limit: Limit) -> dict[str, Any]:
    """A limit as JSON (its amount as decimal text)."""
    return {
        "id": limit.id,
        "scope": limit.scope,
        "value": limit.value,
        "metric": limit.metric,
        "amount": format(limit.amount, "f"),
        "period": limit.period,
        "mode": limit.mode,
        "tenant": limit.tenant,
        "name": limit.name,
        "created": None if limit.created is None else limit.created.isoformat(),
    }


def limit_from_json(data: dict[str, Any]) -> Limit:
    """A limit read back from :func:`limit_json`.

    Raises:
        InvalidLimitError: when a field is wrong.
    """
    created = data.get("created")
    return Limit(
        scope=data["scope"],
        value=data["value"],
        metric=data["metric"],
        amount=Decimal(str(data["amount"])),
        period=data["period"],
        mode=data["mode"],
        tenant=data.get("tenant"),
        name=data.get("name"),
        id=data["id"],
        created=None if created is None else datetime.fromisoformat(created),
    ).validate()


def decision_json(decision: Decision, *, counters: bool = True) -> dict[str, Any]:
    """A decision as JSON; without ``counters`` its used and reserved units are left out
    (a tenant's key sees no counter of a limit over every tenant)."""
    return {
        "limit": limit_json(decision.limit),
        "window": decision.window.isoformat(),
        "used": decision.used if counters else None,
        "reserved": decision.reserved if counters else None,
        "needed": decision.needed,
        "outcome": decision.outcome,
    }


def decision_from_json(data: dict[str, Any]) -> Decision:
    """A decision read back from :func:`decision_json` (hidden counters read as 0)."""
    return Decision(
        limit=limit_from_json(data["limit"]),
        window=datetime.fromisoformat(data["window"]),
        used=int(data.get("used") or 0),
        reserved=int(data.get("reserved") or 0),
        needed=int(data["needed"]),
        outcome=data["outcome"],
    )
