"""One delivery attempt of one message, by its recipient's kind."""

from __future__ import annotations

from llmledger.alerts import Message, Recipient
from llmledger.core.settings import Settings
from llmledger.notify.email import send_email
from llmledger.notify.webhook import post_webhook

__all__ = ["send"]


def send(message: Message, settings: Settings) -> None:
    """Deliver ``message`` once.

    Raises:
        NotificationError: when it was not delivered.
    """
    if Recipient.parse(message.recipient).kind == "email":
        send_email(message, settings)
    else:
        post_webhook(message, settings)
