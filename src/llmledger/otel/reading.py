"""GenAI spans read as events: the ingest side of the conventions in
:mod:`llmledger.otel.semconv`.

Pure: a decoded span (:class:`SpanRecord`, from :mod:`llmledger.otel.otlp`) in, the JSON
shape of an event out, which the receiver then passes through the one validation every
event goes through (:func:`llmledger.wire.parse.parse_event`).  Which attributes are read,
and in which order, is the vocabulary of :mod:`llmledger.otel.semconv`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from llmledger.core.events import Operation
from llmledger.core.ids import derived_id
from llmledger.core.providers import provider_name
from llmledger.normalize import read_tier
from llmledger.otel.semconv import (
    ATTRIBUTION_ATTRIBUTES,
    BUCKET_ATTRIBUTES,
    LANGFUSE_MODEL_TYPES,
    LANGFUSE_USAGE_KEYS,
    MAX_MESSAGE,
    MAX_TAGS,
    MODEL_PREFIXES,
    OPERATION_ATTRIBUTES,
    OPERATION_WORDS,
    PROVIDER_ATTRIBUTES,
    PROVIDER_HOSTS,
    REQUEST_MODEL_ATTRIBUTES,
    RESPONSE_MODEL_ATTRIBUTES,
    STREAM_ATTRIBUTES,
    TAG_PREFIXES,
    TIER_ATTRIBUTES,
    TIER_FIELDS,
)

__all__ = ["Skipped", "SpanRecord", "event_json_from_span", "span_id_event_id"]


@dataclass(frozen=True)
class SpanRecord:
    """One span as OTLP carries it, decoded (ids as lower-case hex).

    ``resource`` holds the attributes of the span's resource; a span attribute of
    the same name wins over it.
    """

    trace_id: str
    span_id: str
    name: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)
    resource: Mapping[str, Any] = field(default_factory=dict)
    status_code: int = 0
    status_message: str = ""
    scope: str = ""


@dataclass(frozen=True)
class Skipped:
    """A span that is not a model call, and why (``not_genai`` or ``not_a_model_call``)."""

    reason: str


def span_id_event_id(trace_id: str, span_id: str, start_ns: int) -> str:
    """The event id of a span: a ULID of its start time and a hash of its ids.

    The same span sent twice gets the same id, so the store keeps it once.

    Example:
        >>> a = span_id_event_id("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", 0)
        >>> a == span_id_event_id("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", 0)
        True
        >>> len(a)
        26
    """
    digest = hashlib.sha256(f"{trace_id}:{span_id}".encode()).digest()
    return derived_id(max(0, start_ns) // 1_000_000, digest[:10])


def _first(attributes: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        value = attributes.get(name)
        if value is not None and value != "":
            return value
    return None


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _langfuse_usage(attributes: Mapping[str, Any]) -> dict[str, int]:
    raw = attributes.get("langfuse.observation.usage_details")
    if not isinstance(raw, str):
        return {}
    try:
        details = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(details, dict):
        return {}
    found: dict[str, int] = {}
    for key, bucket in LANGFUSE_USAGE_KEYS.items():
        count = _count(details.get(key))
        if count is not None and bucket not in found:
            found[bucket] = count
    return found


def _usage(attributes: Mapping[str, Any]) -> tuple[dict[str, int], dict[str, Any]]:
    """The buckets a span reports, and the attributes they were read from (verbatim)."""
    buckets: dict[str, int] = {}
    raw: dict[str, Any] = {}
    for bucket, names in BUCKET_ATTRIBUTES.items():
        for name in names:
            count = _count(attributes.get(name))
            if count is not None:
                buckets[bucket] = count
                raw[name] = attributes[name]
                break
    for bucket, count in _langfuse_usage(attributes).items():
        buckets.setdefault(bucket, count)
        raw.setdefault(
            "langfuse.observation.usage_details",
            attributes.get("langfuse.observation.usage_details"),
        )
    total = _count(attributes.get("llm.usage.total_tokens"))
    if total is not None:
        raw["llm.usage.total_tokens"] = total
        if "input_tokens" not in buckets and "output_tokens" in buckets:
            buckets["input_tokens"] = max(0, total - buckets["output_tokens"])
    # The convention counts cached input inside input_tokens; an instrumentation
    # that passes on Anthropic's own counting (input without the cache) shows
    # itself by parts larger than the total, and the total is made whole.
    cache = buckets.get("cache_read_tokens", 0) + buckets.get("cache_write_tokens", 0)
    if cache > buckets.get("input_tokens", 0):
        buckets["input_tokens"] = buckets.get("input_tokens", 0) + cache
    if buckets.get("reasoning_tokens", 0) > buckets.get("output_tokens", 0):
        buckets["output_tokens"] = buckets.get("output_tokens", 0) + buckets["reasoning_tokens"]
    return buckets, raw


def _provider(attributes: Mapping[str, Any], model: str | None) -> str:
    named = _first(attributes, PROVIDER_ATTRIBUTES)
    if isinstance(named, str):
        return provider_name(named)
    host = attributes.get("server.address")
    if isinstance(host, str) and host.lower() in PROVIDER_HOSTS:
        return PROVIDER_HOSTS[host.lower()]
    lowered = (model or "").lower()
    for prefix, provider in MODEL_PREFIXES:
        if lowered.startswith(prefix):
            return provider
    return "unknown"


def _operation(attributes: Mapping[str, Any]) -> Operation | Skipped | None:
    word = _first(attributes, OPERATION_ATTRIBUTES)
    if isinstance(word, str):
        operation = OPERATION_WORDS.get(word.strip().lower())
        return operation if operation is not None else Skipped("not_a_model_call")
    kind = attributes.get("langfuse.observation.type")
    if isinstance(kind, str):
        mapped = LANGFUSE_MODEL_TYPES.get(kind)
        return mapped if mapped is not None else Skipped("not_a_model_call")
    return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, tuple)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return text or None


def _attribution(attributes: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, keys in ATTRIBUTION_ATTRIBUTES.items():
        value = _text(_first(attributes, keys))
        if value is not None:
            found[name] = value
    taken = {key for keys in ATTRIBUTION_ATTRIBUTES.values() for key in keys}
    tags: dict[str, str] = {}
    for key in sorted(attributes):
        if key in taken:
            continue
        for prefix in TAG_PREFIXES:
            if key.startswith(prefix) and len(key) > len(prefix):
                value = _text(attributes[key])
                if value is not None and len(tags) < MAX_TAGS:
                    tags.setdefault(key[len(prefix) :], value)
                break
    if tags:
        found["tags"] = tags
    return found


def _iso(ns: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    return moment.isoformat().replace("+00:00", "Z")


def _tier(provider: str, attributes: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    value = _first(attributes, TIER_ATTRIBUTES)
    if value is None:
        return None, []
    if "llmledger.service_tier" in attributes:
        return _text(attributes["llmledger.service_tier"]), []
    tier, warnings = read_tier(value, TIER_FIELDS.get(provider, "openai"))
    return tier, warnings


def event_json_from_span(span: SpanRecord) -> dict[str, Any] | Skipped:
    """The event a GenAI span records, in the JSON shape of ``llmledger logs --json``.

    A span is a model call when it names a model or reports token usage, and its
    operation (if it names one) is a model call (chat, completion, embeddings, …);
    agent, tool and workflow spans are :class:`Skipped`.  The event's id comes from
    the span's ids (:func:`span_id_event_id`), or is ``llmledger.event.id`` when the
    span was exported by llmledger, so sending a span again stores nothing new.
    The result still has to pass :func:`llmledger.wire.parse.parse_event`.

    Example:
        >>> span = SpanRecord("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331",
        ...     "chat gpt-4o", 1735689600000000000, 1735689601500000000,
        ...     {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        ...      "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 12,
        ...      "gen_ai.usage.output_tokens": 3, "user.id": "ana"})
        >>> e = event_json_from_span(span)
        >>> e["provider"], e["model"], e["usage"], e["user"], e["duration_ms"]
        ('openai', 'gpt-4o', {'input_tokens': 12, 'output_tokens': 3}, 'ana', 1500.0)
    """
    attributes = {**span.resource, **span.attributes}
    request_model = _text(_first(attributes, REQUEST_MODEL_ATTRIBUTES))
    response_model = _text(_first(attributes, RESPONSE_MODEL_ATTRIBUTES))
    buckets, raw = _usage(attributes)
    operation = _operation(attributes)
    genai = (
        request_model is not None
        or response_model is not None
        or bool(buckets)
        or any(name in attributes for name in PROVIDER_ATTRIBUTES[:2])
        or isinstance(operation, Skipped)
    )
    if not genai:
        return Skipped("not_genai")
    if isinstance(operation, Skipped):
        return operation
    model = request_model or response_model
    provider = _provider(attributes, model)
    own_id = _text(attributes.get("llmledger.event.id"))
    event: dict[str, Any] = {
        "id": own_id or span_id_event_id(span.trace_id, span.span_id, span.start_ns),
        "ts": _iso(span.start_ns),
        "provider": provider,
        "model": model,
        "operation": operation or "chat",
        "usage": buckets,
        "usage_source": "provider" if buckets else "missing",
        "usage_raw": {"otel": raw} if raw else None,
    }
    if span.end_ns >= span.start_ns:
        event["duration_ms"] = (span.end_ns - span.start_ns) / 1_000_000
    if response_model and response_model != model:
        event["response_model"] = response_model
    ttft = attributes.get("gen_ai.response.time_to_first_chunk")
    if isinstance(ttft, (int, float)) and not isinstance(ttft, bool) and ttft >= 0:
        event["ttft_ms"] = float(ttft) * 1000
    stream = _first(attributes, STREAM_ATTRIBUTES)
    if isinstance(stream, bool):
        event["stream"] = stream
    request_id = _text(_first(attributes, ("gen_ai.response.id", "llm.response.id")))
    if request_id:
        event["request_id"] = request_id
    reasons = attributes.get("gen_ai.response.finish_reasons")
    if isinstance(reasons, (list, tuple)) and reasons:
        event["finish_reason"] = _text(reasons[0])
    elif isinstance(reasons, str) and reasons:
        event["finish_reason"] = reasons
    tier, warnings = _tier(provider, attributes)
    if tier:
        event["service_tier"] = tier
    if warnings:
        event["warnings"] = warnings
    if span.status_code == 2:
        event["status"] = "error"
        event["error_type"] = _text(attributes.get("error.type")) or "error"
        if span.status_message:
            event["error_message"] = span.status_message[:MAX_MESSAGE]
    elif _text(attributes.get("llmledger.status")) in ("incomplete", "abandoned"):
        event["status"] = attributes["llmledger.status"]
    event.update(_attribution(attributes))
    return {k: v for k, v in event.items() if v is not None}
