"""Anthropic Messages bodies and streams (also Anthropic models through Bedrock ``invoke_model``).

Anthropic's ``input_tokens`` does NOT include cache reads or cache writes, so:

* input = ``input_tokens`` + ``cache_read_input_tokens`` + ``cache_creation_input_tokens``
* cache read = ``cache_read_input_tokens``; cache write = ``cache_creation_input_tokens``,
  split by TTL from ``cache_creation.ephemeral_5m_input_tokens`` /
  ``ephemeral_1h_input_tokens`` when the API sends the split (older responses do
  not: the split then stays 0 rather than being guessed)
* output = ``output_tokens``, thinking included; reasoning =
  ``output_tokens_details.thinking_tokens`` where the API reports it

Steps: a call that compacts its context first (``context_management``) or
consults an advisor model (the advisor server tool) lists every sampling step in
``usage.iterations``, and every step is billed. The top-level counts then cover
only the ``message`` steps, so the call's usage is the sum of the iterations, each
kept as a part (an ``advisor_message`` names the model whose rates apply).

Streams: ``message_start`` carries the first usage and ``message_delta`` a
CUMULATIVE one, so fields are overwritten, never added. Older streams send only
``output_tokens`` in ``message_delta``; the input fields of ``message_start`` then
stand. With steps, ``message_delta`` carries the iterations while its top-level
counts describe only the last step (its cache read can be 0 where
``message_start`` reported the compaction's): the iterations decide, and a count
seen anywhere in the stream that the final usage does not cover is a warning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from llmledger.core.billing import UsagePart
from llmledger.core.usage import Usage
from llmledger.normalize._common import count, fee_counts, finish, obj, text
from llmledger.normalize._tiers import read_tier
from llmledger.normalize.base import Reading

__all__ = ["MessageStream", "billed_usage", "messages_usage", "read_message"]

# The provider's own counts; each must be covered by what the reading bills.
_RAW_COUNTS = (
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "output_tokens",
)


def messages_usage(usage: Mapping[str, Any], *, where: str = "usage") -> Usage:
    """Canonical buckets of one Anthropic ``usage`` object (or of one of its iterations).

    Example:
        >>> u = messages_usage({"input_tokens": 3, "cache_read_input_tokens": 1111,
        ...                     "cache_creation_input_tokens": 0, "output_tokens": 406})
        >>> (u.input_tokens, u.cache_read_tokens)
        (1114, 1111)
    """
    uncached = count(usage, "input_tokens", where=where)
    cache_read = count(usage, "cache_read_input_tokens", where=where)
    cache_write = count(usage, "cache_creation_input_tokens", where=where)
    split = obj(usage, "cache_creation")
    return Usage(
        input_tokens=uncached + cache_read + cache_write,
        output_tokens=count(usage, "output_tokens", where=where),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_5m_tokens=count(
            split, "ephemeral_5m_input_tokens", where=f"{where}.cache_creation"
        ),
        cache_write_1h_tokens=count(
            split, "ephemeral_1h_input_tokens", where=f"{where}.cache_creation"
        ),
    )


def _iterations(usage: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    steps = usage.get("iterations")
    if not isinstance(steps, list):
        return []
    return [step for step in steps if isinstance(step, Mapping)]


def _with_thinking(parts: list[UsagePart], thinking: int) -> list[UsagePart]:
    # Anthropic reports thinking for the whole call only. It is output of the
    # call's own model, so it goes to those steps in order, as much as each
    # step's output holds; any excess stays on the first, where the invariant
    # check reports it.
    own = [i for i, part in enumerate(parts) if part.model is None] or [0]
    left = thinking
    shares = dict.fromkeys(own, 0)
    for i in own:
        take = min(left, max(parts[i].usage.output_tokens, 0))
        shares[i] += take
        left -= take
    shares[own[0]] += left
    return [
        UsagePart(part.model, replace(part.usage, reasoning_tokens=shares[i]))
        if shares.get(i)
        else part
        for i, part in enumerate(parts)
    ]


def billed_usage(
    usage: Mapping[str, Any],
    *,
    model: str | None = None,
    seen: Mapping[str, int] | None = None,
) -> tuple[Usage, tuple[UsagePart, ...], list[str]]:
    """What an Anthropic ``usage`` object bills: the usage, its parts, and warnings.

    Without ``iterations`` the top-level counts are the call's usage and there
    are no parts. With them, every iteration is a part and the usage is their
    sum; an iteration naming a model other than ``model`` (the response's) is
    billed at that model. ``seen`` holds counts reported earlier in a stream
    (``message_start``): any the result does not cover becomes a warning.

    Example:
        >>> usage, parts, _ = billed_usage({"input_tokens": 220, "output_tokens": 8,
        ...     "iterations": [{"type": "compaction", "input_tokens": 55196, "output_tokens": 125},
        ...                    {"type": "message", "input_tokens": 220, "output_tokens": 8}]})
        >>> (usage.input_tokens, usage.output_tokens, len(parts))
        (55416, 133, 2)
    """
    thinking = count(
        obj(usage, "output_tokens_details"), "thinking_tokens", where="usage.output_tokens_details"
    )
    steps = _iterations(usage)
    top = {name: count(usage, name) for name in _RAW_COUNTS}
    warnings: list[str] = []
    parts: tuple[UsagePart, ...] = ()
    if not steps:
        total = messages_usage(usage)
        if thinking:
            total = replace(total, reasoning_tokens=thinking)
        covered = top
    else:
        listed = []
        for i, step in enumerate(steps):
            step_model = text(step, "model")
            listed.append(
                UsagePart(
                    None if step_model == model else step_model,
                    messages_usage(step, where=f"usage.iterations[{i}]"),
                )
            )
        parts = tuple(_with_thinking(listed, thinking) if thinking else listed)
        total = sum((part.usage for part in parts), Usage())
        covered = {name: sum(count(step, name) for step in steps) for name in _RAW_COUNTS}
        for name in _RAW_COUNTS:
            if top[name] > covered[name]:
                warnings.append(
                    f"usage.{name} ({top[name]}) exceeds the sum of usage.iterations "
                    f"({covered[name]})"
                )
    for name, earlier in (seen or {}).items():
        if earlier > covered.get(name, 0):
            warnings.append(
                f"the stream reported {name} {earlier} that the final usage does not "
                f"cover ({covered.get(name, 0)})"
            )
    return total, parts, warnings


def _read(
    body: Mapping[str, Any],
    provider: str,
    *,
    stream: bool,
    seen: Mapping[str, int] | None = None,
) -> Reading:
    usage_raw = body.get("usage")
    model = text(body, "model")
    reading = Reading(
        provider=provider,
        operation="chat",
        usage=Usage(),
        usage_raw=usage_raw,
        usage_source="missing",
        response_model=model,
        request_id=text(body, "id"),
        finish_reason=text(body, "stop_reason"),
        stream=stream,
    )
    if isinstance(usage_raw, Mapping):
        reading.usage, reading.usage_parts, reading.warnings = billed_usage(
            usage_raw, model=model, seen=seen
        )
        reading.usage_source = "provider"
        reading.service_tier, unknown = read_tier(usage_raw.get("service_tier"), "anthropic")
        reading.warnings += unknown
        reading.fee_counts = fee_counts(
            web_searches=count(
                obj(usage_raw, "server_tool_use"),
                "web_search_requests",
                where="usage.server_tool_use",
            )
        )
    return finish(reading)


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
    return _read(body, provider, stream=stream)


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
    overwritten field by field by each ``message_delta`` (whose ``iterations``,
    when sent, hold every step).
    """

    __slots__ = ("_message", "_provider", "_seen", "_stop", "_usage")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._message: Mapping[str, Any] = {}
        self._usage: dict[str, Any] | None = None
        self._stop: str | None = None
        # Each usage object the stream sent, kept to check at the end that the
        # final usage covers every count any of them reported.
        self._seen: list[Mapping[str, Any]] = []

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
                    self._seen.append(usage)
        elif kind == "message_delta":
            usage = event.get("usage")
            if isinstance(usage, Mapping):
                if self._usage is None:
                    self._usage = {}
                _merge(self._usage, usage)
                self._seen.append(usage)
            delta = event.get("delta")
            if isinstance(delta, Mapping) and delta.get("stop_reason") is not None:
                self._stop = delta["stop_reason"]

    def result(self) -> Reading:
        """The reading of the stream so far."""
        body = dict(self._message)
        body["usage"] = self._usage
        if self._stop is not None:
            body["stop_reason"] = self._stop
        return _read(body, self._provider, stream=True, seen=_largest(self._seen))


def _largest(usages: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    largest: dict[str, int] = {}
    for usage in usages:
        for name in _RAW_COUNTS:
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                largest[name] = max(largest.get(name, 0), value)
    return largest
