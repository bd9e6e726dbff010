"""Bad inputs fail with one clear error naming what was wrong; odd numbers become warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import llmledger.normalize as normalize
from llmledger.core.errors import LedgerError, ResponseParseError, UnknownProviderError
from llmledger.core.usage import Usage
from llmledger.normalize import read_response, read_stream, read_stream_events

RECORDED = Path(__file__).parent / "fixtures" / "recorded"


def test_exports_are_complete() -> None:
    public = {name for name in dir(normalize) if not name.startswith("_")} - {"annotations"}
    modules = {
        "anthropic",
        "base",
        "bedrock",
        "cohere",
        "eventstream",
        "google",
        "openai",
        "readers",
        "sse",
    }
    assert public - modules == set(normalize.__all__)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        ("[1, 2]", "must be a JSON object"),
        ({"hello": "world"}, r"unrecognised response body shape \(top-level keys: hello\)"),
        ({"error": {"message": "rate limited"}}, "error response.*rate limited"),
        (42, "must be a dict, str or bytes"),
    ],
)
def test_bad_bodies(body: object, message: str) -> None:
    with pytest.raises(ResponseParseError, match=message):
        read_response(body)  # type: ignore[arg-type]


def test_unknown_provider_names_the_known_ones() -> None:
    with pytest.raises(UnknownProviderError, match=r"unknown provider 'acme'.*openai"):
        read_response("{}", provider="acme")
    with pytest.raises(UnknownProviderError):
        read_stream_events([], provider="acme")
    with pytest.raises(LookupError):
        read_stream("", provider="acme")


def test_unknown_operation_for_provider() -> None:
    body = (RECORDED / "anthropic_messages_cache_read.json").read_text()
    with pytest.raises(ResponseParseError, match=r"'anthropic' has no operation 'embeddings'"):
        read_response(body, provider="anthropic", operation="embeddings")
    with pytest.raises(ResponseParseError, match="does not stream"):
        read_stream_events([], provider="openai", operation="embeddings")


def test_non_integer_count_is_an_error_naming_the_field() -> None:
    body = {
        "object": "chat.completion",
        "choices": [],
        "usage": {"prompt_tokens": "many", "completion_tokens": 1},
    }
    with pytest.raises(ResponseParseError, match=r"usage\.prompt_tokens"):
        read_response(body)
    with pytest.raises(ResponseParseError, match=r"usage\.output_tokens"):
        read_response({"type": "message", "usage": {"output_tokens": 1.5}})


def test_stream_errors() -> None:
    with pytest.raises(ResponseParseError, match="stream event 0 is not valid JSON"):
        read_stream("data: {oops\n\n")
    with pytest.raises(ResponseParseError, match="no events"):
        read_stream("")
    with pytest.raises(ResponseParseError, match="no event of a known provider"):
        read_stream('data: {"hello": 1}\n\n')
    with pytest.raises(ResponseParseError, match="not UTF-8"):
        read_stream(b"\xff\xfe\xfd")
    with pytest.raises(ResponseParseError, match="str or bytes"):
        read_stream(12)  # type: ignore[arg-type]
    with pytest.raises(ResponseParseError, match=r"truncated|CRC"):
        read_stream(b"not an event stream", provider="bedrock")


def test_errors_share_the_tree() -> None:
    assert issubclass(ResponseParseError, LedgerError)
    assert issubclass(ResponseParseError, ValueError)


def test_broken_invariants_are_warnings_and_numbers_are_kept() -> None:
    # A gateway reporting more reasoning than output (seen in the wild): keep, flag.
    body = {
        "object": "chat.completion",
        "id": "x",
        "choices": [],
        "usage": {
            "prompt_tokens": 31134,
            "completion_tokens": 2608,
            "completion_tokens_details": {"reasoning_tokens": 2624},
        },
    }
    reading = read_response(body)
    assert reading.usage == Usage(input_tokens=31134, output_tokens=2608, reasoning_tokens=2624)
    assert reading.warnings == ["reasoning_tokens (2624) exceeds output_tokens (2608)"]


def test_negative_counts_are_flagged_not_clamped() -> None:
    reading = read_response({"type": "message", "usage": {"input_tokens": -3, "output_tokens": 5}})
    assert reading.usage.input_tokens == -3
    assert reading.warnings == ["input_tokens is negative (-3)"]


def test_body_without_usage_is_missing() -> None:
    reading = read_response({"object": "chat.completion", "id": "c", "choices": []})
    assert reading.usage_source == "missing"
    assert reading.usage == Usage()


def test_shapes_beyond_chat() -> None:
    image = read_response(
        {
            "created": 1,
            "data": [{"b64_json": "..."}],
            "usage": {
                "input_tokens": 50,
                "output_tokens": 4160,
                "total_tokens": 4210,
                "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
                "output_tokens_details": {"image_tokens": 4160},
            },
        }
    )
    assert (image.provider, image.operation) == ("openai", "images")
    assert image.usage == Usage(input_tokens=50, output_tokens=4160, input_image_tokens=40)
    assert image.extra_units == {"output_image_tokens": 4160}

    audio = read_response(
        {
            "text": "My policy number",
            "usage": {
                "type": "tokens",
                "input_tokens": 59,
                "output_tokens": 11,
                "total_tokens": 70,
                "input_token_details": {"text_tokens": 0, "audio_tokens": 59},
            },
        }
    )
    assert audio.operation == "audio"
    assert audio.usage == Usage(input_tokens=59, output_tokens=11, input_audio_tokens=59)

    seconds = read_response({"text": "hi", "usage": {"type": "duration", "seconds": 3}})
    assert seconds.usage_source == "missing"

    rerank = read_response(
        {"id": "r", "results": [], "meta": {"billed_units": {"search_units": 1}}}
    )
    assert (rerank.provider, rerank.operation) == ("cohere", "rerank")
    assert rerank.extra_units == {"search_units": 1}

    embed = read_response(
        {"id": "e", "embeddings": {}, "meta": {"billed_units": {"input_tokens": 7}}}
    )
    assert (embed.operation, embed.usage) == ("embeddings", Usage(input_tokens=7))


def test_deepseek_and_mistral_cache_field_variants() -> None:
    deepseek = read_response(
        {
            "object": "chat.completion",
            "choices": [],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 5,
                "prompt_cache_hit_tokens": 64,
                "prompt_cache_miss_tokens": 36,
            },
        },
        provider="deepseek",
    )
    assert deepseek.usage == Usage(input_tokens=100, output_tokens=5, cache_read_tokens=64)
    mistral = read_response(
        {
            "object": "chat.completion",
            "choices": [],
            "usage": {"prompt_tokens": 268, "completion_tokens": 5, "cached_tokens": 224},
        },
        provider="mistral",
    )
    assert mistral.usage.cache_read_tokens == 224


def test_anthropic_without_ttl_split_does_not_guess() -> None:
    reading = read_response(
        {
            "type": "message",
            "usage": {"input_tokens": 5, "cache_creation_input_tokens": 2000, "output_tokens": 1},
        }
    )
    assert reading.usage == Usage(input_tokens=2005, output_tokens=1, cache_write_tokens=2000)


def test_explicit_provider_relabels_an_openai_shaped_body() -> None:
    body = json.loads((RECORDED / "openai_chat_prompt_cache_hit.json").read_text())
    reading = read_response(body, provider="azure", operation="chat")
    assert reading.provider == "azure"
    assert reading.usage.cache_read_tokens == 4012
