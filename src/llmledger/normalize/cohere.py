"""Cohere v2 Chat (and v1 Embed / Rerank ``meta``) bodies and streams.

Cohere reports two counts: ``usage.tokens`` (what the model processed, including
the prompt template and cached tokens) and ``usage.billed_units`` (what Cohere
charges for). llmledger follows the bill: input/output come from
``billed_units``, falling back to ``tokens`` only when ``billed_units`` is
absent. ``cached_tokens`` is counted on the ``tokens`` basis (it can exceed the
billed input, e.g. 2928 cached of 2406 billed) and Cohere does not price cache
hits apart, so it stays in ``usage_raw`` and no cache bucket is filled.

Streams: usage is only in the ``message-end`` event's ``delta.usage``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmledger.core.usage import Usage
from llmledger.normalize._common import count, finish, obj, text
from llmledger.normalize.base import Reading

__all__ = ["ChatStream", "billed_usage", "read_chat", "read_meta"]


def billed_usage(usage: Mapping[str, Any]) -> Usage:
    """Canonical buckets of a Cohere v2 ``usage`` object (billed units first).

    Example:
        >>> billed_usage({"billed_units": {"input_tokens": 21, "output_tokens": 105},
        ...               "tokens": {"input_tokens": 186, "output_tokens": 105}}).input_tokens
        21
    """
    billed = obj(usage, "billed_units")
    if billed:
        source, where = billed, "usage.billed_units"
    else:
        source, where = obj(usage, "tokens"), "usage.tokens"
    return Usage(
        input_tokens=count(source, "input_tokens", where=where),
        output_tokens=count(source, "output_tokens", where=where),
    )


def read_chat(body: Mapping[str, Any], provider: str, *, stream: bool = False) -> Reading:
    """Read a v2 Chat body.

    Example:
        >>> read_chat({"id": "g1", "finish_reason": "COMPLETE",
        ...            "usage": {"billed_units": {"input_tokens": 5, "output_tokens": 2}}},
        ...           "cohere").usage.output_tokens
        2
    """
    usage_raw = body.get("usage")
    reading = Reading(
        provider=provider,
        operation="chat",
        usage=billed_usage(usage_raw) if isinstance(usage_raw, Mapping) else Usage(),
        usage_raw=usage_raw,
        usage_source="provider" if isinstance(usage_raw, Mapping) else "missing",
        request_id=text(body, "id"),
        finish_reason=text(body, "finish_reason"),
        stream=stream,
    )
    return finish(reading)


def read_meta(body: Mapping[str, Any], provider: str, operation: str) -> Reading:
    """Read an Embed or Rerank body, whose usage is ``meta.billed_units``.

    Rerank bills search units, not tokens: they go to ``extra_units``.

    Example:
        >>> read_meta({"id": "e1", "meta": {"billed_units": {"input_tokens": 7}}},
        ...           "cohere", "embeddings").usage.input_tokens
        7
    """
    billed = obj(obj(body, "meta"), "billed_units")
    where = "meta.billed_units"
    reading = Reading(
        provider=provider,
        operation=operation,
        usage=Usage(
            input_tokens=count(billed, "input_tokens", where=where),
            output_tokens=count(billed, "output_tokens", where=where),
        ),
        usage_raw=dict(billed) if billed else None,
        usage_source="provider" if billed else "missing",
        request_id=text(body, "id"),
    )
    units = count(billed, "search_units", where=where)
    if units:
        reading.extra_units["search_units"] = units
    return finish(reading)


class ChatStream:
    """Accumulates v2 chat stream events; usage comes with ``message-end``."""

    __slots__ = ("_finish", "_id", "_provider", "_usage")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._id: str | None = None
        self._usage: Any = None
        self._finish: str | None = None

    def feed(self, event: Mapping[str, Any]) -> None:
        """Take one event."""
        kind = event.get("type")
        if kind == "message-start":
            self._id = text(event, "id")
        elif kind == "message-end":
            delta = obj(event, "delta")
            self._usage = delta.get("usage")
            self._finish = text(delta, "finish_reason")

    def result(self) -> Reading:
        """The reading of the stream so far."""
        return read_chat(
            {"id": self._id, "usage": self._usage, "finish_reason": self._finish},
            self._provider,
            stream=True,
        )
