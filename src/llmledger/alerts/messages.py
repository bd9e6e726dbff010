"""Notifications as data: what is sent to whom, rendered once when it is queued (pure).

Every message has a delivery id (a ULID) that the receiver can dedupe on: it is
the webhook's ``X-Llmledger-Delivery`` header and ``delivery_id`` field, and the
mail's ``Message-ID`` and ``X-Llmledger-Delivery`` header.  A message is queued in
the outbox with a ``dedupe`` key (an alert and a recipient, a week's price check
and a recipient), so queueing it twice stores it once.

Example:
    >>> from datetime import UTC, datetime
    >>> now = datetime(2025, 3, 15, tzinfo=UTC)
    >>> [m.recipient for m in test_messages(("email:a@example.com",), now, "budget b")]
    ['email:a@example.com']
    >>> retry_delay(1), retry_delay(20)
    (datetime.timedelta(seconds=30), datetime.timedelta(seconds=3600))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from llmledger.alerts.state import Alert
from llmledger.core.ids import new_id

__all__ = [
    "MAX_ATTEMPTS",
    "Message",
    "alert_messages",
    "digest_messages",
    "retry_delay",
    "slack_body",
    "test_messages",
]

#: Attempts after which a message is given up (about a day of retries).
MAX_ATTEMPTS = 30
_FIRST_RETRY = timedelta(seconds=30)
_LAST_RETRY = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Message:
    """One notification to one recipient.

    Attributes:
        id: The delivery id receivers dedupe on.
        dedupe: Queueing key: a second message with the same key is not stored.
        recipient: ``KIND:TARGET``.
        subject: One line (the mail's subject).
        text: The body for people.
        payload: The JSON body of a webhook (``delivery_id`` included).
        created: When it was queued.
        alert_id: The alert it tells of, if any.
        attempts: Delivery attempts so far.
        next_attempt: When to try next.
        delivered: When it was delivered, or None.
        failed: When it was given up, or None.
        last_error: Why the last attempt failed.
    """

    id: str
    dedupe: str
    recipient: str
    subject: str
    text: str
    payload: Mapping[str, Any]
    created: datetime
    alert_id: str | None = None
    attempts: int = 0
    next_attempt: datetime | None = None
    delivered: datetime | None = None
    failed: datetime | None = None
    last_error: str | None = None

    @property
    def state(self) -> str:
        """``pending``, ``delivered`` or ``failed``."""
        if self.delivered is not None:
            return "delivered"
        return "failed" if self.failed is not None else "pending"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (without the payload)."""
        return {
            "id": self.id,
            "recipient": self.recipient,
            "subject": self.subject,
            "alert_id": self.alert_id,
            "state": self.state,
            "attempts": self.attempts,
            "created": self.created.isoformat(),
            "delivered": None if self.delivered is None else self.delivered.isoformat(),
            "last_error": self.last_error,
        }


@dataclass(frozen=True, slots=True)
class _Draft:
    kind: str
    subject: str
    text: str
    body: Mapping[str, Any] = field(default_factory=dict)


def _messages(
    draft: _Draft,
    recipients: Sequence[str],
    now: datetime,
    dedupe: str | None,
    alert_id: str | None = None,
) -> list[Message]:
    out = []
    for recipient in recipients:
        delivery = new_id()
        payload = {
            "delivery_id": delivery,
            "kind": draft.kind,
            "subject": draft.subject,
            "text": draft.text,
            "sent_at": now.isoformat(),
            **draft.body,
        }
        out.append(
            Message(
                id=delivery,
                dedupe=f"{dedupe or delivery}|{recipient}",
                recipient=recipient,
                subject=f"[llmledger] {draft.subject}",
                text=draft.text,
                payload=payload,
                created=now,
                alert_id=alert_id,
                next_attempt=now,
            )
        )
    return out


def alert_messages(alert: Alert, now: datetime) -> list[Message]:
    """One message per recipient of a fired alert.

    Example:
        >>> from datetime import UTC
        >>> now = datetime(2025, 3, 15, tzinfo=UTC)
        >>> a = Alert("01A", "budget", "budget:x:50", "acme", "Budget at 50%", "…", {},
        ...           ("webhook:https://example.com/hook",), now)
        >>> [m.payload["alert"]["id"] for m in alert_messages(a, now)]
        ['01A']
    """
    text = alert.message
    if alert.tenant is not None:
        text += f"\nTenant: {alert.tenant}"
    text += f"\nFired: {alert.fired.isoformat()}\nAlert: {alert.id} ({alert.rule})"
    draft = _Draft("alert", alert.title, text, {"alert": alert.to_dict()})
    return _messages(draft, alert.recipients, now, f"alert:{alert.id}", alert.id)


def test_messages(recipients: Sequence[str], now: datetime, origin: str) -> list[Message]:
    """A test notification per recipient, saying where it comes from."""
    draft = _Draft(
        "test",
        f"Test notification ({origin})",
        f"This is a test notification from llmledger for {origin}. "
        "If you can read it, this channel works.",
        {"origin": origin},
    )
    return _messages(draft, recipients, now, None)


def digest_messages(
    subject: str,
    sections: Sequence[tuple[str, Sequence[str]]],
    recipients: Sequence[str],
    now: datetime,
    dedupe: str,
) -> list[Message]:
    """One digest per recipient: titled sections of lines (empty sections say "none")."""
    parts = []
    for title, lines in sections:
        body = "\n".join(f"- {line}" for line in lines) if lines else "- none"
        parts.append(f"{title}\n{body}")
    draft = _Draft(
        "digest",
        subject,
        "\n\n".join(parts),
        {"sections": [{"title": t, "lines": list(lines)} for t, lines in sections]},
    )
    return _messages(draft, recipients, now, dedupe)


def slack_body(message: Message) -> dict[str, Any]:
    """A Slack-compatible body (incoming webhooks read ``text``), keeping the delivery id.

    Example:
        >>> from datetime import UTC
        >>> m = test_messages(("slack:https://example.com/x",),
        ...                   datetime(2025, 3, 15, tzinfo=UTC), "b")[0]
        >>> slack_body(m)["text"].startswith("*[llmledger] Test notification (b)*")
        True
    """
    return {"text": f"*{message.subject}*\n{message.text}", "delivery_id": message.id}


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failure: 30 s doubling, at most 1 h."""
    if attempts >= 8:
        return _LAST_RETRY
    delay: timedelta = _FIRST_RETRY * (1 << max(attempts - 1, 0))
    return min(delay, _LAST_RETRY)
