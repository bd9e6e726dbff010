"""The debug switch: ``LLMLEDGER_DEBUG=1`` or ``configure(debug=True)``.

At DEBUG, on the ``llmledger.debug`` logger, each captured call says what was
captured, how its usage was read (which reader, from what, the provider's usage
fields and the buckets they became) and how it was priced (the cost, its source,
the price row, the price status).  Never prompt or response text, and never a
provider's error message (which can quote the prompt): only the error's type.
"""

from __future__ import annotations

import json
import logging
import sys

from llmledger.core.events import UsageEvent
from llmledger.core.usage import BUCKETS

__all__ = ["enable", "log", "log_captured", "log_priced"]

log = logging.getLogger("llmledger.debug")
_RAW_LIMIT = 600


def enable() -> None:
    """Log llmledger's DEBUG records; to stderr unless the application configured logging."""
    logging.getLogger("llmledger").setLevel(logging.DEBUG)
    if not logging.getLogger().handlers and not logging.getLogger("llmledger").handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        logging.getLogger("llmledger").addHandler(handler)


def _buckets(event: UsageEvent) -> str:
    counts = [f"{name}={getattr(event.usage, name)}" for name in BUCKETS]
    shown = [text for text in counts if not text.endswith("=0")]
    return ", ".join(shown) or "no tokens"


def log_captured(event: UsageEvent, *, reader: str | None, source: str) -> None:
    """Log a captured call's event as read (see the module)."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    raw = "none"
    if event.usage_raw is not None:
        raw = json.dumps(event.usage_raw, default=str, sort_keys=True)
        raw = raw if len(raw) <= _RAW_LIMIT else raw[:_RAW_LIMIT] + "…"
    error = f", {event.error_type}" if event.error_type else ""
    log.debug(
        "captured %s %s %s%s (%s%s, %s ms, event %s): usage %s by the %s reader from %s: "
        "%s -> %s%s",
        event.provider,
        event.operation,
        event.model,
        " (stream)" if event.stream else "",
        event.status,
        error,
        event.duration_ms,
        event.id,
        event.usage_source,
        reader or event.provider,
        source,
        raw,
        _buckets(event),
        f"; cost reported by the provider: {event.cost}" if event.cost is not None else "",
    )


def log_priced(event: UsageEvent) -> None:
    """Log how an event was priced (see the module)."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    if event.cost is None:
        log.debug(
            "unpriced event %s %s/%s: %s", event.id, event.provider, event.model,
            event.unpriced_reason,
        )  # fmt: skip
        return
    log.debug(
        "priced event %s %s/%s at %s: $%s from %s (%s), %s%s",
        event.id,
        event.provider,
        event.model,
        event.ts.isoformat(),
        event.cost,
        event.cost_source,
        event.price_ref,
        event.price_status,
        f": {event.incomplete_reason}" if event.incomplete_reason else "",
    )
