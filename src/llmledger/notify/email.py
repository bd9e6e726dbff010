"""Mail over SMTP with the standard library (``smtplib``): STARTTLS, implicit TLS or plain."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from llmledger.alerts import Message, Recipient
from llmledger.core.errors import NotificationError
from llmledger.core.settings import Settings

__all__ = ["send_email"]


def build_email(message: Message, to: str, settings: Settings) -> EmailMessage:
    """The mail of a message: its delivery id is the ``Message-ID`` and a header of its own.

    Example:
        >>> from datetime import UTC, datetime
        >>> from llmledger.alerts import test_messages
        >>> from llmledger.core.settings import load_settings
        >>> m = test_messages(("email:a@example.com",), datetime.now(UTC), "docs")[0]
        >>> mail = build_email(m, "a@example.com", load_settings())
        >>> mail["X-Llmledger-Delivery"] == m.id, mail["To"]
        (True, 'a@example.com')
    """
    mail = EmailMessage()
    mail["From"] = settings.smtp_sender
    mail["To"] = to
    mail["Subject"] = message.subject
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    domain = settings.smtp_sender.rpartition("@")[2] or "llmledger"
    mail["Message-ID"] = make_msgid(idstring=message.id, domain=domain)
    mail["X-Llmledger-Delivery"] = message.id
    mail.set_content(message.text + f"\n\nDelivery: {message.id}\n")
    return mail


def send_email(message: Message, settings: Settings) -> None:
    """Send a message to its ``email:`` recipient through ``settings``' SMTP server.

    Raises:
        NotificationError: when no server is set, or it cannot be reached or refuses.
    """
    recipient = Recipient.parse(message.recipient)
    if settings.smtp_host is None:
        raise NotificationError(f"{message.recipient}: no mail server is set (smtp_host)")
    mail = build_email(message, recipient.target, settings)
    timeout = settings.notify_timeout
    try:
        client: smtplib.SMTP
        if settings.smtp_security == "tls":
            client = smtplib.SMTP_SSL(
                settings.smtp_host,
                settings.smtp_port,
                timeout=timeout,
                context=_tls_context(settings),
            )
        else:
            client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
        with client:
            if settings.smtp_security == "starttls":
                client.starttls(context=_tls_context(settings))
            if settings.smtp_user:
                client.login(settings.smtp_user, settings.smtp_password or "")
            client.send_message(mail)
    except (OSError, smtplib.SMTPException) as exc:  # ssl.SSLError is an OSError
        raise NotificationError(
            f"{message.recipient}: mail via {settings.smtp_host}:{settings.smtp_port} failed: {exc}"
        ) from None


def _tls_context(settings: Settings) -> ssl.SSLContext:
    """Verifies the server's certificate and name: against ``smtp_ca_file`` when set
    (a private authority), else the system's certificate authorities."""
    if settings.smtp_ca_file:
        return ssl.create_default_context(cafile=str(Path(settings.smtp_ca_file).expanduser()))
    return ssl.create_default_context()
