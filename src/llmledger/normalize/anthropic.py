"""Anthropic Messages bodies and streams (also Anthropic models through Bedrock ``invoke_model``).

Anthropic's ``input_tokens`` does NOT include cache reads or cache writes, so:

* input = ``input_tokens`` + ``cache_read_input_tokens`` + ``cache_creation_input_tokens``
* cache read = ``cache_read_input_tokens``; cache write = ``cache_creation_input_tokens``,
  split by TTL from ``cache_creation.ephemeral_5m_input_tokens`` /
  ``ephemeral_1h_input_tokens`` when the API sends the split (older responses do
  not: the split then stays 0 rather than being guessed)
* output = ``output_tokens`` (thinking included; Anthropic does not report it apart)

Streams: ``message_start`` carries the first usage and ``message_delta`` a
CUMULATIVE one, so fields are overwritten, never added. Older streams send only
``output_tokens`` in ``message_delta``; the input fields of ``message_start`` then
stand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmledger.core.usage import Usage
from llmledger.normalize._common import count, finish, obj, text
from llmledger.normalize.base import Reading

__all__ = ["MessageStream", "messages_usage", "read_message"]


def messages_usage(usage: Mapping[str, Any]) -> Usage:
    """Canonical buckets of an Anthropic ``usage`` object.

    Example:
        >>> u = messages_usage({"input_tokens": 3, "cache_read_input_tokens": 1111,
        ...                     "cache_creation_input_tokens": 0, "output_tokens": 406})
        >>> (u.input_tokens, u.cache_read_tokens)
        (1114, 1111)
    """
    uncached = count(usage, "input_tokens")
    cache_read = count(usage, "cache_read_input_tokens")
    cache_write = count(usage, "cache_creation_input_tokens")
    split = obj(usage, "cache_creation")
    return Usage(
        input_tokens=uncached + cache_read + cache_write,
        output_tokens=count(usage, "output_tokens"),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_5m_tokens=count(
            split, "ephemeral_5m_input_tokens", where="usage.cache_creation"
        ),
        cache_write_1h_tokens=count(
            split, "ephemeral_1h_input_tokens", where="usage.cache_creation"
        ),
    )


def read_message(body: Mapping[str, Any], provider: str, *, stream: bool = False) -> Reading:
    """Read a Messages API body (``"type": "message"``).

    Example:
        >>> r = read_message({"type": "message", "id": "msg_1", "model": "claude-x",
        ...                   "stop_reason": "end_turn",
        ...                   "usage": {"input_tokens": 3, "cache_read_input_tokens": 10,
        ...                             "output_tokens": 5}}, "anthropic")
        >>> (r.usage.input_tokens, r.finish_reason)
        (13, 'end_turn')
    """
    usage_raw = body.get("usage")
    has_usage = isinstance(usage_raw, Mapping)
    reading = Reading(
        provider=provider,
        operation="chat",
        usage=messages_usage(usage_raw) if isinstance(usage_raw, Mapping) else Usage(),
        usage_raw=usage_raw,
        usage_source="provider" if has_usage else "missing",
        response_model=text(body, "model"),
        request_id=text(body, "id"),
        finish_reason=text(body, "stop_reason"),
        service_tier=text(usage_raw, "service_tier") if isinstance(usage_raw, Mapping) else None,
        stream=stream,
    )
    return finish(reading)


def _merge(into: dict[str, Any], usage: Mapping[str, Any]) -> None:
    for key, value in usage.items():
        if value is None:
            # A null field in a later event says nothing; it must not erase
            # the count an earlier event gave.
            continue
        if isinstance(value, Mapping):
            nested = into.get(key)
            merged = dict(nested) if isinstance(nested, Mapping) else {}
            _merge(merged, value)
            into[key] = merged
        else:
            into[key] = value


class MessageStream:
    """Accumulates Anthropic stream events into the final message's usage.

    ``usage_raw`` of the result is the merged usage: ``message_start``'s fields
    overwritten field by field by each ``message_delta``.
    """

    __slots__ = ("_message", "_provider", "_stop", "_usage")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._message: Mapping[str, Any] = {}
        self._usage: dict[str, Any] | None = None
        self._stop: str | None = None

    def feed(self, event: Mapping[str, Any]) -> None:
        """Take one event."""
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message")
            if isinstance(message, Mapping):
                self._message = message
                usage = message.get("usage")
                if isinstance(usage, Mapping):
                    self._usage = {}
                    _merge(self._usage, usage)
        elif kind == "message_delta":
            usage = event.get("usage")
            if isinstance(usage, Mapping):
                if self._usage is None:
                    self._usage = {}
                _merge(self._usage, usage)
            delta = event.get("delta")
            if isinstance(delta, Mapping) and delta.get("stop_reason") is not None:
                self._stop = delta["stop_reason"]

    def result(self) -> Reading:
        """The reading of the stream so far."""
        body = dict(self._message)
        body["usage"] = self._usage
        if self._stop is not None:
            body["stop_reason"] = self._stop
        return read_message(body, self._provider, stream=True)
