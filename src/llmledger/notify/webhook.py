"""Webhooks: a JSON body (or a Slack-compatible one) signed with HMAC-SHA256.

The signature header is ``X-Llmledger-Signature: sha256=<hex>``, the HMAC of the
exact body bytes with the ``webhook_secret`` setting as key; the delivery id is
``X-Llmledger-Delivery`` (and ``delivery_id`` in the body).  A receiver checks::

    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    hmac.compare_digest(expected, request.headers["X-Llmledger-Signature"])
"""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from llmledger.alerts import Message, Recipient, slack_body
from llmledger.core.errors import NotificationError
from llmledger.core.settings import Settings

__all__ = ["DELIVERY_HEADER", "SIGNATURE_HEADER", "post_webhook", "signature"]

SIGNATURE_HEADER = "X-Llmledger-Signature"
DELIVERY_HEADER = "X-Llmledger-Delivery"


def signature(secret: str, body: bytes) -> str:
    """The signature header's value of ``body``.

    Example:
        >>> signature("s3cret", b'{"a":1}')[:15]
        'sha256=5910e620'
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_webhook(
    message: Message, settings: Settings, *, transport: httpx.BaseTransport | None = None
) -> None:
    """Post a message to its ``webhook:`` or ``slack:`` recipient.

    Raises:
        NotificationError: on a connection error or an answer that is not 2xx.
    """
    recipient = Recipient.parse(message.recipient)
    data = slack_body(message) if recipient.kind == "slack" else dict(message.payload)
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "llmledger",
        DELIVERY_HEADER: message.id,
    }
    if settings.webhook_secret:
        headers[SIGNATURE_HEADER] = signature(settings.webhook_secret, body)
    try:
        with httpx.Client(timeout=settings.notify_timeout, transport=transport) as client:
            answer = client.post(recipient.target, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise NotificationError(f"{message.recipient}: {type(exc).__name__}: {exc}") from None
    if not answer.is_success:
        raise NotificationError(
            f"{message.recipient}: answered {answer.status_code} {answer.text[:200]!r}"
        )
