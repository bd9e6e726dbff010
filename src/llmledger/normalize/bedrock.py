"""Amazon Bedrock: the Converse API, ConverseStream, and Anthropic bodies via ``invoke_model``.

Converse's ``inputTokens`` does NOT include cache reads or writes:
input = ``inputTokens`` + ``cacheReadInputTokens`` + ``cacheWriteInputTokens``.
(Some responses repeat the cache counts as ``cacheReadInputTokenCount`` /
``cacheWriteInputTokenCount``; they are the same numbers and are read only when
the ``...Tokens`` names are absent, never added.)

Streams come as the binary AWS event stream (see :mod:`.eventstream`) or as the
dicts boto3 yields, one key per event (``{"metadata": {...}}``). Usage is in the
final ``metadata`` event. ``invoke_model_with_response_stream`` wraps
Anthropic's own events in ``chunk.bytes``; those are unwrapped and read with the
Anthropic rules.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from llmledger.core.errors import ResponseParseError
from llmledger.core.usage import Usage
from llmledger.normalize._common import count, count_first, finish, obj, text
from llmledger.normalize._tiers import read_tier
from llmledger.normalize.anthropic import MessageStream
from llmledger.normalize.base import Reading
from llmledger.normalize.eventstream import iter_messages

__all__ = ["ConverseStream", "converse_usage", "event_stream_events", "read_converse"]


def converse_usage(usage: Mapping[str, Any]) -> Usage:
    """Canonical buckets of a Converse ``usage`` object.

    Example:
        >>> converse_usage({"inputTokens": 13, "outputTokens": 5,
        ...                 "cacheReadInputTokens": 1504}).input_tokens
        1517
    """
    cache_read = count_first(usage, "cacheReadInputTokens", "cacheReadInputTokenCount")
    cache_write = count_first(usage, "cacheWriteInputTokens", "cacheWriteInputTokenCount")
    return Usage(
        input_tokens=count(usage, "inputTokens") + cache_read + cache_write,
        output_tokens=count(usage, "outputTokens"),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def read_converse(body: Mapping[str, Any], provider: str, *, stream: bool = False) -> Reading:
    """Read a Converse body (or the merged facts of a ConverseStream).

    Example:
        >>> read_converse({"stopReason": "end_turn", "usage": {"inputTokens": 13,
        ...                "outputTokens": 82, "totalTokens": 95}}, "bedrock").usage.total_tokens
        95
    """
    usage_raw = body.get("usage")
    reading = Reading(
        provider=provider,
        operation="chat",
        usage=converse_usage(usage_raw) if isinstance(usage_raw, Mapping) else Usage(),
        usage_raw=usage_raw,
        usage_source="provider" if isinstance(usage_raw, Mapping) else "missing",
        finish_reason=text(body, "stopReason"),
        stream=stream,
    )
    reading.service_tier, reading.warnings = read_tier(
        obj(body, "serviceTier").get("type"), "bedrock"
    )
    return finish(reading)


def _chunk_event(chunk: Mapping[str, Any]) -> Mapping[str, Any] | None:
    raw = chunk.get("bytes")
    if isinstance(raw, str):
        try:
            raw = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ResponseParseError("Bedrock chunk.bytes is not base64") from None
    if not isinstance(raw, (bytes, bytearray)):
        return None
    try:
        event = json.loads(raw, parse_float=Decimal)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResponseParseError(f"Bedrock chunk.bytes is not a JSON event: {exc}") from None
    return event if isinstance(event, Mapping) else None


class ConverseStream:
    """Accumulates ConverseStream events (or ``invoke_model`` Anthropic chunks).

    Accepts boto3's one-key dicts (``{"messageStop": {...}}``); the binary
    transcript is turned into the same dicts by :func:`event_stream_events`.
    """

    __slots__ = ("_anthropic", "_metadata", "_provider", "_stop", "_warnings")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._metadata: Mapping[str, Any] | None = None
        self._stop: str | None = None
        self._anthropic: MessageStream | None = None
        self._warnings: list[str] = []

    def feed(self, event: Mapping[str, Any]) -> None:
        """Take one event."""
        metadata = event.get("metadata")
        if isinstance(metadata, Mapping):
            self._metadata = metadata
            return
        stop = event.get("messageStop")
        if isinstance(stop, Mapping):
            self._stop = text(stop, "stopReason")
            return
        chunk = event.get("chunk")
        if isinstance(chunk, Mapping):
            inner = _chunk_event(chunk)
            if inner is not None:
                if self._anthropic is None:
                    self._anthropic = MessageStream(self._provider)
                self._anthropic.feed(inner)
            return
        exception = event.get("exception")
        if isinstance(exception, Mapping):
            self._warnings.append(
                f"stream ended with {exception.get('type', 'an exception')}: "
                f"{exception.get('message', '')}".rstrip(": ")
            )
            return
        # Anthropic events fed directly with provider="bedrock" (already unwrapped).
        if isinstance(event.get("type"), str) and str(event["type"]).startswith("message"):
            if self._anthropic is None:
                self._anthropic = MessageStream(self._provider)
            self._anthropic.feed(event)

    def result(self) -> Reading:
        """The reading of the stream so far."""
        if self._anthropic is not None and self._metadata is None:
            reading = self._anthropic.result()
        else:
            body: dict[str, Any] = dict(self._metadata or {})
            body["stopReason"] = self._stop
            reading = read_converse(body, self._provider, stream=True)
        reading.warnings.extend(self._warnings)
        return reading


def event_stream_events(data: bytes) -> Iterator[dict[str, Any]]:
    """The events of a binary Bedrock stream as boto3-style one-key dicts.

    Raises:
        ResponseParseError: on a bad CRC, a truncated frame or a non-JSON payload.

    Example:
        >>> list(event_stream_events(b""))
        []
    """
    for message in iter_messages(data):
        headers = message.headers
        kind = headers.get(":message-type", "event")
        if kind == "exception" or kind == "error":
            name = headers.get(":exception-type") or headers.get(":error-code") or "exception"
            try:
                detail = json.loads(message.payload or b"{}")
            except (json.JSONDecodeError, UnicodeDecodeError):
                detail = {}
            note = detail.get("message", "") if isinstance(detail, dict) else ""
            yield {"exception": {"type": str(name), "message": str(note)}}
            continue
        event_type = headers.get(":event-type")
        if not isinstance(event_type, str):
            continue
        try:
            payload = json.loads(message.payload or b"{}", parse_float=Decimal)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ResponseParseError(
                f"event-stream {event_type} payload is not JSON: {exc}"
            ) from None
        yield {event_type: payload}
