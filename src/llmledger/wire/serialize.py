"""The JSON shape of an event: what ``llmledger logs --json`` prints and the service ingests."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal
from typing import Any

from llmledger.core.events import UsageEvent

__all__ = ["decimal_text", "event_to_json"]


def decimal_text(value: Decimal | None) -> str | None:
    """A Decimal as plain text (never exponent notation), or None.

    Example:
        >>> decimal_text(Decimal("1E-7"))
        '0.0000001'
    """
    if value is None:
        return None
    text = format(value, "f")
    return text


def event_to_json(event: UsageEvent) -> dict[str, Any]:
    """The event as JSON-ready data: buckets under ``usage``, money as decimal strings,
    times as ISO 8601 UTC.

    Example:
        >>> from datetime import datetime, timezone
        >>> from llmledger.core.usage import Usage
        >>> e = UsageEvent(provider="openai", model="gpt-4o", id="01J00000000000000000000000",
        ...                ts=datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        ...                usage=Usage(input_tokens=3, output_tokens=4), cost=Decimal("0.5"))
        >>> d = event_to_json(e)
        >>> d["ts"], d["usage"]["total_tokens"], d["cost"]
        ('2025-01-02T03:04:05Z', 7, '0.5')
    """
    usage = event.usage.as_dict()
    usage["total_tokens"] = event.usage.total_tokens
    ts = event.ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {
        "id": event.id,
        "ts": ts,
        "duration_ms": event.duration_ms,
        "ttft_ms": event.ttft_ms,
        "provider": event.provider,
        "model": event.model,
        "response_model": event.response_model,
        "operation": event.operation,
        "stream": event.stream,
        "service_tier": event.service_tier,
        "request_id": event.request_id,
        "finish_reason": event.finish_reason,
        "status": event.status,
        "error_type": event.error_type,
        "error_message": event.error_message,
        "usage": usage,
        "usage_parts": [
            {"model": part.model, "usage": part.usage.as_dict()} for part in event.usage_parts
        ],
        "fee_counts": dict(event.fee_counts),
        "usage_raw": event.usage_raw,
        "usage_source": event.usage_source,
        "cost": decimal_text(event.cost),
        "currency": "USD",
        "cost_breakdown": (
            {k: decimal_text(v) for k, v in event.cost_breakdown.items()}
            if event.cost_breakdown
            else None
        ),
        "cost_source": event.cost_source,
        "price_ref": event.price_ref,
        "unpriced_reason": event.unpriced_reason,
        "price_status": event.price_status,
        "incomplete_reason": event.incomplete_reason,
        "tenant": event.tenant,
        "user": event.user,
        "feature": event.feature,
        "session": event.session,
        "tags": dict(event.tags),
        "api_key_fingerprint": event.api_key_fingerprint,
        "warnings": list(event.warnings),
    }
