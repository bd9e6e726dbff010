"""Capture of the ``openai`` SDK: chat completions (``create``, ``parse``, ``stream``),
the Responses API and embeddings, on OpenAI and on OpenAI-compatible servers.

The event's provider comes from the client's host (``openrouter.ai`` is
``openrouter``, ``*.openai.azure.com`` is ``azure``, …; any other host is read
as ``openai``), so a gateway's calls are priced as that gateway's.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from llmledger.capture._core import Call, CaptureOptions
from llmledger.capture._patch import Patch
from llmledger.capture._stainless import (
    StainlessSDK,
    as_dict,
    field_of,
    optional,
    patches,
    raw_response_types,
    usage_as_dict,
)
from llmledger.capture._streams import StreamSpec
from llmledger.core.providers import OPENAI_COMPATIBLE_HOSTS
from llmledger.normalize.openai import RESPONSE_EVENTS

__all__ = ["available", "body_text", "make_patches", "provider_for_host", "sdk"]


def provider_for_host(host: str, port: int | None = None) -> tuple[str, str]:
    """The event's provider and the normaliser's reader for an OpenAI-compatible host.

    Example:
        >>> provider_for_host("openrouter.ai")
        ('openrouter', 'openrouter')
        >>> provider_for_host("generativelanguage.googleapis.com")
        ('google', 'openai')
    """
    host = host.lower()
    if host in OPENAI_COMPATIBLE_HOSTS:
        name = OPENAI_COMPATIBLE_HOSTS[host]
        return name, name
    if host.endswith(".openai.azure.com") or host.endswith(".services.ai.azure.com"):
        return "azure", "azure"
    if host == "generativelanguage.googleapis.com":
        return "google", "openai"  # Gemini's OpenAI-compatible endpoint: Google prices
    if port == 11434:
        return "ollama", "ollama"
    return "openai", "openai"


def _resolve(client: Any, call: Call) -> None:
    url = getattr(client, "base_url", None)
    host = getattr(url, "host", None)
    if isinstance(host, str) and host:
        call.provider, call.reader = provider_for_host(host, getattr(url, "port", None))


# -- reading chunks and bodies ---------------------------------------------------------


def _chat_has_output(event: Mapping[str, Any]) -> bool:
    for choice in event.get("choices") or ():
        delta = choice.get("delta") or {}
        if (
            delta.get("content")
            or delta.get("tool_calls")
            or delta.get("refusal")
            or delta.get("audio")
        ):
            return True
    return False


def _chat_stream_text(events: Sequence[Mapping[str, Any]]) -> str | None:
    parts = [
        (choice.get("delta") or {}).get("content") or ""
        for event in events
        for choice in event.get("choices") or ()
        if choice.get("index", 0) == 0
    ]
    return "".join(parts) or None


def _responses_has_output(event: Mapping[str, Any]) -> bool:
    kind = event.get("type")
    return isinstance(kind, str) and kind.endswith(".delta")


def _responses_stream_text(events: Sequence[Mapping[str, Any]]) -> str | None:
    parts = [
        str(event.get("delta") or "")
        for event in events
        if event.get("type") == "response.output_text.delta"
    ]
    return "".join(parts) or None


def body_text(operation: str, body: Mapping[str, Any]) -> str | None:
    """The response text of a chat or Responses API body (first choice).

    Example:
        >>> body_text("chat", {"choices": [{"index": 0, "message": {"content": "Hi"}}]})
        'Hi'
    """
    if operation == "chat":
        for choice in body.get("choices") or ():
            content = (choice.get("message") or {}).get("content")
            if isinstance(content, str):
                return content
        return None
    if operation == "responses":
        texts = [
            part.get("text", "")
            for item in body.get("output") or ()
            if isinstance(item, Mapping)
            for part in item.get("content") or ()
            if isinstance(part, Mapping) and part.get("type") == "output_text"
        ]
        return "".join(texts) or None
    return None


def _chat_keep(chunk: Any) -> bool:
    # What ChatStream reads past the first chunks: usage and finish reasons.
    if getattr(chunk, "usage", None) is not None:
        return True
    # A loop, not any() over a generator: this runs on the caller's thread for every chunk.
    for choice in getattr(chunk, "choices", None) or ():
        if getattr(choice, "finish_reason", None) is not None:
            return True
    return False


def _responses_keep(event: Any) -> bool:
    # The lifecycle events carry the whole response, usage in the last one.
    return getattr(event, "type", None) in RESPONSE_EVENTS


def _request_id(response: Any) -> str | None:
    value = response.headers.get("x-request-id")
    return value if isinstance(value, str) else None


#: The SDK's chunk, chunk choice and delta classes, looked up on first use.
_chunk_classes: list[Any] = []


def _chat_chunk_fields(chunk: Any) -> Mapping[str, Any] | None:
    """What the chat stream reading and ``_chat_has_output`` read of a ``ChatCompletionChunk``.

    The same values the chunk's JSON dump has (the delta's output only as whether
    there is any), without dumping every delta's text.
    Anything unusual (another class, a choice or delta that is not the SDK's) is
    left to the full dump.
    """
    if not _chunk_classes:
        _chunk_classes.extend(
            optional(module, name)
            for module, name in (
                ("openai.types.chat", "ChatCompletionChunk"),
                ("openai.types.chat.chat_completion_chunk", "Choice"),
                ("openai.types.chat.chat_completion_chunk", "ChoiceDelta"),
            )
        )
    chunk_class, choice_class, delta_class = _chunk_classes
    if chunk_class is None or type(chunk) is not chunk_class:
        return None
    choices = getattr(chunk, "choices", None)
    if type(choices) is not list or field_of(chunk, "error") is not None:
        return None
    read = []
    for item in choices:
        delta = getattr(item, "delta", None)
        if (
            type(item) is not choice_class
            or type(delta) is not delta_class
            or getattr(delta, "audio", None) is not None
        ):
            return None
        # The delta's output as flags: ``_chat_has_output`` only tests them and the
        # reading never reads them (tool calls are SDK models, which the journal
        # cannot write as they are, and the text is not kept).
        read.append(
            {
                "finish_reason": getattr(item, "finish_reason", None),
                "delta": {
                    "content": True if getattr(delta, "content", None) else None,
                    "tool_calls": True if getattr(delta, "tool_calls", None) else None,
                    "refusal": True if getattr(delta, "refusal", None) else None,
                    "audio": None,
                },
            }
        )
    usage = getattr(chunk, "usage", None)
    return {
        "id": getattr(chunk, "id", None),
        "model": getattr(chunk, "model", None),
        "service_tier": getattr(chunk, "service_tier", None),
        "usage": usage_as_dict(usage),
        "choices": read,
    }


_STREAMS = {
    "chat": StreamSpec(
        as_dict,
        _chat_has_output,
        _chat_stream_text,
        _request_id,
        _chat_keep,
        _chat_chunk_fields,
    ),
    "responses": StreamSpec(
        as_dict, _responses_has_output, _responses_stream_text, _request_id, _responses_keep
    ),
}


def _is_usage_chunk(chunk: Any) -> bool:
    # The chunk ``include_usage`` adds: no choices, only usage.
    return not getattr(chunk, "choices", True) and getattr(chunk, "usage", None) is not None


def _chat_body(completion: type | None, choice: type | None) -> Any:
    """What the chat reader reads of a ``ChatCompletion``: the same values its JSON dump has.

    Dumping the whole model (every choice's message) costs the caller's thread more
    than the rest of the recording; the reader needs ``id``, ``model``, ``usage``,
    ``service_tier`` and the choices' ``finish_reason``. Anything unusual (another
    class, an ``error`` field, a choice that is not a model) is left to the full dump.
    """

    def read_body(operation: str, response: Any) -> Mapping[str, Any] | None:
        if operation != "chat" or completion is None or type(response) is not completion:
            return None
        choices = getattr(response, "choices", None)
        if type(choices) is not list or field_of(response, "error") is not None:
            return None
        ends = []
        for item in choices:
            if type(item) is not choice:
                return None
            ends.append({"finish_reason": getattr(item, "finish_reason", None)})
        usage = getattr(response, "usage", None)
        return {
            "id": getattr(response, "id", None),
            "model": getattr(response, "model", None),
            "service_tier": getattr(response, "service_tier", None),
            "usage": usage_as_dict(usage),
            "choices": ends,
        }

    return read_body


# -- installing --------------------------------------------------------------------------


def available() -> bool:
    """Whether the ``openai`` SDK can be imported."""
    try:
        importlib.import_module("openai")
    except ImportError:
        return False
    return True


def make_patches(options: CaptureOptions) -> list[Patch]:
    """The patches that capture the ``openai`` SDK's calls, with these options."""
    return patches(sdk(), options)


def sdk() -> StainlessSDK:
    """What the shared hook needs to know about the ``openai`` SDK."""
    base = importlib.import_module("openai._base_client")
    streaming = importlib.import_module("openai._streaming")
    raw_types = raw_response_types("openai")
    helpers = [
        optional("openai.lib.streaming.chat", "ChatCompletionStream"),
        optional("openai.lib.streaming.chat", "AsyncChatCompletionStream"),
        optional("openai.lib.streaming.responses", "ResponseStream"),
        optional("openai.lib.streaming.responses", "AsyncResponseStream"),
    ]
    stream_classes: list[tuple[type, Any]] = [
        (streaming.Stream, lambda stream: stream),
        (streaming.AsyncStream, lambda stream: stream),
    ]
    stream_classes += [
        (cls, lambda helper: helper._raw_stream) for cls in helpers if cls is not None
    ]
    return StainlessSDK(
        provider="openai",
        routes={
            "/chat/completions": "chat",
            "/responses": "responses",
            "/embeddings": "embeddings",
        },
        streams=_STREAMS,
        body_text=body_text,
        request_id_header="x-request-id",
        resolve=_resolve,
        hide_usage_chunk=_is_usage_chunk,
        sync_client=base.SyncAPIClient,
        async_client=base.AsyncAPIClient,
        stream_types=(streaming.Stream, streaming.AsyncStream),
        raw_types=raw_types,
        stream_classes=tuple(stream_classes),
        read_body=_chat_body(
            optional("openai.types.chat", "ChatCompletion"),
            optional("openai.types.chat.chat_completion", "Choice"),
        ),
    )
