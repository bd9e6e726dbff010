"""GenAI semantic conventions: the vocabulary both ways, and an event as span attributes.

Pure: no OpenTelemetry SDK, no clock, no I/O.  The export side
(:mod:`llmledger.otel.export`) hands the attributes made here to the SDK; the ingest
side (``/v1/traces``) reads spans with the same vocabulary (:mod:`llmledger.otel.reading`).

The names follow the OpenTelemetry GenAI semantic conventions as of
semantic-conventions v1.41.0 (the last release holding them before they moved to
the semantic-conventions-genai repository, whose v0.1.0 keeps every name used
here): ``gen_ai.provider.name`` rather than the older ``gen_ai.system``, and
``gen_ai.usage.input_tokens`` counting every input token, cached or not.  Reading
also accepts the older and vendor spellings listed in :data:`BUCKET_ATTRIBUTES`
and the tables below (OpenLLMetry/Traceloop, OpenLIT, Logfire, Langfuse).
"""

from __future__ import annotations

from collections.abc import Sequence

from llmledger.core.events import Operation, UsageEvent
from llmledger.normalize import TierField

__all__ = [
    "BUCKET_ATTRIBUTES",
    "SCHEMA_URL",
    "SEMCONV_VERSION",
    "metric_attributes",
    "span_attributes",
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
    "vertex": "gcp.vertex_ai",
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
    "vertex": "gemini",
    "bedrock": "bedrock",
}

#: Longest error message kept from a span's status.
MAX_MESSAGE = 2000

# -- export: an event as span attributes ----------------------------------------------------


def span_name(event: UsageEvent) -> str:
    """``{gen_ai.operation.name} {gen_ai.request.model}``, as the convention asks.

    Example:
        >>> from datetime import UTC, datetime
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
        >>> from datetime import UTC, datetime
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
        >>> from datetime import UTC, datetime
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
