"""Delivering notifications: mail over SMTP and signed webhooks (the only I/O of alerting).

:func:`send` delivers one :class:`~llmledger.alerts.Message` to its recipient
and raises :class:`~llmledger.core.errors.NotificationError` when it could not;
the outbox (:mod:`llmledger.monitor`) retries with backoff.

Example:
    >>> from llmledger.core.settings import load_settings
    >>> from llmledger.alerts import test_messages
    >>> from datetime import UTC, datetime
    >>> message = test_messages(("email:ops@example.com",), datetime.now(UTC), "docs")[0]
    >>> try:
    ...     send(message, load_settings())
    ... except NotificationError as exc:
    ...     print(exc)
    email:ops@example.com: no mail server is set (smtp_host)
"""

from __future__ import annotations

from llmledger.core.errors import NotificationError
from llmledger.notify.email import send_email
from llmledger.notify.send import send
from llmledger.notify.webhook import SIGNATURE_HEADER, post_webhook, signature

__all__ = [
    "SIGNATURE_HEADER",
    "NotificationError",
    "post_webhook",
    "send",
    "send_email",
    "signature",
]
