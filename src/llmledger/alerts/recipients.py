"""Who is told: a recipient is one channel, written as ``KIND:TARGET``.

``email:ops@example.com`` sends mail through the configured SMTP server;
``webhook:https://…`` posts a signed JSON body; ``slack:https://hooks.slack.com/…``
posts a Slack-compatible body (``{"text": …}``), signed the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import urlsplit

from llmledger.core.errors import BudgetError

__all__ = ["RECIPIENT_KINDS", "Recipient", "RecipientKind", "parse_recipients"]

RecipientKind = Literal["email", "webhook", "slack"]
RECIPIENT_KINDS: tuple[str, ...] = get_args(RecipientKind)
# One address, no display name: nothing that could add a header or a second address.
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")


@dataclass(frozen=True, slots=True)
class Recipient:
    """One channel a notification goes to.

    Example:
        >>> Recipient.parse("email:ops@example.com")
        Recipient(kind='email', target='ops@example.com')
        >>> Recipient.parse("slack:https://hooks.slack.com/services/T/B/x").to_text()
        'slack:https://hooks.slack.com/services/T/B/x'
    """

    kind: RecipientKind
    target: str

    @classmethod
    def parse(cls, text: str) -> Recipient:
        """A recipient from ``KIND:TARGET``.

        Raises:
            BudgetError: on an unknown kind, a malformed address or URL.
        """
        kind, sep, target = text.strip().partition(":")
        target = target.strip()
        if not sep or kind not in RECIPIENT_KINDS:
            raise BudgetError(f"recipient {text!r}: write email:ADDRESS, webhook:URL or slack:URL")
        if kind == "email":
            if len(target) > 254 or not _EMAIL.match(target):
                raise BudgetError(f"recipient {text!r}: not an email address")
        else:
            parts = urlsplit(target)
            if parts.scheme not in ("http", "https") or not parts.hostname or len(target) > 2000:
                raise BudgetError(f"recipient {text!r}: the target must be an http(s) URL")
            if any(ch.isspace() or ch == "\x00" for ch in target):
                raise BudgetError(f"recipient {text!r}: the URL holds a space or a NUL")
        return cls(kind, target)  # type: ignore[arg-type]  # checked against RECIPIENT_KINDS

    def to_text(self) -> str:
        """The recipient as written: ``KIND:TARGET``."""
        return f"{self.kind}:{self.target}"


def parse_recipients(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Recipients checked and written the one way, duplicates dropped, order kept.

    Raises:
        BudgetError: on any malformed recipient.

    Example:
        >>> parse_recipients(["email:a@example.com", " email:a@example.com"])
        ('email:a@example.com',)
    """
    out: list[str] = []
    for value in values:
        text = Recipient.parse(value).to_text()
        if text not in out:
            out.append(text)
    if len(out) > 20:
        raise BudgetError("at most 20 recipients")
    return tuple(out)
