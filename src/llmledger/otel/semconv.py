"""GenAI semantic conventions, both ways: an event as span attributes, and a span as an event.

Pure: no OpenTelemetry SDK, no clock, no I/O.  The export side
(:mod:`llmledger.otel.export`) hands these attributes to the SDK; the ingest side
(``/v1/traces``) decodes OTLP into :class:`SpanRecord` (:mod:`llmledger.otel.otlp`)
and reads each record here into the JSON shape of an event, which then goes
through the one validation every event goes through (``llmledger.wire``).

The names follow the OpenTelemetry GenAI semantic conventions as of
semantic-conventions v1.41.0 (the last release holding them before they moved to
the semantic-conventions-genai repository, whose v0.1.0 keeps every name used
here): ``gen_ai.provider.name`` rather than the older ``gen_ai.system``, and
``gen_ai.usage.input_tokens`` counting every input token, cached or not.  Reading
also accepts the older and vendor spellings listed in :data:`BUCKET_ATTRIBUTES`
and the tables below (OpenLLMetry/Traceloop, OpenLIT, Logfire, Langfuse).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from llmledger.core.events import Operation, UsageEvent
from llmledger.core.ids import derived_id
from llmledger.core.providers import provider_name
from llmledger.normalize import TierField, read_tier

__all__ = [
    "BUCKET_ATTRIBUTES",
    "SEMCONV_VERSION",
    "Skipped",
    "SpanRecord",
    "event_json_from_span",
    "metric_attributes",
    "span_attributes",
    "span_id_event_id",
    "span_name",
]

#: The semantic-conventions release whose GenAI names llmledger writes.
SEMCONV_VERSION = "1.41.0"
#: Its schema URL, given to the tracer and meter.
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"

AttributeValue = str | bool | int | float | Sequence[str] | Sequence[int] | Sequence[float]

# -- vocabularies (data, once) -------------------------------------------------------------

#: llmledger's bucket -> the span attributes that carry it, the convention's name first.
#: Reading takes the first one present; writing uses the first.
BUCKET_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "input_tokens": (
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.prompt_tokens",  # before semantic-conventions 1.27; Traceloop, OpenLIT
        "llm.usage.prompt_tokens",  # Traceloop before gen_ai.*
    ),
    "output_tokens": (
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
        "llm.usage.completion_tokens",
    ),
    "cache_read_tokens": (
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",  # Traceloop, OpenLIT
        "gen_ai.usage.input_tokens.cached",  # Logfire and others
        "llm.usage.cache_read_input_tokens",
    ),
    "cache_write_tokens": (
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",  # Traceloop, OpenLIT
        "gen_ai.usage.input_tokens.cache_write",
        "llm.usage.cache_creation_input_tokens",
    ),
    "reasoning_tokens": (
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.reasoning_tokens",  # Traceloop, OpenLIT
        "gen_ai.usage.output_tokens.reasoning",
        "llm.usage.reasoning_tokens",
    ),
    # No convention names these yet: llmledger's own attributes carry them.
    "cache_write_5m_tokens": ("llmledger.usage.cache_write_5m_tokens",),
    "cache_write_1h_tokens": ("llmledger.usage.cache_write_1h_tokens",),
    "input_audio_tokens": ("llmledger.usage.input_audio_tokens",),
    "input_image_tokens": ("llmledger.usage.input_image_tokens",),
    "output_audio_tokens": ("llmledger.usage.output_audio_tokens",),
    "tool_use_prompt_tokens": ("llmledger.usage.tool_use_prompt_tokens",),
}

#: Langfuse's ``langfuse.observation.usage_details`` (a JSON object) keys -> bucket.
LANGFUSE_USAGE_KEYS: dict[str, str] = {
    "input": "input_tokens",
    "prompt_tokens": "input_tokens",
    "output": "output_tokens",
    "completion_tokens": "output_tokens",
    "input_cached_tokens": "cache_read_tokens",
    "cache_read_input_tokens": "cache_read_tokens",
    "cache_creation_input_tokens": "cache_write_tokens",
    "output_reasoning_tokens": "reasoning_tokens",
    "reasoning_tokens": "reasoning_tokens",
}

#: Attributes naming the provider, in order.
PROVIDER_ATTRIBUTES = ("gen_ai.provider.name", "gen_ai.system", "llm.vendor", "llm.provider")
REQUEST_MODEL_ATTRIBUTES = (
    "gen_ai.request.model",
    "llm.request.model",
    "langfuse.observation.model.name",
)
RESPONSE_MODEL_ATTRIBUTES = ("gen_ai.response.model", "llm.response.model")
OPERATION_ATTRIBUTES = ("gen_ai.operation.name", "llm.request.type")
TIER_ATTRIBUTES = (
    "openai.response.service_tier",
    "gen_ai.openai.response.service_tier",
    "openai.request.service_tier",
    "gen_ai.openai.request.service_tier",
    "llmledger.service_tier",
)
STREAM_ATTRIBUTES = ("gen_ai.request.stream", "llm.is_streaming", "gen_ai.is_streaming")

#: Attribution: llmledger's field -> the attributes that carry it, in order.
ATTRIBUTION_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "tenant": (
        "llmledger.tenant",
        "traceloop.association.properties.tenant",
        "traceloop.association.properties.tenant_id",
    ),
    "user": (
        "llmledger.user",
        "user.id",
        "enduser.id",
        "langfuse.user.id",
        "traceloop.association.properties.user_id",
    ),
    "feature": ("llmledger.feature", "traceloop.association.properties.feature"),
    "session": (
        "llmledger.session",
        "gen_ai.conversation.id",
        "session.id",
        "langfuse.session.id",
        "traceloop.association.properties.session_id",
    ),
}
#: Attribute prefixes whose rest becomes a tag key.
TAG_PREFIXES = ("llmledger.tag.", "traceloop.association.properties.", "langfuse.trace.metadata.")
MAX_TAGS = 64

#: A span operation word -> llmledger's operation.  Words absent here that still
#: name a GenAI operation (``invoke_agent``, ``execute_tool``, …) are not model
#: calls: their tokens, if any, are the sum of the model calls beneath them.
OPERATION_WORDS: dict[str, Operation] = {
    "chat": "chat",
    "text_completion": "chat",
    "completion": "chat",
    "generate_content": "chat",
    "responses": "responses",
    "embeddings": "embeddings",
    "embedding": "embeddings",
    "create_image": "images",
    "image": "images",
    "images": "images",
    "audio": "audio",
    "rerank": "rerank",
}
#: llmledger's operation -> the word written in ``gen_ai.operation.name``.
OPERATION_NAMES: dict[str, str] = {
    "chat": "chat",
    "responses": "chat",
    "embeddings": "embeddings",
    "images": "create_image",
    "audio": "audio",
    "rerank": "rerank",
    "other": "other",
}
#: Langfuse observation types that are model calls.
LANGFUSE_MODEL_TYPES: dict[str, Operation] = {"generation": "chat", "embedding": "embeddings"}

#: llmledger's provider name -> the convention's ``gen_ai.provider.name``.
PROVIDER_NAMES: dict[str, str] = {
    "google": "gcp.gen_ai",
    "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "ibm": "ibm.watsonx.ai",
}
#: Where a span names no provider: the host it called, then the model's prefix.
PROVIDER_HOSTS: dict[str, str] = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "google",
    "api.mistral.ai": "mistral",
    "api.x.ai": "xai",
}
MODEL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("text-embedding-", "openai"),
    ("chatgpt-", "openai"),
    ("claude-", "anthropic"),
    ("gemini-", "google"),
    ("mistral-", "mistral"),
    ("grok-", "xai"),
)
#: The tier words of each provider's responses (llmledger.normalize reads them).
TIER_FIELDS: dict[str, TierField] = {
    "openai": "openai",
    "azure": "openai",
    "anthropic": "anthropic",
    "google": "gemini",
    "bedrock": "bedrock",
}

#: Longest error message kept from a span's status.
MAX_MESSAGE = 2000

# -- export: an event as span attributes ----------------------------------------------------


def span_name(event: UsageEvent) -> str:
    """``{gen_ai.operation.name} {gen_ai.request.model}``, as the convention asks.

    Example:
        >>> from llmledger.core.events import UsageEvent
        >>> span_name(UsageEvent(provider="openai", model="gpt-4o", ts=datetime(2025, 1, 1,
        ...     tzinfo=UTC)))
        'chat gpt-4o'
    """
    return f"{OPERATION_NAMES.get(event.operation, event.operation)} {event.model}"


def _semconv_provider(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider)


def span_attributes(event: UsageEvent) -> dict[str, AttributeValue]:
    """The span attributes of one event: the GenAI convention's, then llmledger's own.

    Token parts that are zero are left out; the cost is ``llmledger.cost`` (exact
    decimal text, USD) and ``llmledger.cost_usd`` (a double, for dashboards).

    Example:
        >>> from decimal import Decimal
        >>> from llmledger.core.usage import Usage
        >>> e = UsageEvent(provider="openai", model="gpt-4o", ts=datetime(2025, 1, 1, tzinfo=UTC),
        ...                usage=Usage(input_tokens=100, cache_read_tokens=40, output_tokens=5),
        ...                cost=Decimal("0.0002"), feature="search")
        >>> a = span_attributes(e)
        >>> a["gen_ai.usage.input_tokens"], a["gen_ai.usage.cache_read.input_tokens"]
        (100, 40)
        >>> a["llmledger.cost"], a["llmledger.feature"]
        ('0.0002', 'search')
    """
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": OPERATION_NAMES.get(event.operation, event.operation),
        "gen_ai.provider.name": _semconv_provider(event.provider),
        "gen_ai.request.model": event.model,
    }
    optional: dict[str, AttributeValue | None] = {
        "gen_ai.response.model": event.response_model,
        "gen_ai.response.id": event.request_id,
        "gen_ai.conversation.id": event.session,
        "user.id": event.user,
        "error.type": (event.error_type or "error") if event.status == "error" else None,
    }
    if event.finish_reason:
        optional["gen_ai.response.finish_reasons"] = [event.finish_reason]
    if event.stream:
        optional["gen_ai.request.stream"] = True
    if event.ttft_ms is not None:
        optional["gen_ai.response.time_to_first_chunk"] = event.ttft_ms / 1000
    if event.service_tier and event.provider in ("openai", "azure"):
        optional["openai.response.service_tier"] = event.service_tier
    attributes.update({k: v for k, v in optional.items() if v is not None})
    usage = event.usage
    for bucket, names in BUCKET_ATTRIBUTES.items():
        count = getattr(usage, bucket)
        if count or bucket in ("input_tokens", "output_tokens"):
            attributes[names[0]] = count
    own: dict[str, AttributeValue | None] = {
        "llmledger.event.id": event.id,
        "llmledger.provider": event.provider,
        "llmledger.operation": event.operation,
        "llmledger.status": event.status,
        "llmledger.service_tier": event.service_tier,
        "llmledger.tenant": event.tenant,
        "llmledger.user": event.user,
        "llmledger.feature": event.feature,
        "llmledger.session": event.session,
        "llmledger.price_status": event.price_status,
        "llmledger.cost_source": event.cost_source,
        "llmledger.price_ref": event.price_ref,
        "llmledger.unpriced_reason": event.unpriced_reason,
        "llmledger.incomplete_reason": event.incomplete_reason,
    }
    if event.cost is not None:
        own["llmledger.cost"] = str(event.cost)
        own["llmledger.cost_usd"] = float(event.cost)
    attributes.update({k: v for k, v in own.items() if v is not None})
    for key, value in event.tags.items():
        attributes[f"llmledger.tag.{key}"] = value
    return attributes


def metric_attributes(event: UsageEvent) -> dict[str, str]:
    """The attributes of the convention's metrics (``gen_ai.client.*``) for one event.

    Example:
        >>> metric_attributes(UsageEvent(provider="google", model="gemini-2.5-flash",
        ...     ts=datetime(2025, 1, 1, tzinfo=UTC)))["gen_ai.provider.name"]
        'gcp.gen_ai'
    """
    attributes = {
        "gen_ai.operation.name": OPERATION_NAMES.get(event.operation, event.operation),
        "gen_ai.provider.name": _semconv_provider(event.provider),
        "gen_ai.request.model": event.model,
    }
    if event.response_model:
        attributes["gen_ai.response.model"] = event.response_model
    if event.status == "error":
        attributes["error.type"] = event.error_type or "error"
    return attributes


# -- ingest: a span as an event -------------------------------------------------------------


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
