"""Every recorded provider response reads into exactly the buckets DESIGN §3 prescribes.

Expected values are worked out by hand from the provider's own fields; the
comment on each case shows the arithmetic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmledger.core.billing import Fee, ServiceTier, UsagePart
from llmledger.core.usage import Usage
from llmledger.normalize import Reading, read_response, read_stream

RECORDED = Path(__file__).parent / "fixtures" / "recorded"


@dataclass(frozen=True)
class Case:
    provider: str
    operation: str
    usage: Usage
    model: str | None = None
    request_id: str | None = None
    finish_reason: str | None = None
    service_tier: ServiceTier | None = None
    reported_cost: Decimal | None = None
    extra_units: dict[str, int] = field(default_factory=dict)
    usage_parts: tuple[UsagePart, ...] = ()
    fee_counts: dict[Fee, int] = field(default_factory=dict)


CASES: dict[str, Case] = {
    # input 3 + cache read 1111 + cache write 0
    "anthropic_messages_cache_read.json": Case(
        "anthropic",
        "chat",
        Usage(input_tokens=1114, output_tokens=406, cache_read_tokens=1111),
        "claude-sonnet-4-5-20250929",
        "msg_01UUPT9QdZnZSRzcQJkjG25U",
        "end_turn",
        "standard",
    ),
    # Every iteration is billed; the top level (220 in / 8 out) is the message step alone.
    #   compaction: 55196 + 0 read + 0 write = 55196 in, 125 out
    #   message:      220 + 0 + 0           =   220 in,   8 out
    #   call:       55196 + 220 = 55416 in, 125 + 8 = 133 out
    "anthropic_messages_compaction_end_to_end.json": Case(
        "anthropic",
        "chat",
        Usage(input_tokens=55416, output_tokens=133),
        "claude-sonnet-4-6",
        "msg_01F14qCbQK62eHkEDj6yvZsi",
        "end_turn",
        "standard",
        usage_parts=(
            UsagePart(None, Usage(input_tokens=55196, output_tokens=125)),
            UsagePart(None, Usage(input_tokens=220, output_tokens=8)),
        ),
    ),
    # The compaction step wrote the cache (5m TTL); the message step read nothing.
    #   compaction: 100 + 0 read + 55096 write = 55196 in, 131 out
    #   message:    229 + 0 + 0                =   229 in,   5 out
    #   call: 55425 in (55096 written, all 5m), 136 out
    "anthropic_messages_compaction_cache_write.json": Case(
        "anthropic",
        "chat",
        Usage(
            input_tokens=55425,
            output_tokens=136,
            cache_write_tokens=55096,
            cache_write_5m_tokens=55096,
        ),
        "claude-sonnet-4-6",
        "msg_011CduoCGqnmwXgi7jhzyVZM",
        "end_turn",
        "standard",
        usage_parts=(
            UsagePart(
                None,
                Usage(
                    input_tokens=55196,
                    output_tokens=131,
                    cache_write_tokens=55096,
                    cache_write_5m_tokens=55096,
                ),
            ),
            UsagePart(None, Usage(input_tokens=229, output_tokens=5)),
        ),
    ),
    # Two message steps on the call's model around one advisor step on claude-opus-4-8;
    # the top level (2390 = 1128 + 1262 in, 121 = 110 + 11 out) leaves the advisor out.
    #   call: 1128 + 2518 + 1262 = 4908 in, 110 + 22 + 11 = 143 out
    #   thinking 28 (top level only) goes to the first step of the call's model (110 out)
    "anthropic_messages_advisor_tool.json": Case(
        "anthropic",
        "chat",
        Usage(input_tokens=4908, output_tokens=143, reasoning_tokens=28),
        "claude-sonnet-5",
        "msg_011CdD8kCHePDwkWhKt6aCDv",
        "end_turn",
        "standard",
        usage_parts=(
            UsagePart(None, Usage(input_tokens=1128, output_tokens=110, reasoning_tokens=28)),
            UsagePart("claude-opus-4-8", Usage(input_tokens=2518, output_tokens=22)),
            UsagePart(None, Usage(input_tokens=1262, output_tokens=11)),
        ),
    ),
    # server_tool_use.web_search_requests 1; input 8984 + 0 + 0
    "anthropic_messages_web_search.json": Case(
        "anthropic",
        "chat",
        Usage(input_tokens=8984, output_tokens=520),
        "claude-sonnet-4-20250514",
        "msg_0119wM5YxCLg3hwUWrxEQ9Y8",
        "end_turn",
        "standard",
        fee_counts={"web_searches": 1},
    ),
    # message_start: 100 in + 55096 cache read (the compaction step's), 7 out so far.
    # message_delta's top level (181 in, read 0, 8 out) is the message step alone; its
    # iterations hold both steps:
    #   compaction: 100 + 55096 read = 55196 in, 83 out
    #   message:    181              =   181 in,  8 out
    #   call: 55377 in (55096 read), 91 out; message_start's counts are all inside it
    "anthropic_stream_compaction_cache_read.sse": Case(
        "anthropic",
        "chat",
        Usage(input_tokens=55377, output_tokens=91, cache_read_tokens=55096),
        "claude-sonnet-4-6",
        "msg_011CduoCRono7pFKoTWpPAia",
        "end_turn",
        "standard",
        usage_parts=(
            UsagePart(None, Usage(input_tokens=55196, output_tokens=83, cache_read_tokens=55096)),
            UsagePart(None, Usage(input_tokens=181, output_tokens=8)),
        ),
    ),
    # message_delta iterations: 1128/135, advisor claude-opus-4-8 2543/18, 1283/10
    #   call: 1128 + 2543 + 1283 = 4954 in, 135 + 18 + 10 = 163 out; thinking 47 on step 1
    "anthropic_stream_advisor_tool.sse": Case(
        "anthropic",
        "chat",
        Usage(input_tokens=4954, output_tokens=163, reasoning_tokens=47),
        "claude-sonnet-5",
        "msg_011CdD8kd2BCHcbXAHcYxvaf",
        "end_turn",
        "standard",
        usage_parts=(
            UsagePart(None, Usage(input_tokens=1128, output_tokens=135, reasoning_tokens=47)),
            UsagePart("claude-opus-4-8", Usage(input_tokens=2543, output_tokens=18)),
            UsagePart(None, Usage(input_tokens=1283, output_tokens=10)),
        ),
    ),
    # message_start input 11; message_delta output 6 (cumulative, replaces 1)
    "anthropic_sdk_basic_stream.sse": Case(
        "anthropic",
        "chat",
        Usage(input_tokens=11, output_tokens=6),
        "claude-3-opus-latest",
        "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK",
        "end_turn",
    ),
    # 13 + 0 + 3913 written with a 1h TTL; output 4 replaces 1
    "anthropic_stream_cache_write_1h.sse": Case(
        "anthropic",
        "chat",
        Usage(
            input_tokens=3926, output_tokens=4, cache_write_tokens=3913, cache_write_1h_tokens=3913
        ),
        "claude-sonnet-4-6",
        "msg_011Cfs3SZuenLxTeGfyP2nwx",
        "end_turn",
        "standard",
    ),
    # output 282 (cumulative, thinking included) replaces message_start's 1
    "anthropic_stream_thinking.sse": Case(
        "anthropic",
        "chat",
        Usage(input_tokens=43, output_tokens=282),
        "claude-sonnet-4-20250514",
        "msg_01ALwQ87pTS7hH1PjSdC9wJD",
        "end_turn",
        "standard",
    ),
    # inputTokens 13 + cacheRead 1504 + cacheWrite 0 (…TokenCount duplicates not added)
    "bedrock_converse_cache_read.json": Case(
        "bedrock",
        "chat",
        Usage(input_tokens=1517, output_tokens=5, cache_read_tokens=1504),
        finish_reason="end_turn",
    ),
    # metadata event: inputTokens 13, outputTokens 82
    "bedrock_converse_stream_nova.bin": Case(
        "bedrock",
        "chat",
        Usage(input_tokens=13, output_tokens=82),
        finish_reason="end_turn",
    ),
    # Anthropic rules through Bedrock invoke_model: 3 + 9511 + 0
    "bedrock_invoke_anthropic_cache_read.json": Case(
        "bedrock",
        "chat",
        Usage(input_tokens=9514, output_tokens=2851, cache_read_tokens=9511),
        "claude-haiku-4-5-20251001",
        "msg_bdrk_013xKcZcFgFRUiSymU6ByAAZ",
        "end_turn",
    ),
    # billed_units, not tokens; cached_tokens (tokens basis) fills no bucket
    "cohere_chat_cached.json": Case(
        "cohere",
        "chat",
        Usage(input_tokens=2406, output_tokens=2),
        request_id="0bf8e1a5-2af6-4014-a539-c12363a043a3",
        finish_reason="COMPLETE",
    ),
    "cohere_chat_stream.jsonl": Case(
        "cohere",
        "chat",
        Usage(input_tokens=21, output_tokens=105),
        request_id="a8fc192e-4bb8-4e15-ae1f-a174e8b02ae8",
        finish_reason="COMPLETE",
    ),
    # prompt 3520 ⊇ cached 3512; output = candidates 2 + thoughts 42
    "gemini_generate_cached_content.json": Case(
        "google",
        "chat",
        Usage(input_tokens=3520, output_tokens=44, cache_read_tokens=3512, reasoning_tokens=42),
        "gemini-2.5-flash",
        "_VQYaqvRGbW6qtsPg4TDoAg",
        "STOP",
        "standard",
    ),
    # input = prompt 15 + toolUsePrompt 429; output = 75 + thoughts 343
    "gemini_generate_code_execution.json": Case(
        "google",
        "chat",
        Usage(
            input_tokens=444, output_tokens=418, reasoning_tokens=343, tool_use_prompt_tokens=429
        ),
        "gemini-2.5-pro",
        "NDt8acncJ_KEz7IPq57X6Ag",
        "STOP",
    ),
    # promptTokensDetails IMAGE 1290 of 1303
    "gemini_generate_image_input.json": Case(
        "google",
        "chat",
        Usage(input_tokens=1303, output_tokens=10, input_image_tokens=1290),
        "gemini-2.0-flash",
        "dTR8aeWBEYnUz7IPpa3XoAQ",
        "STOP",
    ),
    # output = 1283 + 174; the 1120 image tokens inside it have no bucket
    "gemini_generate_image_output.json": Case(
        "google",
        "chat",
        Usage(input_tokens=14, output_tokens=1457, reasoning_tokens=174),
        "gemini-3-pro-image-preview",
        "QV8oae6ZGKGnmtkPoanu6A0",
        "STOP",
        extra_units={"output_image_tokens": 1120},
        # the image tokens inside output are billed at a rate of their own
        fee_counts={"output_image_tokens": 1120},
    ),
    # input = prompt 17 + toolUsePrompt 119 = 136; output = 201 + thoughts 213 = 414;
    # one webSearchQueries entry; no tier field
    "gemini_generate_web_search.json": Case(
        "google",
        "chat",
        Usage(
            input_tokens=136, output_tokens=414, reasoning_tokens=213, tool_use_prompt_tokens=119
        ),
        "gemini-2.5-pro",
        "btnJaOrqE4_6qtsP7bOboQs",
        "STOP",
        fee_counts={"web_searches": 1},
    ),
    # output = candidates 9 + thoughts 34
    "gemini_generate_thoughts.json": Case(
        "google",
        "chat",
        Usage(input_tokens=9, output_tokens=43, reasoning_tokens=34),
        "gemini-2.5-flash",
        "bzlXaa_EE_aHqtsPi_zw8Ao",
        "STOP",
    ),
    # last cumulative snapshot: candidates 80 + thoughts 35 (not 31 + 79 + 80)
    "gemini_stream.sse": Case(
        "google",
        "chat",
        Usage(input_tokens=18, output_tokens=115, reasoning_tokens=35),
        "gemini-2.5-flash",
        "ru1garvBEoOiqtsP2fznmQw",
        "STOP",
        "standard",
    ),
    "mistral_chat_cached.json": Case(
        "mistral",
        "chat",
        Usage(input_tokens=268, output_tokens=5, cache_read_tokens=224),
        "mistral-large-latest",
        "23271c0215f547dcb5d5e2950f354f9d",
        "stop",
    ),
    "openai_chat_audio.json": Case(
        "openai",
        "chat",
        Usage(input_tokens=64, output_tokens=200, input_audio_tokens=38, output_audio_tokens=159),
        "gpt-4o-audio-preview-2025-06-03",
        "chatcmpl-CXEuXGd0MagiwenLiOtDhLNMHZs63",
        "length",
        "standard",
    ),
    # prompt 81 = audio 69 + text 12 (text has no bucket: it is the rest of input)
    "openai_chat_audio_url_input.json": Case(
        "openai",
        "chat",
        Usage(input_tokens=81, output_tokens=72, input_audio_tokens=69),
        "gpt-4o-audio-preview-2024-12-17",
        "chatcmpl-BQFlHSj56WMjKA8bTAEuRxfL5V9zm",
        "stop",
        # OpenAI's "default" is the standard tier
        "standard",
    ),
    "openai_chat_o3mini_reasoning.json": Case(
        "openai",
        "chat",
        Usage(input_tokens=7, output_tokens=87, reasoning_tokens=64),
        "o3-mini-2025-01-31",
        "chatcmpl-Dr3KNfXKBS1oDOrhqYDuLYdjX9PM4",
        "stop",
        "standard",
    ),
    "openai_chat_prompt_cache_hit.json": Case(
        "openai",
        "chat",
        Usage(input_tokens=4020, output_tokens=4, cache_read_tokens=4012),
        "gpt-5.6-sol",
        "chatcmpl-E1mBQt42vYTsKNd5wnyJlT0db7v9S",
        "stop",
        "standard",
    ),
    "openai_chat_stream_include_usage.sse": Case(
        "openai",
        "chat",
        Usage(input_tokens=53, output_tokens=15),
        "gpt-4o-mini-2024-07-18",
        "chatcmpl-Dx0XpqH8w09uBXwq1zFGYdETjtnEl",
        "tool_calls",
        "standard",
    ),
    "openai_embeddings.json": Case(
        "openai",
        "embeddings",
        Usage(input_tokens=4),
        "text-embedding-3-small",
    ),
    "openai_responses_reasoning.json": Case(
        "openai",
        "responses",
        Usage(input_tokens=13, output_tokens=77, reasoning_tokens=64),
        "gpt-5-pro-2025-10-06",
        "resp_0715fbcff7ba1d57006914d5f34eb881a384862fa55f301aa3",
        "completed",
        "standard",
    ),
    "openai_responses_stream.sse": Case(
        "openai",
        "responses",
        Usage(input_tokens=53, output_tokens=469, reasoning_tokens=448),
        "gpt-5-2025-08-07",
        "resp_0050471a34b36ae60068c97b94a480819587a9d70cf2979b33",
        "completed",
        "flex",
    ),
    # input 9299 includes cached 8448; output 577 includes reasoning 512;
    # one web_search_call output item
    "openai_responses_web_search.json": Case(
        "openai",
        "responses",
        Usage(input_tokens=9299, output_tokens=577, cache_read_tokens=8448, reasoning_tokens=512),
        "gpt-5-2025-08-07",
        "resp_028829e50fbcad090068c9c82e1e0081958ddc581008b39428",
        "completed",
        "standard",
        fee_counts={"web_searches": 1},
    ),
    "openrouter_chat_cost.json": Case(
        "openrouter",
        "chat",
        Usage(input_tokens=17, output_tokens=1763, reasoning_tokens=832),
        "openai/gpt-5-mini",
        "gen-1770044198-ZwI7uQKLVslWOkgYLHP1",
        "stop",
        reported_cost=Decimal("0.00353025"),
    ),
    # Vertex AI's shape (createTime, trafficType): read as vertex, its own provider.
    "vertex_generate_content.json": Case(
        "vertex",
        "chat",
        Usage(input_tokens=13, output_tokens=8),
        "gemini-2.0-flash",
        "RUVVaZaHPI3UhMIPlvb66AY",
        "STOP",
        # trafficType ON_DEMAND: Vertex AI's pay-as-you-go standard capacity
        "standard",
    ),
    # output = candidates 1 + thoughts 51; trafficType ON_DEMAND_FLEX is Flex PayGo
    "vertex_generate_flex.json": Case(
        "vertex",
        "chat",
        Usage(input_tokens=5, output_tokens=52, reasoning_tokens=51),
        "gemini-3-flash-preview",
        "T9--adqvDqL4vdIPz7X2iQ4",
        "STOP",
        "flex",
    ),
}

STREAM_SUFFIXES = {".sse", ".jsonl", ".bin"}


def _read(path: Path, *, with_provider: bool) -> Reading:
    provider = CASES[path.name].provider if with_provider else None
    data = path.read_bytes()
    if path.suffix in STREAM_SUFFIXES:
        return read_stream(data, provider=provider)
    return read_response(data, provider=provider)


def test_every_recorded_file_has_a_case() -> None:
    files = {p.name for p in RECORDED.iterdir() if p.suffix != ".md"}
    assert files == set(CASES)


@pytest.mark.parametrize("with_provider", [True, False], ids=["named", "detected"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_recorded_reads_exactly(name: str, with_provider: bool) -> None:
    case = CASES[name]
    reading = _read(RECORDED / name, with_provider=with_provider)
    assert reading.usage == case.usage
    assert (reading.provider, reading.operation) == (case.provider, case.operation)
    assert reading.response_model == case.model
    assert reading.request_id == case.request_id
    assert reading.finish_reason == case.finish_reason
    assert reading.service_tier == case.service_tier
    assert reading.reported_cost == case.reported_cost
    assert reading.extra_units == case.extra_units
    assert reading.usage_parts == case.usage_parts
    assert reading.fee_counts == case.fee_counts
    assert reading.stream is (Path(name).suffix in STREAM_SUFFIXES)
    assert reading.usage_source == "provider"
    assert reading.warnings == []


def test_usage_raw_is_the_provider_object_verbatim() -> None:
    body = json.loads((RECORDED / "openai_chat_prompt_cache_hit.json").read_text())
    assert read_response(body).usage_raw == body["usage"]
    gemini = json.loads((RECORDED / "gemini_generate_code_execution.json").read_text())
    assert read_response(gemini).usage_raw == gemini["usageMetadata"]


def test_anthropic_stream_usage_raw_is_the_merged_usage() -> None:
    reading = read_stream((RECORDED / "anthropic_stream_cache_write_1h.sse").read_bytes())
    assert reading.usage_raw == {
        "input_tokens": 13,
        "cache_creation_input_tokens": 3913,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 3913},
        "output_tokens": 4,
        "service_tier": "standard",
        "inference_geo": "global",
    }


def test_reported_cost_keeps_the_exact_decimal_text() -> None:
    reading = read_response((RECORDED / "openrouter_chat_cost.json").read_text())
    assert isinstance(reading.reported_cost, Decimal)
    assert str(reading.reported_cost) == "0.00353025"


def test_reported_cost_from_a_dict_with_floats_is_exact() -> None:
    body: dict[str, Any] = json.loads((RECORDED / "openrouter_chat_cost.json").read_text())
    assert isinstance(body["usage"]["cost"], float)
    assert read_response(body).reported_cost == Decimal("0.00353025")


def test_totals_match_what_the_provider_says_where_it_says_it() -> None:
    # Where a provider states a grand total, the canonical total must agree.
    for name, key in [
        ("gemini_generate_code_execution.json", ("usageMetadata", "totalTokenCount")),
        ("gemini_generate_image_output.json", ("usageMetadata", "totalTokenCount")),
        ("gemini_generate_cached_content.json", ("usageMetadata", "totalTokenCount")),
        ("gemini_generate_web_search.json", ("usageMetadata", "totalTokenCount")),
        ("vertex_generate_flex.json", ("usageMetadata", "totalTokenCount")),
        ("openai_chat_audio_url_input.json", ("usage", "total_tokens")),
        ("openai_responses_web_search.json", ("usage", "total_tokens")),
        ("bedrock_converse_cache_read.json", ("usage", "totalTokens")),
        ("openai_chat_audio.json", ("usage", "total_tokens")),
        ("openrouter_chat_cost.json", ("usage", "total_tokens")),
    ]:
        body = json.loads((RECORDED / name).read_text())
        assert read_response(body).usage.total_tokens == body[key[0]][key[1]], name


def test_framework_usage_in_the_chat_shape_is_read_like_the_providers() -> None:
    from llmledger.normalize.openai import openai_style_usage

    body = json.loads((RECORDED / "openai_chat_prompt_cache_hit.json").read_text())
    assert openai_style_usage(body["usage"]) == read_response(body, provider="openai").usage
    # LiteLLM's additions: Anthropic's cache read and write beside an input total that
    # leaves the write out, and the write split by lifetime.
    litellm_anthropic = {
        "prompt_tokens": 1010,
        "completion_tokens": 20,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 300,
        "prompt_tokens_details": {
            "cache_creation_token_details": {
                "ephemeral_5m_input_tokens": 100,
                "ephemeral_1h_input_tokens": 200,
            }
        },
    }
    assert openai_style_usage(litellm_anthropic) == Usage(
        input_tokens=1310,
        output_tokens=20,
        cache_read_tokens=1000,
        cache_write_tokens=300,
        cache_write_5m_tokens=100,
        cache_write_1h_tokens=200,
    )
