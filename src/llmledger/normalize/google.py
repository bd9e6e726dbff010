"""Gemini API and Vertex AI ``generateContent`` bodies and streams.

Inclusivity (checked against recorded responses, where
``totalTokenCount = prompt + toolUsePrompt + candidates + thoughts``):

* ``promptTokenCount`` includes ``cachedContentTokenCount`` but NOT
  ``toolUsePromptTokenCount``: input = prompt + toolUsePrompt
* ``candidatesTokenCount`` does NOT include ``thoughtsTokenCount``:
  output = candidates + thoughts, reasoning = thoughts
* modality parts come from ``promptTokensDetails`` and
  ``toolUsePromptTokensDetails`` (input; AUDIO and IMAGE) and
  ``candidatesTokensDetails`` (output; AUDIO). Output IMAGE and VIDEO tokens have
  no canonical bucket and are kept in ``Reading.extra_units``.
  ``cacheTokensDetails`` is not added: cached tokens are already inside the
  prompt's modality counts.

Streams send a cumulative ``usageMetadata`` snapshot on every chunk: the last
one is the usage.

The same body shape comes from the Gemini API and from Vertex AI, which bill the
same models at different list prices. A body read as ``google`` is read as
``vertex`` when it carries a field only Vertex AI sends (:data:`VERTEX_FIELDS`,
:data:`VERTEX_USAGE_FIELDS`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from llmledger.core.billing import ServiceTier
from llmledger.core.usage import Usage
from llmledger.normalize._common import count, count_first, fee_counts, finish, obj, text
from llmledger.normalize._tiers import read_tier
from llmledger.normalize.base import Reading

__all__ = [
    "VERTEX_FIELDS",
    "VERTEX_USAGE_FIELDS",
    "GenerateStream",
    "generate_usage",
    "read_generate",
    "served_by",
    "web_searches",
    "wire_shape",
]

#: Top-level fields of a ``generateContent`` body that only Vertex AI sends (the
#: recorded Vertex responses carry ``createTime``; Gemini API ones never do).
VERTEX_FIELDS: tuple[str, ...] = ("createTime",)
#: ``usageMetadata`` fields that only Vertex AI sends: the capacity the call ran on.
VERTEX_USAGE_FIELDS: tuple[str, ...] = ("trafficType",)


def _by_modality(details: object, where: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    if isinstance(details, list):
        for item in details:
            if isinstance(item, Mapping):
                # google-genai dumps an enum here unless dumped in JSON mode.
                raw = item.get("modality", "")
                modality = str(getattr(raw, "value", raw)).upper()
                totals[modality] = totals.get(modality, 0) + count_first(
                    item, "tokenCount", "token_count", where=where
                )
    return totals


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _camel_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {_camel(str(k)): _camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel_keys(v) for v in value]
    return value


def wire_shape(event: Mapping[str, Any]) -> Mapping[str, Any]:
    """The REST (camelCase) view of a chunk, also when it is a google-genai ``model_dump()``.

    The SDK's pydantic models dump snake_case keys (``usage_metadata``); only the
    few fields read here are converted, so a wire-shaped chunk costs nothing.

    Example:
        >>> wire_shape({"usage_metadata": {"prompt_token_count": 3}})["usageMetadata"]
        {'promptTokenCount': 3}
    """
    if "usage_metadata" not in event and "response_id" not in event:
        return event
    view: dict[str, Any] = {
        "usageMetadata": _camel_keys(event.get("usage_metadata")),
        "responseId": event.get("response_id"),
        "modelVersion": event.get("model_version"),
        "createTime": event.get("create_time"),
    }
    candidates = event.get("candidates")
    if isinstance(candidates, list):
        view["candidates"] = [
            {
                "index": c.get("index"),
                "finishReason": getattr(c.get("finish_reason"), "value", c.get("finish_reason")),
                "groundingMetadata": {
                    "webSearchQueries": obj(c, "grounding_metadata").get("web_search_queries")
                },
            }
            for c in candidates
            if isinstance(c, Mapping)
        ]
    return view


def generate_usage(usage: Mapping[str, Any]) -> tuple[Usage, dict[str, int]]:
    """Canonical buckets (and bucket-less extras) of a Gemini ``usageMetadata`` object.

    Example:
        >>> u, _ = generate_usage({"promptTokenCount": 15, "toolUsePromptTokenCount": 429,
        ...                        "candidatesTokenCount": 75, "thoughtsTokenCount": 343})
        >>> (u.input_tokens, u.output_tokens, u.tool_use_prompt_tokens)
        (444, 418, 429)
    """
    prompt = count(usage, "promptTokenCount", where="usageMetadata")
    tool_use = count(usage, "toolUsePromptTokenCount", where="usageMetadata")
    # The Live API names the output count responseTokenCount.
    candidates = count_first(
        usage, "candidatesTokenCount", "responseTokenCount", where="usageMetadata"
    )
    thoughts = count(usage, "thoughtsTokenCount", where="usageMetadata")
    inputs = _by_modality(usage.get("promptTokensDetails"), "usageMetadata.promptTokensDetails")
    for modality, tokens in _by_modality(
        usage.get("toolUsePromptTokensDetails"), "usageMetadata.toolUsePromptTokensDetails"
    ).items():
        inputs[modality] = inputs.get(modality, 0) + tokens
    outputs = _by_modality(
        usage.get("candidatesTokensDetails") or usage.get("responseTokensDetails"),
        "usageMetadata.candidatesTokensDetails",
    )
    extra: dict[str, int] = {}
    if inputs.get("VIDEO"):
        extra["input_video_tokens"] = inputs["VIDEO"]
    if outputs.get("IMAGE"):
        extra["output_image_tokens"] = outputs["IMAGE"]
    if outputs.get("VIDEO"):
        extra["output_video_tokens"] = outputs["VIDEO"]
    return (
        Usage(
            input_tokens=prompt + tool_use,
            output_tokens=candidates + thoughts,
            cache_read_tokens=count(usage, "cachedContentTokenCount", where="usageMetadata"),
            input_audio_tokens=inputs.get("AUDIO", 0),
            input_image_tokens=inputs.get("IMAGE", 0),
            reasoning_tokens=thoughts,
            output_audio_tokens=outputs.get("AUDIO", 0),
            tool_use_prompt_tokens=tool_use,
        ),
        extra,
    )


def served_by(provider: str, body: Mapping[str, Any]) -> str:
    """``vertex`` for a body read as ``google`` that only Vertex AI would send, else ``provider``.

    Example:
        >>> served_by("google", {"createTime": "2025-12-31T15:46:13Z", "usageMetadata": {}})
        'vertex'
        >>> served_by("google", {"usageMetadata": {"trafficType": "ON_DEMAND"}})
        'vertex'
        >>> served_by("google", {"usageMetadata": {"promptTokenCount": 3}})
        'google'
    """
    if provider != "google":
        return provider
    usage = body.get("usageMetadata")
    # google-genai dumps absent fields as None: a field counts only with a value.
    if any(body.get(name) is not None for name in VERTEX_FIELDS) or (
        isinstance(usage, Mapping)
        and any(usage.get(name) is not None for name in VERTEX_USAGE_FIELDS)
    ):
        return "vertex"
    return provider


def _finish_reason(body: Mapping[str, Any]) -> str | None:
    candidates = body.get("candidates")
    if isinstance(candidates, list):
        for candidate in candidates:
            reason = text(candidate, "finishReason") if isinstance(candidate, Mapping) else None
            if reason:
                return reason
    return text(obj(body, "promptFeedback"), "blockReason")


def _tier(usage: Mapping[str, Any]) -> tuple[ServiceTier | None, list[str]]:
    # Vertex AI names the capacity a call ran on in trafficType; the Gemini API
    # in serviceTier. A response with both is read by the more specific one.
    traffic, unknown = read_tier(usage.get("trafficType"), "vertex")
    if traffic is not None or unknown:
        return traffic, unknown
    return read_tier(usage.get("serviceTier"), "gemini")


def _queries_by_candidate(body: Mapping[str, Any]) -> dict[object, int]:
    candidates = body.get("candidates")
    found: dict[object, int] = {}
    if isinstance(candidates, list):
        for position, candidate in enumerate(candidates):
            if isinstance(candidate, Mapping):
                queries = obj(candidate, "groundingMetadata").get("webSearchQueries")
                if isinstance(queries, list):
                    index = candidate.get("index")
                    found[position if index is None else index] = len(queries)
    return found


def web_searches(body: Mapping[str, Any]) -> int:
    """Search queries grounding ran for a response, over all its candidates.

    Example:
        >>> web_searches({"candidates": [{"groundingMetadata":
        ...     {"webSearchQueries": ["weather in San Francisco today"]}}]})
        1
    """
    return sum(_queries_by_candidate(body).values())


_GEMINI_GENERATION = re.compile(r"gemini-(\d+)")


def grounding_uses(model: str | None, queries: int) -> int:
    """The billed uses of Grounding with Google Search for a response with ``queries``.

    Gemini 3 models bill each search query; earlier models bill a grounded prompt
    (a request that ran at least one query) once, however many queries it ran
    (https://ai.google.dev/gemini-api/docs/pricing, "Grounding with Google Search").
    An unknown model is billed as the earlier ones.

    Example:
        >>> grounding_uses("gemini-2.5-pro", 3), grounding_uses("gemini-3-pro-preview", 3)
        (1, 3)
        >>> grounding_uses("gemini-2.5-flash", 0)
        0
    """
    found = _GEMINI_GENERATION.search((model or "").lower())
    if found is not None and int(found.group(1)) >= 3:
        return queries
    return min(queries, 1)


def read_generate(body: Mapping[str, Any], provider: str, *, stream: bool = False) -> Reading:
    """Read a ``generateContent`` body (Gemini API or Vertex AI).

    A body given as ``google`` that shows Vertex AI (:func:`served_by`) reads as
    ``vertex``.

    Example:
        >>> r = read_generate({"responseId": "r1", "modelVersion": "gemini-2.5-flash",
        ...                    "usageMetadata": {"promptTokenCount": 9,
        ...                                      "candidatesTokenCount": 9,
        ...                                      "thoughtsTokenCount": 34}}, "google")
        >>> (r.usage.output_tokens, r.usage.reasoning_tokens, r.request_id)
        (43, 34, 'r1')
    """
    body = wire_shape(body)
    usage_raw = body.get("usageMetadata")
    if isinstance(usage_raw, Mapping):
        usage, extra = generate_usage(usage_raw)
    else:
        usage, extra = Usage(), {}
    reading = Reading(
        provider=served_by(provider, body),
        operation="chat",
        usage=usage,
        usage_raw=usage_raw,
        usage_source="provider" if isinstance(usage_raw, Mapping) else "missing",
        response_model=text(body, "modelVersion"),
        request_id=text(body, "responseId"),
        finish_reason=_finish_reason(body),
        stream=stream,
        extra_units=extra,
    )
    if isinstance(usage_raw, Mapping):
        reading.service_tier, reading.warnings = _tier(usage_raw)
    reading.fee_counts = fee_counts(
        web_searches=grounding_uses(reading.response_model, web_searches(body)),
        output_image_tokens=extra.get("output_image_tokens", 0),
    )
    return finish(reading)


class GenerateStream:
    """Accumulates ``streamGenerateContent`` chunks: the last usage snapshot wins.

    Grounding queries come with a candidate in some chunk (usually the last);
    the last list seen for each candidate counts.
    """

    __slots__ = ("_created", "_finish", "_id", "_model", "_provider", "_searches", "_usage")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._usage: Any = None
        self._id: str | None = None
        self._model: str | None = None
        self._created: str | None = None
        self._finish: str | None = None
        self._searches: dict[object, int] = {}

    def feed(self, event: Mapping[str, Any]) -> None:
        """Take one chunk (a ``GenerateContentResponse``, wire JSON or SDK dump)."""
        event = wire_shape(event)
        usage = event.get("usageMetadata")
        if usage is not None:
            self._usage = usage
        if self._id is None:
            self._id = text(event, "responseId")
        if self._model is None:
            self._model = text(event, "modelVersion")
        if self._created is None:
            self._created = text(event, "createTime")
        candidates = event.get("candidates")
        if candidates:
            reason = _finish_reason(event)
            if reason:
                self._finish = reason
            for candidate in candidates:
                # Most chunks carry no grounding: count only when one does.
                if isinstance(candidate, Mapping) and candidate.get("groundingMetadata"):
                    self._searches.update(_queries_by_candidate(event))
                    break

    def result(self) -> Reading:
        """The reading of the stream so far."""
        body: dict[str, Any] = {
            "usageMetadata": self._usage,
            "responseId": self._id,
            "modelVersion": self._model,
            "createTime": self._created,
        }
        if self._finish:
            body["candidates"] = [{"finishReason": self._finish}]
        reading = read_generate(body, self._provider, stream=True)
        reading.fee_counts = fee_counts(
            web_searches=grounding_uses(self._model, sum(self._searches.values())),
            output_image_tokens=reading.fee_counts.get("output_image_tokens", 0),
        )
        return reading
