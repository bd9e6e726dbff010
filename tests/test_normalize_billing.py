"""Billing facts beyond one flat usage: multi-step calls, service tiers and per-use fees.

Recorded responses are read as they are; where a shape has no recording (a tier
no recorded call ran on, a stream of a response recorded whole) the test derives
it from a recorded body, and says which fields it changed. Expected figures are
worked out by hand in the comments.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from llmledger.core.billing import SERVICE_TIERS, ServiceTier, UsagePart
from llmledger.core.usage import Usage
from llmledger.normalize import (
    Reading,
    read_response,
    read_stream,
    read_stream_events,
    read_usage,
)
from llmledger.normalize.sse import transcript_events

RECORDED = Path(__file__).parent / "fixtures" / "recorded"


def _body(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((RECORDED / name).read_text())
    return body


def _events(name: str) -> list[dict[str, Any]]:
    return [dict(event) for event in transcript_events((RECORDED / name).read_text())]


def _message_stream(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The events a Messages stream sends for ``body``, built from its own fields.

    As recorded streams do: ``message_start`` carries the message without
    content and the first step's input counts with 1 output token so far;
    ``message_delta`` carries the final usage (iterations included) and the stop
    reason.
    """
    usage = body["usage"]
    first = (usage.get("iterations") or [usage])[0]
    start_usage = {
        key: first[key]
        for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    }
    start_usage.update(output_tokens=1, service_tier=usage["service_tier"])
    message = {k: v for k, v in body.items() if k not in ("content", "usage", "stop_reason")}
    return [
        {"type": "message_start", "message": {**message, "content": [], "usage": start_usage}},
        {"type": "message_delta", "delta": {"stop_reason": body["stop_reason"]}, "usage": usage},
        {"type": "message_stop"},
    ]


# -- multi-step calls ------------------------------------------------------------------


def test_top_level_counts_alone_leave_the_compaction_step_out() -> None:
    body = _body("anthropic_messages_compaction_end_to_end.json")
    flat = copy.deepcopy(body)
    del flat["usage"]["iterations"]
    # Without iterations only the message step is seen: 220 in / 8 out.
    assert read_response(flat).usage == Usage(input_tokens=220, output_tokens=8)
    # With them the compaction step (55196 / 125) is billed too: 55416 / 133.
    assert read_response(body).usage == Usage(input_tokens=55416, output_tokens=133)


@pytest.mark.parametrize(
    "name",
    ["anthropic_messages_compaction_end_to_end.json", "anthropic_messages_advisor_tool.json"],
)
def test_usage_raw_keeps_every_iteration(name: str) -> None:
    body = _body(name)
    reading = read_response(body)
    assert reading.usage_raw == body["usage"]
    assert len(reading.usage_raw["iterations"]) == len(reading.usage_parts)


def test_streamed_usage_raw_keeps_the_iterations_of_message_delta() -> None:
    reading = read_stream((RECORDED / "anthropic_stream_compaction_cache_read.sse").read_bytes())
    iterations = reading.usage_raw["iterations"]
    assert [step["type"] for step in iterations] == ["compaction", "message"]
    # message_start's 55096 read survives in the compaction iteration, while the
    # merged top level holds message_delta's 0 (the message step's).
    assert iterations[0]["cache_read_input_tokens"] == 55096
    assert reading.usage_raw["cache_read_input_tokens"] == 0


@pytest.mark.parametrize(
    "name",
    [
        "anthropic_messages_compaction_end_to_end.json",
        "anthropic_messages_compaction_cache_write.json",
        "anthropic_messages_advisor_tool.json",
    ],
)
def test_a_stream_reads_as_its_whole_message(name: str) -> None:
    # Derived: the stream these recorded messages would have been sent as.
    body = _body(name)
    whole = read_response(body)
    streamed = read_stream_events(_message_stream(body), provider="anthropic")
    assert (streamed.usage, streamed.usage_parts, streamed.warnings) == (
        whole.usage,
        whole.usage_parts,
        [],
    )
    assert streamed.stream and not whole.stream


def test_a_stream_without_iterations_that_drops_a_count_is_flagged() -> None:
    # Derived from the recorded compaction stream with message_delta's
    # iterations removed: its top level (181 in, 0 read, 8 out) no longer covers
    # message_start's 55096 cache read. The counts are kept as sent, and flagged.
    events = _events("anthropic_stream_compaction_cache_read.sse")
    for event in events:
        if event["type"] == "message_delta":
            event["usage"] = {k: v for k, v in event["usage"].items() if k != "iterations"}
    reading = read_stream_events(events, provider="anthropic")
    assert reading.usage == Usage(input_tokens=181, output_tokens=8)
    assert reading.usage_parts == ()
    assert reading.warnings == [
        "the stream reported cache_read_input_tokens 55096 that the final usage does not cover (0)"
    ]


def test_top_level_counts_beyond_the_iterations_are_flagged() -> None:
    # Derived: the advisor call's top-level input raised from 2390 to 9999, more
    # than all three iterations hold (1128 + 2518 + 1262 = 4908).
    body = _body("anthropic_messages_advisor_tool.json")
    body["usage"]["input_tokens"] = 9999
    reading = read_response(body)
    assert reading.usage.input_tokens == 4908
    assert reading.warnings == [
        "usage.input_tokens (9999) exceeds the sum of usage.iterations (4908)"
    ]


def test_an_iteration_naming_the_calls_own_model_is_the_calls_part() -> None:
    # Derived: the advisor step's model set to the response's own model.
    body = _body("anthropic_messages_advisor_tool.json")
    body["usage"]["iterations"][1]["model"] = body["model"]
    assert [part.model for part in read_response(body).usage_parts] == [None, None, None]


def test_a_bad_count_inside_an_iteration_names_where_it_is() -> None:
    from llmledger.core.errors import ResponseParseError

    body = _body("anthropic_messages_advisor_tool.json")
    body["usage"]["iterations"][2]["output_tokens"] = "eleven"
    with pytest.raises(ResponseParseError, match=r"usage\.iterations\[2\]\.output_tokens"):
        read_response(body)


def test_parts_add_up_to_the_usage_on_every_recorded_response() -> None:
    for path in sorted(RECORDED.iterdir()):
        if path.suffix == ".md":
            continue
        data = path.read_bytes()
        reading = (
            read_response(data)
            if path.suffix == ".json"
            else read_stream(data, provider="bedrock" if path.suffix == ".bin" else None)
        )
        if reading.usage_parts:
            assert sum((p.usage for p in reading.usage_parts), Usage()) == reading.usage, path.name


# -- service tiers ---------------------------------------------------------------------


def _openai(tier: str) -> Reading:
    # Derived: the recorded audio chat completion with its service_tier replaced.
    body = _body("openai_chat_audio_url_input.json")
    body["service_tier"] = tier
    return read_response(body)


def _anthropic(tier: str) -> Reading:
    # Derived: the recorded cache-read message with usage.service_tier replaced.
    body = _body("anthropic_messages_cache_read.json")
    body["usage"]["service_tier"] = tier
    return read_response(body)


def _vertex(traffic: str) -> Reading:
    # Derived: the recorded Vertex AI response with trafficType replaced.
    body = _body("vertex_generate_content.json")
    body["usageMetadata"]["trafficType"] = traffic
    return read_response(body)


def _gemini(tier: str) -> Reading:
    # Derived: the recorded Gemini API response with serviceTier replaced.
    body = _body("gemini_generate_cached_content.json")
    body["usageMetadata"]["serviceTier"] = tier
    return read_response(body)


def _bedrock(tier: str) -> Reading:
    # Derived: the recorded Converse response with a serviceTier object added.
    body = _body("bedrock_converse_cache_read.json")
    body["serviceTier"] = {"type": tier}
    return read_response(body)


DERIVED_TIERS = [
    (_openai, "default", "standard"),
    (_openai, "flex", "flex"),
    (_openai, "priority", "priority"),
    (_openai, "scale", "scale"),
    (_openai, "batch", "batch"),
    (_anthropic, "standard", "standard"),
    (_anthropic, "priority", "priority"),
    (_anthropic, "batch", "batch"),
    (_vertex, "ON_DEMAND", "standard"),
    (_vertex, "ON_DEMAND_FLEX", "flex"),
    (_vertex, "ON_DEMAND_PRIORITY", "priority"),
    (_vertex, "PROVISIONED_THROUGHPUT", "provisioned"),
    (_vertex, "ON_DEMAND_OFFPEAK", "offpeak"),
    (_gemini, "flex", "flex"),
    (_gemini, "priority", "priority"),
    (_bedrock, "default", "standard"),
    (_bedrock, "flex", "flex"),
    (_bedrock, "priority", "priority"),
]


@pytest.mark.parametrize(("read", "word", "tier"), DERIVED_TIERS)
def test_each_providers_tier_word_maps_onto_the_vocabulary(
    read: Any, word: str, tier: ServiceTier
) -> None:
    reading = read(word)
    assert reading.service_tier == tier
    assert reading.warnings == []


def test_recorded_tiers() -> None:
    read = read_response
    assert read((RECORDED / "vertex_generate_flex.json").read_bytes()).service_tier == "flex"
    assert read((RECORDED / "vertex_generate_content.json").read_bytes()).service_tier == (
        "standard"
    )
    stream = read_stream((RECORDED / "openai_responses_stream.sse").read_bytes())
    assert stream.service_tier == "flex"
    assert read((RECORDED / "openai_chat_audio_url_input.json").read_bytes()).service_tier == (
        "standard"
    )
    assert read((RECORDED / "anthropic_messages_cache_read.json").read_bytes()).service_tier == (
        "standard"
    )
    gemini = read((RECORDED / "gemini_generate_cached_content.json").read_bytes())
    assert gemini.service_tier == "standard"


def test_every_tier_is_reachable_from_some_response() -> None:
    reached = {tier for _, _, tier in DERIVED_TIERS} | {_openai("fast").service_tier}
    assert reached == set(SERVICE_TIERS)


def test_a_vertex_flex_stream_reads_its_tier() -> None:
    # Derived: the recorded Flex PayGo response sent as a two-chunk stream, the
    # usage snapshot on both and the finish reason on the last (as Gemini streams do).
    body = _body("vertex_generate_flex.json")
    first = {**body, "candidates": [{"content": {"parts": [{"text": "O"}], "role": "model"}}]}
    transcript = f"data: {json.dumps(first)}\r\n\r\ndata: {json.dumps(body)}\r\n\r\n"
    reading = read_stream(transcript)
    assert (reading.provider, reading.service_tier, reading.stream) == ("vertex", "flex", True)
    assert reading.usage == Usage(input_tokens=5, output_tokens=52, reasoning_tokens=51)


def test_a_tier_dumped_as_an_sdk_enum_is_read() -> None:
    from google.genai import types

    body = _body("vertex_generate_flex.json")
    # The trimmed signature is not base64, which the SDK's model checks.
    del body["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    sdk = types.GenerateContentResponse.model_validate(body).model_dump()
    assert isinstance(sdk["usage_metadata"]["traffic_type"], types.TrafficType)
    assert read_stream_events([sdk], provider="google").service_tier == "flex"


def test_an_unknown_tier_word_is_flagged_not_guessed() -> None:
    reading = _openai("turbo")
    assert reading.service_tier is None
    assert reading.warnings == ["unknown service tier 'turbo' in the response"]


def test_an_unspecified_tier_is_no_tier_and_no_warning() -> None:
    reading = _vertex("TRAFFIC_TYPE_UNSPECIFIED")
    assert (reading.service_tier, reading.warnings) == (None, [])


def test_a_queued_background_response_has_no_tier_yet() -> None:
    # Derived: OpenAI answers a background request with the response queued,
    # no usage and service_tier "auto" (the completed response later says
    # "default"); here the recorded reasoning response put in that state.
    body = _body("openai_responses_reasoning.json")
    body.update(status="queued", service_tier="auto", usage=None, output=[])
    reading = read_response(body)
    assert (reading.service_tier, reading.warnings, reading.usage_source) == (
        None,
        [],
        "missing",
    )


def test_a_gateway_passing_on_provisioned_throughput() -> None:
    # Derived: OpenRouter's chat body names the upstream tier; for Gemini from
    # Vertex AI provisioned throughput it says "provisioned".
    body = _body("openrouter_chat_cost.json")
    body["service_tier"] = "provisioned"
    reading = read_response(body)
    assert (reading.provider, reading.service_tier) == ("openrouter", "provisioned")


# -- per-use fees ----------------------------------------------------------------------


def test_zero_web_searches_are_not_a_fee() -> None:
    # server_tool_use.web_search_requests 0 in the recorded compaction call
    assert read_response(_body("anthropic_messages_compaction_end_to_end.json")).fee_counts == {}


def test_a_grounded_gemini_stream_counts_its_queries() -> None:
    # Derived: the recorded grounded response as two chunks, the grounding
    # metadata only on the last, as Gemini streams send it.
    body = _body("gemini_generate_web_search.json")
    candidate = body["candidates"][0]
    bare = {k: v for k, v in candidate.items() if k not in ("groundingMetadata", "finishReason")}
    first = {**body, "candidates": [bare]}
    transcript = f"data: {json.dumps(first)}\n\ndata: {json.dumps(body)}\n\n"
    assert read_stream(transcript).fee_counts == {"web_searches": 1}


def test_grounding_is_billed_per_prompt_before_gemini_3_and_per_query_from_it() -> None:
    # Derived: the recorded grounded gemini-2.5-pro response with a second query added.
    body = _body("gemini_generate_web_search.json")
    metadata = body["candidates"][0]["groundingMetadata"]
    assert len(metadata["webSearchQueries"]) == 1
    metadata["webSearchQueries"] = [*metadata["webSearchQueries"], "a second query"]
    # Gemini 2.5: one grounded prompt, however many queries it ran.
    assert read_response(body).fee_counts == {"web_searches": 1}
    # Gemini 3: each query is billed.
    body["modelVersion"] = "gemini-3-pro-preview"
    assert read_response(body).fee_counts == {"web_searches": 2}
    transcript = f"data: {json.dumps(body)}\n\n"
    assert read_stream(transcript).fee_counts == {"web_searches": 2}


def test_gemini_output_image_tokens_are_counted_apart() -> None:
    reading = read_response(_body("gemini_generate_image_output.json"))
    # candidatesTokensDetails: IMAGE 1120 of candidatesTokenCount 1283; thoughts 174.
    assert reading.usage.output_tokens == 1283 + 174
    assert reading.fee_counts == {"output_image_tokens": 1120}
    again = read_usage(reading.usage_raw, provider="google", response_model=reading.response_model)
    assert again.fee_counts == reading.fee_counts


def test_an_openai_responses_stream_counts_its_web_search_calls() -> None:
    # Derived: the recorded response sent as response.created (no output yet)
    # then response.completed.
    body = _body("openai_responses_web_search.json")
    created = {**body, "status": "in_progress", "output": [], "usage": None}
    events = [
        {"type": "response.created", "response": created},
        {"type": "response.completed", "response": body},
    ]
    reading = read_stream_events(events, provider="openai")
    assert (reading.fee_counts, reading.service_tier) == ({"web_searches": 1}, "standard")


def test_parts_are_usage_parts() -> None:
    reading = read_response(_body("anthropic_messages_advisor_tool.json"))
    assert all(isinstance(part, UsagePart) for part in reading.usage_parts)
    assert reading.usage_parts[1] == ("claude-opus-4-8", Usage(input_tokens=2518, output_tokens=22))


# -- reading a kept usage object again ---------------------------------------------------


def _recorded_readings() -> list[tuple[str, Reading]]:
    readings = []
    for path in sorted(RECORDED.iterdir()):
        if path.suffix == ".md":
            continue
        data = path.read_bytes()
        if path.suffix == ".json":
            readings.append((path.name, read_response(data)))
        else:
            provider = "bedrock" if path.suffix == ".bin" else None
            readings.append((path.name, read_stream(data, provider=provider)))
    return readings


@pytest.mark.parametrize(("name", "reading"), _recorded_readings(), ids=lambda v: str(v)[:60])
def test_a_kept_usage_object_reads_back_the_same(name: str, reading: Reading) -> None:
    again = read_usage(
        reading.usage_raw,
        provider=reading.provider,
        operation=reading.operation,
        response_model=reading.response_model,
    )
    assert (again.usage, again.usage_parts, again.extra_units) == (
        reading.usage,
        reading.usage_parts,
        reading.extra_units,
    ), name
    assert again.reported_cost == reading.reported_cost
    assert again.usage_source == reading.usage_source
    if reading.provider == "anthropic":
        # Anthropic states its tier and web searches inside usage.
        assert (again.service_tier, again.fee_counts) == (
            reading.service_tier,
            reading.fee_counts,
        )


def test_a_kept_advisor_usage_knows_its_own_model_only_when_told() -> None:
    usage = _body("anthropic_messages_advisor_tool.json")["usage"]
    told = read_usage(usage, provider="anthropic", response_model="claude-sonnet-5")
    assert [p.model for p in told.usage_parts] == [None, "claude-opus-4-8", None]
    # Without the response's model a step naming the advisor is still the advisor's.
    untold = read_usage(usage, provider="anthropic")
    assert [p.model for p in untold.usage_parts] == [None, "claude-opus-4-8", None]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google", "bedrock", "cohere"])
def test_no_kept_usage_reads_as_missing(provider: str) -> None:
    reading = read_usage(None, provider=provider)
    assert (reading.usage, reading.usage_source, reading.usage_parts) == (Usage(), "missing", ())
