"""The tables of budgets and alerts (migration 0010), and their rows as records.

* ``budgets``: money budgets (:class:`~llmledger.alerts.Budget`); the scope,
  thresholds and recipients as JSON text, the amount as decimal text.
* ``alerts``: the alert history.  ``open_key`` is the alert's key while it is
  open and NULL once resolved; being unique, it lets one open alert per key
  exist, whichever instance fires it.
* ``outbox``: notifications waiting or delivered (at-least-once delivery);
  ``dedupe`` is unique, so queueing a message twice stores it once.
* ``jobs``: the scheduler's lease (row ``leader``) and each job's last run.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from llmledger.alerts import Alert, Budget, Message
from llmledger.store.codec import from_micros, to_micros
from llmledger.store.schema import metadata

__all__ = [
    "alert_from_row",
    "alert_values",
    "alerts",
    "budget_from_row",
    "budget_values",
    "budgets",
    "jobs",
    "message_from_row",
    "message_values",
    "outbox",
]

budgets = sa.Table(
    "budgets",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("tenant", sa.Text),
    sa.Column("amount", sa.Text, nullable=False),
    sa.Column("currency", sa.Text, nullable=False),
    sa.Column("period", sa.Text, nullable=False),
    sa.Column("rolling_days", sa.Integer),
    sa.Column("tz", sa.Text, nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("thresholds", sa.Text, nullable=False),
    sa.Column("recipients", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
)
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("rule", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False, index=True),
    sa.Column("open_key", sa.Text, unique=True),
    sa.Column("tenant", sa.Text),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("recipients", sa.Text, nullable=False),
    sa.Column("fired_us", sa.BigInteger, nullable=False, index=True),
    sa.Column("resolved_us", sa.BigInteger),
    sa.Column("acked_us", sa.BigInteger),
    sa.Column("acked_by", sa.Text),
)
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("dedupe", sa.Text, nullable=False, unique=True),
    sa.Column("alert_id", sa.Text, index=True),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("next_us", sa.BigInteger, index=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("delivered_us", sa.BigInteger),
    sa.Column("failed_us", sa.BigInteger),
    sa.Column("last_error", sa.Text),
)
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text),
    sa.Column("lease_until_us", sa.BigInteger),
    sa.Column("last_run_us", sa.BigInteger),
)


def _micros(moment: datetime | None) -> int | None:
    return None if moment is None else to_micros(moment)


def _moment(micros: Any) -> datetime | None:
    return None if micros is None else from_micros(int(micros))


def budget_values(budget: Budget, now: datetime) -> dict[str, Any]:
    """A budget as the values of its row."""
    return {
        "id": budget.id,
        "name": budget.name,
        "tenant": budget.tenant,
        "amount": format(budget.amount, "f"),
        "currency": budget.currency,
        "period": budget.period,
        "rolling_days": budget.rolling_days,
        "tz": budget.tz,
        "scope": json.dumps(list(budget.where)),
        "thresholds": json.dumps(list(budget.thresholds)),
        "recipients": json.dumps(list(budget.recipients)),
        "active": budget.active,
        "created_us": to_micros(budget.created or now),
        "updated_us": to_micros(now),
    }


def budget_from_row(m: Any) -> Budget:
    """The budget of a row."""
    return Budget(
        id=str(m["id"]),
        name=str(m["name"]),
        tenant=m["tenant"],
        amount=Decimal(m["amount"]),
        currency=str(m["currency"]),
        period=m["period"],
        rolling_days=m["rolling_days"],
        tz=str(m["tz"]),
        where=tuple(json.loads(m["scope"])),
        thresholds=tuple(json.loads(m["thresholds"])),
        recipients=tuple(json.loads(m["recipients"])),
        active=bool(m["active"]),
        created=from_micros(int(m["created_us"])),
    )


def alert_values(alert: Alert) -> dict[str, Any]:
    """An alert as the values of its row."""
    return {
        "id": alert.id,
        "rule": alert.rule,
        "key": alert.key,
        "open_key": alert.key if alert.resolved is None else None,
        "tenant": alert.tenant,
        "title": alert.title,
        "message": alert.message,
        "details": json.dumps(dict(alert.details), default=str),
        "recipients": json.dumps(list(alert.recipients)),
        "fired_us": to_micros(alert.fired),
        "resolved_us": _micros(alert.resolved),
        "acked_us": _micros(alert.acked),
        "acked_by": alert.acked_by,
    }


def alert_from_row(m: Any) -> Alert:
    """The alert of a row."""
    return Alert(
        id=str(m["id"]),
        rule=str(m["rule"]),
        key=str(m["key"]),
        tenant=m["tenant"],
        title=str(m["title"]),
        message=str(m["message"]),
        details=json.loads(m["details"]),
        recipients=tuple(json.loads(m["recipients"])),
        fired=from_micros(int(m["fired_us"])),
        resolved=_moment(m["resolved_us"]),
        acked=_moment(m["acked_us"]),
        acked_by=m["acked_by"],
    )


def message_values(message: Message) -> dict[str, Any]:
    """A message as the values of its outbox row."""
    return {
        "id": message.id,
        "dedupe": message.dedupe,
        "alert_id": message.alert_id,
        "recipient": message.recipient,
        "subject": message.subject,
        "body": message.text,
        "payload": json.dumps(dict(message.payload), default=str),
        "created_us": to_micros(message.created),
        "next_us": _micros(message.next_attempt),
        "attempts": message.attempts,
        "delivered_us": _micros(message.delivered),
        "failed_us": _micros(message.failed),
        "last_error": message.last_error,
    }


def message_from_row(m: Any) -> Message:
    """The message of an outbox row."""
    return Message(
        id=str(m["id"]),
        dedupe=str(m["dedupe"]),
        recipient=str(m["recipient"]),
        subject=str(m["subject"]),
        text=str(m["body"]),
        payload=json.loads(m["payload"]),
        created=from_micros(int(m["created_us"])),
        alert_id=m["alert_id"],
        attempts=int(m["attempts"]),
        next_attempt=_moment(m["next_us"]),
        delivered=_moment(m["delivered_us"]),
        failed=_moment(m["failed_us"]),
        last_error=m["last_error"],
    )
