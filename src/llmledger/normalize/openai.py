"""OpenAI-shaped bodies: Chat Completions, Responses, Embeddings, Images, Audio.

The same reader serves every OpenAI-compatible API (OpenRouter and other
gateways, Mistral, DeepSeek, ...); only the provider label differs.

Inclusivity (OpenAI documents totals that include their parts):

* ``prompt_tokens`` / ``input_tokens`` include ``cached_tokens``,
  ``cache_write_tokens`` (gateways), ``audio_tokens`` and ``image_tokens``.
* ``completion_tokens`` / ``output_tokens`` include ``reasoning_tokens`` and
  ``audio_tokens``.

So the canonical buckets are the provider's fields, copied. Mistral puts
``cached_tokens`` either under ``prompt_tokens_details`` or at the top of
``usage``; DeepSeek reports ``prompt_cache_hit_tokens`` (a part of
``prompt_tokens``). Gateways that state a price (OpenRouter ``usage.cost``)
fill ``Reading.reported_cost``; with bring-your-own-key the provider's own
charge (``cost_details.upstream_inference_cost``) is billed on top of
OpenRouter's fee, so the two are added.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from llmledger.core.usage import Usage
from llmledger.normalize._common import (
    count,
    count_first,
    fee_counts,
    finish,
    has_any,
    obj,
    text,
    to_decimal,
)
from llmledger.normalize._tiers import read_tier
from llmledger.normalize.base import Reading

__all__ = [
    "ChatStream",
    "ResponsesStream",
    "chat_usage",
    "gateway_cost",
    "openai_style_usage",
    "read_audio",
    "read_chat",
    "read_embeddings",
    "read_images",
    "read_responses",
    "responses_usage",
]


def chat_usage(usage: Mapping[str, Any]) -> tuple[Usage, dict[str, int]]:
    """Canonical buckets (and bucket-less extras) of a Chat Completions ``usage`` object.

    Example:
        >>> chat_usage({"prompt_tokens": 10, "completion_tokens": 5,
        ...             "prompt_tokens_details": {"cached_tokens": 8}})[0].cache_read_tokens
        8
    """
    prompt = obj(usage, "prompt_tokens_details")
    completion = obj(usage, "completion_tokens_details")
    if has_any(prompt, "cached_tokens"):
        cache_read = count(prompt, "cached_tokens", where="usage.prompt_tokens_details")
    else:
        cache_read = count_first(usage, "cached_tokens", "prompt_cache_hit_tokens")
    if has_any(prompt, "cache_write_tokens"):
        cache_write = count(prompt, "cache_write_tokens", where="usage.prompt_tokens_details")
    else:
        cache_write = count(usage, "cache_write_tokens")
    extra: dict[str, int] = {}
    output_images = count(completion, "image_tokens", where="usage.completion_tokens_details")
    if output_images:
        extra["output_image_tokens"] = output_images
    return (
        Usage(
            input_tokens=count(usage, "prompt_tokens"),
            output_tokens=count(usage, "completion_tokens"),
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            input_audio_tokens=count(prompt, "audio_tokens", where="usage.prompt_tokens_details"),
            input_image_tokens=count(prompt, "image_tokens", where="usage.prompt_tokens_details"),
            reasoning_tokens=count(
                completion, "reasoning_tokens", where="usage.completion_tokens_details"
            ),
            output_audio_tokens=count(
                completion, "audio_tokens", where="usage.completion_tokens_details"
            ),
        ),
        extra,
    )


def openai_style_usage(raw: Any) -> Usage:
    """Usage in the Chat Completions shape as frameworks pass it on (LiteLLM, LangChain).

    ``raw`` is a ``usage`` mapping or an SDK object with ``model_dump()``. Read as
    :func:`chat_usage` reads a provider's, plus what LiteLLM adds to the shape:
    ``cache_read_input_tokens`` (a part of ``prompt_tokens``), a cache write
    (``cache_creation_input_tokens``) added to ``prompt_tokens`` when the total
    leaves it out, and Anthropic's cache writes by lifetime
    (``prompt_tokens_details.cache_creation_token_details``).

    Raises:
        ResponseParseError: on a count that is not an integer.

    Example:
        >>> usage = openai_style_usage({"prompt_tokens": 100, "completion_tokens": 9,
        ...     "prompt_tokens_details": {"cached_tokens": 60}})
        >>> usage.input_tokens, usage.cache_read_tokens, usage.output_tokens
        (100, 60, 9)
        >>> openai_style_usage({"prompt_tokens": 10, "completion_tokens": 1,
        ...     "cache_creation_input_tokens": 90}).input_tokens
        100
    """
    if not isinstance(raw, Mapping):
        dump = getattr(raw, "model_dump", None)
        raw = dump() if callable(dump) else {}
    usage, _ = chat_usage(raw)
    details = obj(raw, "prompt_tokens_details")
    cache_read = usage.cache_read_tokens or count(raw, "cache_read_input_tokens")
    cache_write = (
        usage.cache_write_tokens
        or count(raw, "cache_creation_input_tokens")
        or count(details, "cache_creation_tokens", where="usage.prompt_tokens_details")
    )
    input_tokens = usage.input_tokens
    if input_tokens < cache_read + cache_write:
        input_tokens += cache_write
    split = obj(details, "cache_creation_token_details")
    where = "usage.prompt_tokens_details.cache_creation_token_details"
    return replace(
        usage,
        input_tokens=input_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_5m_tokens=count(split, "ephemeral_5m_input_tokens", where=where),
        cache_write_1h_tokens=count(split, "ephemeral_1h_input_tokens", where=where),
    )


def responses_usage(usage: Mapping[str, Any]) -> Usage:
    """Canonical buckets of a Responses API ``usage`` object (also Images, Audio).

    Example:
        >>> responses_usage({"input_tokens": 13, "output_tokens": 77,
        ...                  "output_tokens_details": {"reasoning_tokens": 64}}).reasoning_tokens
        64
    """
    details_in = obj(usage, "input_tokens_details") or obj(usage, "input_token_details")
    details_out = obj(usage, "output_tokens_details") or obj(usage, "output_token_details")
    return Usage(
        input_tokens=count(usage, "input_tokens"),
        output_tokens=count(usage, "output_tokens"),
        cache_read_tokens=count(details_in, "cached_tokens", where="usage.input_tokens_details"),
        cache_write_tokens=count(
            details_in, "cache_write_tokens", where="usage.input_tokens_details"
        ),
        input_audio_tokens=count(details_in, "audio_tokens", where="usage.input_tokens_details"),
        input_image_tokens=count(details_in, "image_tokens", where="usage.input_tokens_details"),
        reasoning_tokens=count(
            details_out, "reasoning_tokens", where="usage.output_tokens_details"
        ),
        output_audio_tokens=count(details_out, "audio_tokens", where="usage.output_tokens_details"),
    )


def gateway_cost(usage: Mapping[str, Any]) -> Decimal | None:
    """The cost a gateway reported in ``usage`` (OpenRouter), or None.

    Example:
        >>> gateway_cost({"cost": Decimal("0.00353025"), "is_byok": False})
        Decimal('0.00353025')
    """
    cost = to_decimal(usage.get("cost"), "usage.cost")
    if cost is None:
        return None
    if usage.get("is_byok") is True:
        upstream = to_decimal(
            obj(usage, "cost_details").get("upstream_inference_cost"),
            "usage.cost_details.upstream_inference_cost",
        )
        if upstream is not None:
            return cost + upstream
    return cost


def _reading(
    provider: str,
    operation: str,
    usage_raw: Any,
    usage: Usage,
    *,
    extra: dict[str, int] | None = None,
    stream: bool = False,
) -> Reading:
    usage_map = usage_raw if isinstance(usage_raw, Mapping) else None
    return Reading(
        provider=provider,
        operation=operation,
        usage=usage,
        usage_raw=usage_raw,
        usage_source="provider" if usage_map is not None else "missing",
        stream=stream,
        reported_cost=gateway_cost(usage_map) if usage_map is not None else None,
        extra_units=extra or {},
    )


def _set_tier(reading: Reading, body: Mapping[str, Any]) -> None:
    reading.service_tier, unknown = read_tier(body.get("service_tier"), "openai")
    reading.warnings += unknown


def _web_search_calls(body: Mapping[str, Any]) -> int:
    # OpenAI bills web search per tool call, and each call is one
    # web_search_call output item. Items are counted whatever their status:
    # the response does not say whether a failed call is billed.
    output = body.get("output")
    if not isinstance(output, list):
        return 0
    return sum(
        1 for item in output if isinstance(item, Mapping) and item.get("type") == "web_search_call"
    )


def _first_choice_finish(body: Mapping[str, Any]) -> str | None:
    choices = body.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, Mapping) and isinstance(choice.get("finish_reason"), str):
                return str(choice["finish_reason"])
    return None


def read_chat(body: Mapping[str, Any], provider: str) -> Reading:
    """Read a Chat Completions body (OpenAI or any OpenAI-compatible provider).

    Example:
        >>> r = read_chat({"id": "c1", "model": "m", "usage": {"prompt_tokens": 3,
        ...                "completion_tokens": 2}}, "openai")
        >>> (r.usage.input_tokens, r.usage.output_tokens, r.request_id)
        (3, 2, 'c1')
    """
    usage_raw = body.get("usage")
    usage, extra = chat_usage(usage_raw) if isinstance(usage_raw, Mapping) else (Usage(), {})
    reading = _reading(provider, "chat", usage_raw, usage, extra=extra)
    reading.response_model = text(body, "model")
    reading.request_id = text(body, "id")
    reading.finish_reason = _first_choice_finish(body)
    _set_tier(reading, body)
    return finish(reading)


def _responses_finish(response: Mapping[str, Any]) -> str | None:
    reason = text(obj(response, "incomplete_details"), "reason")
    return reason or text(response, "status")


def read_responses(body: Mapping[str, Any], provider: str, *, stream: bool = False) -> Reading:
    """Read a Responses API body (the ``response`` object).

    Example:
        >>> r = read_responses({"object": "response", "status": "completed",
        ...                     "usage": {"input_tokens": 1, "output_tokens": 2}}, "openai")
        >>> r.finish_reason
        'completed'
    """
    usage_raw = body.get("usage")
    usage = responses_usage(usage_raw) if isinstance(usage_raw, Mapping) else Usage()
    reading = _reading(provider, "responses", usage_raw, usage, stream=stream)
    reading.response_model = text(body, "model")
    reading.request_id = text(body, "id")
    reading.finish_reason = _responses_finish(body)
    _set_tier(reading, body)
    reading.fee_counts = fee_counts(web_searches=_web_search_calls(body))
    return finish(reading)


def read_embeddings(body: Mapping[str, Any], provider: str) -> Reading:
    """Read an Embeddings body: only input tokens are billed.

    Example:
        >>> read_embeddings({"object": "list", "usage": {"prompt_tokens": 4,
        ...                  "total_tokens": 4}}, "openai").usage.input_tokens
        4
    """
    usage_raw = body.get("usage")
    usage = (
        Usage(input_tokens=count_first(usage_raw, "prompt_tokens", "input_tokens"))
        if isinstance(usage_raw, Mapping)
        else Usage()
    )
    reading = _reading(provider, "embeddings", usage_raw, usage)
    reading.response_model = text(body, "model")
    reading.request_id = text(body, "id")
    return finish(reading)


def read_images(body: Mapping[str, Any], provider: str) -> Reading:
    """Read an Images body (gpt-image-1 reports Responses-style token usage).

    Example:
        >>> r = read_images({"data": [], "usage": {"input_tokens": 50, "output_tokens": 4160,
        ...                  "input_tokens_details": {"image_tokens": 40}}}, "openai")
        >>> r.usage.input_image_tokens
        40
    """
    usage_raw = body.get("usage")
    usage = responses_usage(usage_raw) if isinstance(usage_raw, Mapping) else Usage()
    reading = _reading(provider, "images", usage_raw, usage)
    if isinstance(usage_raw, Mapping):
        # Image output has no canonical bucket; output_tokens already holds it.
        images = count(
            obj(usage_raw, "output_tokens_details"),
            "image_tokens",
            where="usage.output_tokens_details",
        )
        if images:
            reading.extra_units["output_image_tokens"] = images
    reading.response_model = text(body, "model")
    return finish(reading)


def read_audio(body: Mapping[str, Any], provider: str) -> Reading:
    """Read a transcription body whose usage is in tokens (``usage.type == "tokens"``).

    A usage in seconds (``"type": "duration"``) has no token buckets: the
    reading keeps it raw, marks the usage missing and says why.

    Example:
        >>> read_audio({"text": "hi", "usage": {"type": "tokens", "input_tokens": 59,
        ...             "input_token_details": {"audio_tokens": 59}, "output_tokens": 11}},
        ...            "openai").usage.input_audio_tokens
        59
    """
    usage_raw = body.get("usage")
    if isinstance(usage_raw, Mapping) and usage_raw.get("type") == "duration":
        reading = _reading(provider, "audio", usage_raw, Usage())
        reading.usage_source = "missing"
        reading.warnings.append("usage is a duration in seconds, not tokens")
        return reading
    usage = responses_usage(usage_raw) if isinstance(usage_raw, Mapping) else Usage()
    return finish(_reading(provider, "audio", usage_raw, usage))


class ChatStream:
    """Accumulates Chat Completions chunks (``chat.completion.chunk``).

    Usage arrives only in the final chunk (empty ``choices``) and only when the
    request set ``stream_options.include_usage``; some gateways repeat a
    cumulative usage on every chunk. Either way the last non-null usage wins.
    """

    __slots__ = ("_finish", "_id", "_model", "_provider", "_tier", "_usage")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._usage: Any = None
        self._id: str | None = None
        self._model: str | None = None
        self._tier: str | None = None
        self._finish: str | None = None

    def feed(self, event: Mapping[str, Any]) -> None:
        """Take one chunk."""
        usage = event.get("usage")
        if usage is not None:
            self._usage = usage
        if self._id is None:
            self._id = text(event, "id")
            self._model = text(event, "model")
        tier = event.get("service_tier")
        if tier is not None:
            self._tier = tier
        choices = event.get("choices")
        if choices:
            for choice in choices:
                reason = choice.get("finish_reason") if isinstance(choice, Mapping) else None
                if reason is not None:
                    self._finish = reason

    def result(self) -> Reading:
        """The reading of the stream so far."""
        reading = read_chat(
            {
                "id": self._id,
                "model": self._model,
                "service_tier": self._tier,
                "usage": self._usage,
                "choices": [{"finish_reason": self._finish}],
            },
            self._provider,
        )
        reading.stream = True
        return reading


#: The Responses API stream events that carry the whole response (usage in the last).
RESPONSE_EVENTS = frozenset(
    {
        "response.created",
        "response.in_progress",
        "response.queued",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)


class ResponsesStream:
    """Accumulates Responses API stream events.

    Every lifecycle event carries the whole ``response`` object; usage is null
    until the terminal one (``response.completed``, or ``response.incomplete`` /
    ``response.failed``, which also carry usage), so the latest response object
    is the truth.
    """

    __slots__ = ("_provider", "_response", "_usage")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._response: Mapping[str, Any] | None = None
        self._usage: Any = None

    def feed(self, event: Mapping[str, Any]) -> None:
        """Take one event."""
        if event.get("type") in RESPONSE_EVENTS:
            response = event.get("response")
            if isinstance(response, Mapping):
                self._response = response
                usage = response.get("usage")
                if usage is not None:
                    self._usage = usage

    def result(self) -> Reading:
        """The reading of the stream so far."""
        response = dict(self._response or {})
        response["usage"] = self._usage
        return read_responses(response, self._provider, stream=True)
