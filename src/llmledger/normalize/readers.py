"""The public entry points: read a saved response body or a stream, whichever provider sent it.

Provider names are a closed list (:data:`PROVIDERS`). The OpenAI-compatible ones
share one reader and differ only in the label they put on the reading. When no
provider is given it is inferred from the body's shape; that inference is
best-effort for look-alike gateways (an OpenAI-compatible server answering with
OpenAI's exact shape reads as ``openai``), so callers that know the provider
should say so.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from llmledger.core.errors import ResponseParseError, UnknownProviderError
from llmledger.core.providers import provider_name
from llmledger.normalize import anthropic, bedrock, cohere, google, openai
from llmledger.normalize._common import StreamAccumulator, load_json, obj, text
from llmledger.normalize.base import Reading
from llmledger.normalize.eventstream import looks_like_event_stream
from llmledger.normalize.sse import transcript_events

__all__ = [
    "GEMINI_SHAPED",
    "OPENAI_COMPATIBLE",
    "OPERATIONS_BY_PROVIDER",
    "PROVIDERS",
    "detect_provider",
    "read_response",
    "read_stream",
    "read_stream_events",
    "read_usage",
]

#: Providers whose APIs use OpenAI's Chat Completions shape (read by one reader).
OPENAI_COMPATIBLE: tuple[str, ...] = (
    "openai",
    "azure",
    "openrouter",
    "mistral",
    "deepseek",
    "groq",
    "together",
    "fireworks",
    "xai",
    "perplexity",
    "cerebras",
    "ollama",
    "vllm",
    "litellm",
)

#: Every provider name llmledger can read.
PROVIDERS: tuple[str, ...] = (
    *OPENAI_COMPATIBLE,
    "anthropic",
    "google",
    "vertex",
    "bedrock",
    "cohere",
)

#: Providers whose bodies are Gemini ``generateContent`` bodies (read by one reader).
GEMINI_SHAPED: tuple[str, ...] = ("google", "vertex")

_OPENAI_OPERATIONS = ("chat", "responses", "embeddings", "images", "audio")

#: The operations each provider's bodies can be read as.
OPERATIONS_BY_PROVIDER: dict[str, tuple[str, ...]] = {
    **{name: _OPENAI_OPERATIONS for name in OPENAI_COMPATIBLE},
    "anthropic": ("chat",),
    "google": ("chat",),
    "vertex": ("chat",),
    "bedrock": ("chat",),
    "cohere": ("chat", "embeddings", "rerank"),
}

_MISTRAL_MODELS = (
    "mistral-",
    "open-mistral",
    "open-mixtral",
    "codestral",
    "pixtral",
    "ministral",
    "magistral",
    "devstral",
    "voxtral",
)
_ANTHROPIC_EVENTS = frozenset(
    {
        "message_start",
        "message_delta",
        "message_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
    }
)
_COHERE_EVENTS = frozenset(
    {
        "message-start",
        "message-end",
        "content-start",
        "content-delta",
        "content-end",
        "tool-plan-delta",
        "tool-call-start",
        "tool-call-delta",
        "tool-call-end",
        "citation-start",
        "citation-end",
    }
)
_BEDROCK_EVENTS = frozenset(
    {
        "messageStart",
        "messageStop",
        "contentBlockStart",
        "contentBlockDelta",
        "contentBlockStop",
        "metadata",
        "chunk",
    }
)


def _provider_name(provider: str) -> str:
    name = provider_name(provider) if isinstance(provider, str) else provider
    if name not in PROVIDERS:
        raise UnknownProviderError(
            f"unknown provider {provider!r}; known providers: {', '.join(PROVIDERS)}"
        )
    return str(name)


def _check_operation(provider: str, operation: str) -> str:
    allowed = OPERATIONS_BY_PROVIDER[provider]
    if operation not in allowed:
        raise ResponseParseError(
            f"provider {provider!r} has no operation {operation!r}; "
            f"expected one of {', '.join(allowed)}"
        )
    return operation


def _openai_family(body: Mapping[str, Any]) -> str:
    usage = obj(body, "usage")
    request_id = text(body, "id") or ""
    if "cost" in usage or "is_byok" in usage or request_id.startswith("gen-"):
        return "openrouter"
    model = (text(body, "model") or "").lower()
    if model.startswith(_MISTRAL_MODELS) and not request_id.startswith("chatcmpl-"):
        return "mistral"
    return "openai"


def detect_provider(body: Mapping[str, Any]) -> str:
    """The provider a parsed response body most likely came from.

    Raises:
        ResponseParseError: when the body matches no known shape.

    Example:
        >>> detect_provider({"type": "message", "usage": {"input_tokens": 1}})
        'anthropic'
    """
    kind = body.get("type")
    if kind == "message" or (
        kind is None and body.get("role") == "assistant" and "stop_reason" in body
    ):
        return "bedrock" if (text(body, "id") or "").startswith("msg_bdrk_") else "anthropic"
    if "usageMetadata" in body or "usage_metadata" in body or "candidates" in body:
        return google.served_by("google", google.wire_shape(body))
    if (
        "stopReason" in body
        or "inputTokens" in obj(body, "usage")
        or isinstance(body.get("output"), Mapping)
    ):
        return "bedrock"
    usage = obj(body, "usage")
    if "billed_units" in usage or "billed_units" in obj(body, "meta"):
        return "cohere"
    if "choices" in body or body.get("object") in ("chat.completion", "response", "list"):
        return _openai_family(body)
    if isinstance(body.get("data"), list) and usage:
        return "openai"
    if "text" in body and "type" in usage:
        return "openai"
    keys = ", ".join(sorted(str(k) for k in body)[:12]) or "none"
    raise ResponseParseError(f"unrecognised response body shape (top-level keys: {keys})")


def _openai_operation(body: Mapping[str, Any]) -> str:
    kind = body.get("object")
    if kind == "response" or (isinstance(body.get("output"), list) and "status" in body):
        return "responses"
    if kind in ("chat.completion", "chat.completion.chunk") or "choices" in body:
        return "chat"
    data = body.get("data")
    if isinstance(data, list):
        first = data[0] if data else {}
        if kind == "list" and (not isinstance(first, Mapping) or "embedding" in first):
            return "embeddings"
        return "images"
    if "text" in body:
        return "audio"
    raise ResponseParseError(
        "OpenAI-shaped body is neither chat, responses, embeddings, images nor audio"
    )


def _cohere_operation(body: Mapping[str, Any]) -> str:
    if "embeddings" in body:
        return "embeddings"
    if "results" in body:
        return "rerank"
    return "chat"


def _read(body: Mapping[str, Any], provider: str, operation: str | None) -> Reading:
    if provider in OPENAI_COMPATIBLE:
        op = operation or _openai_operation(body)
        readers: dict[str, Callable[[Mapping[str, Any], str], Reading]] = {
            "chat": openai.read_chat,
            "responses": openai.read_responses,
            "embeddings": openai.read_embeddings,
            "images": openai.read_images,
            "audio": openai.read_audio,
        }
        return readers[op](body, provider)
    if provider == "anthropic":
        return anthropic.read_message(body, provider)
    if provider in GEMINI_SHAPED:
        return google.read_generate(body, provider)
    if provider == "bedrock":
        if body.get("type") == "message" or "stop_reason" in body:
            return anthropic.read_message(body, provider)
        return bedrock.read_converse(body, provider)
    op = operation or _cohere_operation(body)
    if op == "chat":
        return cohere.read_chat(body, provider)
    return cohere.read_meta(body, provider, op)


def _reject_error_body(body: Mapping[str, Any]) -> None:
    error = body.get("error")
    if error is not None and "usage" not in body:
        message = text(error, "message") if isinstance(error, Mapping) else str(error)
        raise ResponseParseError(f"body is an error response, not a result: {message}")


def read_response(
    body: Mapping[str, Any] | str | bytes,
    *,
    provider: str | None = None,
    operation: str | None = None,
) -> Reading:
    """Read the usage and response facts of one non-streamed provider response.

    Args:
        body: the parsed body (a dict) or its JSON text/bytes.
        provider: one of :data:`PROVIDERS`; inferred from the body when omitted.
        operation: ``chat``, ``responses``, ``embeddings``, ``images``, ``audio`` or
            ``rerank``; inferred from the body when omitted.

    Raises:
        UnknownProviderError: on a provider name llmledger does not know.
        ResponseParseError: on invalid JSON, an unrecognised shape, an error body,
            an operation the provider does not have, or a non-integer count.

    Example:
        >>> r = read_response('{"type": "message", "id": "msg_1", "model": "claude-x", '
        ...                   '"usage": {"input_tokens": 3, "cache_read_input_tokens": 1111, '
        ...                   '"output_tokens": 406}}')
        >>> (r.provider, r.usage.input_tokens, r.usage.cache_read_tokens)
        ('anthropic', 1114, 1111)
    """
    data = load_json(body)
    name = _provider_name(provider) if provider is not None else None
    if operation is not None and name is not None:
        _check_operation(name, operation)
    _reject_error_body(data)
    if name is None:
        name = detect_provider(data)
        if operation is not None:
            _check_operation(name, operation)
    return _read(data, name, operation)


def read_usage(
    usage_raw: Mapping[str, Any] | None,
    *,
    provider: str,
    operation: str | None = None,
    response_model: str | None = None,
) -> Reading:
    """Read a usage object kept from an earlier reading (an event's ``usage_raw``) again.

    What pricing needs after the response is gone (a reprice, or a service
    pricing events sent to it): the buckets, the steps (``usage_parts``) and what
    else the usage object itself states (Anthropic's web searches and tier, the
    Gemini tier). Facts a response holds outside its usage object (OpenAI's
    ``service_tier`` and web search calls, Gemini's grounding queries) are not in
    it, so they come back empty.

    Args:
        usage_raw: the usage object as the provider sent it; None reads as a
            reading whose usage is missing.
        provider: one of :data:`PROVIDERS`.
        operation: the reading's operation; for OpenAI-shaped usage ``chat``
            (``prompt_tokens``) or ``responses`` (``input_tokens``) when omitted.
        response_model: the model the response named, so that a step naming
            that same model counts as the call's own.

    Raises:
        UnknownProviderError: on an unknown provider name.
        ResponseParseError: on an operation the provider does not have, or a
            non-integer count.

    Example:
        >>> r = read_usage({"input_tokens": 220, "output_tokens": 8, "iterations": [
        ...     {"type": "compaction", "input_tokens": 55196, "output_tokens": 125},
        ...     {"type": "message", "input_tokens": 220, "output_tokens": 8}]},
        ...     provider="anthropic")
        >>> (r.usage.input_tokens, len(r.usage_parts))
        (55416, 2)
    """
    name = _provider_name(provider)
    if operation is not None:
        _check_operation(name, operation)
    fields = usage_raw if isinstance(usage_raw, Mapping) else {}
    body: dict[str, Any]
    if name in OPENAI_COMPATIBLE:
        operation = operation or ("chat" if "prompt_tokens" in fields else "responses")
        body = {"usage": usage_raw, "model": response_model}
    elif name in GEMINI_SHAPED:
        body = {"usageMetadata": usage_raw, "modelVersion": response_model}
    elif name == "cohere" and operation not in (None, "chat"):
        body = {"meta": {"billed_units": usage_raw}}
    elif name == "bedrock" and "inputTokens" in fields:
        body = {"usage": usage_raw}
    elif name in ("anthropic", "bedrock"):
        body = {"type": "message", "model": response_model, "usage": usage_raw}
    else:
        body = {"usage": usage_raw}
    return _read(body, name, operation)


def _accumulator(provider: str, operation: str) -> StreamAccumulator:
    if provider in OPENAI_COMPATIBLE:
        if operation == "responses":
            return openai.ResponsesStream(provider)
        if operation == "chat":
            return openai.ChatStream(provider)
        raise ResponseParseError(f"provider {provider!r} does not stream operation {operation!r}")
    if operation != "chat":
        raise ResponseParseError(f"provider {provider!r} does not stream operation {operation!r}")
    if provider == "anthropic":
        return anthropic.MessageStream(provider)
    if provider in GEMINI_SHAPED:
        return google.GenerateStream(provider)
    if provider == "bedrock":
        return bedrock.ConverseStream(provider)
    return cohere.ChatStream(provider)


def _detect_stream(event: Mapping[str, Any]) -> tuple[str, str] | None:
    kind = event.get("type")
    if isinstance(kind, str):
        if kind in _ANTHROPIC_EVENTS:
            message = obj(event, "message")
            bedrock_id = (text(message, "id") or "").startswith("msg_bdrk_")
            return ("bedrock" if bedrock_id else "anthropic", "chat")
        if kind.startswith("response."):
            response = obj(event, "response")
            return (_openai_family(response) if response else "openai", "responses")
        if kind in _COHERE_EVENTS:
            return ("cohere", "chat")
    if event.get("object") == "chat.completion.chunk" or "choices" in event:
        return (_openai_family(event), "chat")
    if "usageMetadata" in event or "usage_metadata" in event or "candidates" in event:
        return ("google", "chat")
    if len(event) == 1 and next(iter(event)) in _BEDROCK_EVENTS:
        return ("bedrock", "chat")
    return None


def _stream_operation(provider: str, event: Mapping[str, Any]) -> str:
    if provider in OPENAI_COMPATIBLE:
        kind = event.get("type")
        return "responses" if isinstance(kind, str) and kind.startswith("response.") else "chat"
    return "chat"


def read_stream_events(
    events: Iterable[Mapping[str, Any]],
    *,
    provider: str,
    operation: str | None = None,
) -> Reading:
    """Fold already-parsed stream events (e.g. SDK chunks' ``model_dump()``) into a reading.

    The events are consumed once, in order, with constant memory, so a capture
    hook can pass a generator fed from a background thread.

    Args:
        events: the stream's JSON events as dicts, in order.
        provider: one of :data:`PROVIDERS`.
        operation: ``chat`` or ``responses``; inferred from the first event when omitted.

    Raises:
        UnknownProviderError: on an unknown provider name.
        ResponseParseError: on an operation the provider cannot stream, or a
            non-integer count.

    Example:
        >>> r = read_stream_events([
        ...     {"type": "message_start", "message": {"id": "msg_1", "usage":
        ...         {"input_tokens": 11, "output_tokens": 1}}},
        ...     {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
        ...      "usage": {"output_tokens": 6}},
        ... ], provider="anthropic")
        >>> (r.usage.input_tokens, r.usage.output_tokens, r.stream)
        (11, 6, True)
    """
    name = _provider_name(provider)
    iterator = iter(events)
    if operation is None:
        first = next(iterator, None)
        if first is None:
            operation = "chat"
        else:
            operation = _stream_operation(name, first)
            iterator = itertools.chain((first,), iterator)
    accumulator = _accumulator(name, _check_operation(name, operation))
    feed = accumulator.feed
    for event in iterator:
        feed(event)
    return accumulator.result()


def read_stream(
    transcript: str | bytes,
    *,
    provider: str | None = None,
    operation: str | None = None,
) -> Reading:
    """Read the usage of a whole saved stream: SSE text, NDJSON, or Bedrock's binary event stream.

    Args:
        transcript: the stream body as received (str or bytes).
        provider: one of :data:`PROVIDERS`; inferred from the events when omitted.
        operation: ``chat`` or ``responses``; inferred when omitted.

    Raises:
        UnknownProviderError: on an unknown provider name.
        ResponseParseError: on undecodable text, a non-JSON event, a bad CRC or a
            truncated binary frame, or events of no known provider.

    Example:
        >>> r = read_stream('data: {"object": "chat.completion.chunk", "id": "c1", '
        ...                 '"choices": [], "usage": {"prompt_tokens": 5, '
        ...                 '"completion_tokens": 2}}\\n\\ndata: [DONE]\\n\\n')
        >>> (r.provider, r.usage.total_tokens, r.usage_source)
        ('openai', 7, 'provider')
    """
    name = _provider_name(provider) if provider is not None else None
    events: list[Mapping[str, Any]]
    if isinstance(transcript, (bytes, bytearray, memoryview)):
        raw = bytes(transcript)
        if looks_like_event_stream(raw):
            events = list(bedrock.event_stream_events(raw))
            return read_stream_events(events, provider=name or "bedrock", operation=operation)
        if name == "bedrock" and raw:
            # Named as Bedrock but not a valid frame: say so, rather than as bad text.
            list(bedrock.event_stream_events(raw))
        try:
            transcript = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ResponseParseError(f"stream transcript is not UTF-8 text: {exc}") from None
    if not isinstance(transcript, str):
        raise ResponseParseError(
            f"stream transcript must be str or bytes, got {type(transcript).__name__}"
        )
    events = list(transcript_events(transcript))
    if name is None:
        for event in events:
            found = _detect_stream(event)
            if found is not None:
                name = found[0]
                operation = operation or found[1]
                break
        else:
            raise ResponseParseError(
                "stream transcript has no event of a known provider"
                if events
                else "stream transcript has no events"
            )
    return read_stream_events(events, provider=name, operation=operation)
