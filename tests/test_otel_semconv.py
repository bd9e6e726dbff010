"""The pure mapping between events and GenAI span attributes: every convention's spelling,
the counting rules, what is a model call and what is not, and that the docs list it all."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from llmledger.otel.reading import Skipped, SpanRecord, event_json_from_span, span_id_event_id
from llmledger.otel.semconv import BUCKET_ATTRIBUTES
from llmledger.wire.parse import parse_event

DOCS = Path(__file__).parents[1] / "docs" / "opentelemetry.md"
START = 1_764_000_000_000_000_000  # 2025-11-24


def _span(attributes: dict[str, Any], **more: Any) -> SpanRecord:
    return SpanRecord(
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
        name="span",
        start_ns=START,
        end_ns=START + 2_000_000_000,
        attributes=attributes,
        **more,
    )


def _read(attributes: dict[str, Any], **more: Any) -> dict[str, Any]:
    read = event_json_from_span(_span(attributes, **more))
    assert isinstance(read, dict), read
    parse_event(read, now=datetime(2026, 1, 1, tzinfo=UTC))  # the one validation passes
    return read


def test_openllmetry_older_spellings() -> None:
    read = _read(
        {
            "gen_ai.system": "Anthropic",
            "llm.request.type": "chat",
            "gen_ai.request.model": "claude-3-5-haiku-20241022",
            "gen_ai.usage.prompt_tokens": 120,
            "gen_ai.usage.completion_tokens": 30,
            "gen_ai.usage.cache_read_input_tokens": 1000,
            "gen_ai.usage.cache_creation_input_tokens": 200,
            "llm.is_streaming": True,
            "traceloop.association.properties.user_id": "ana",
            "traceloop.association.properties.ticket": "T-1",
        }
    )
    # Anthropic's own counting passed on (cache parts above the input): made whole.
    assert read["provider"] == "anthropic"
    assert read["usage"] == {
        "input_tokens": 1320,
        "output_tokens": 30,
        "cache_read_tokens": 1000,
        "cache_write_tokens": 200,
    }
    assert read["stream"] is True and read["user"] == "ana" and read["tags"] == {"ticket": "T-1"}


def test_the_oldest_openllmetry_llm_attributes() -> None:
    read = _read(
        {
            "llm.vendor": "OpenAI",
            "llm.request.model": "gpt-3.5-turbo",
            "llm.usage.completion_tokens": 7,
            "llm.usage.total_tokens": 27,
        }
    )
    assert (read["provider"], read["model"]) == ("openai", "gpt-3.5-turbo")
    assert read["usage"] == {"input_tokens": 20, "output_tokens": 7}


def test_openlit_and_logfire_spellings() -> None:
    openlit = _read(
        {
            "gen_ai.system": "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 50,
            "gen_ai.usage.output_tokens": 20,
            "gen_ai.usage.reasoning_tokens": 5,
            "gen_ai.usage.cost": 0.5,  # the instrumentation's estimate: not used
        }
    )
    assert openlit["usage"]["reasoning_tokens"] == 5 and "cost" not in openlit
    logfire = _read(
        {
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 50,
            "gen_ai.usage.input_tokens.cached": 10,
            "gen_ai.usage.output_tokens": 20,
        }
    )
    assert logfire["usage"]["cache_read_tokens"] == 10


def test_langfuse_generation() -> None:
    read = _read(
        {
            "langfuse.observation.type": "generation",
            "langfuse.observation.model.name": "gpt-4o-mini",
            "langfuse.observation.usage_details": json.dumps(
                {"input": 100, "output": 10, "input_cached_tokens": 60, "total": 110}
            ),
            "langfuse.user.id": "u-7",
            "langfuse.session.id": "s-9",
            "langfuse.trace.metadata.plan": "pro",
        }
    )
    assert (read["provider"], read["model"], read["user"], read["session"]) == (
        "openai",
        "gpt-4o-mini",
        "u-7",
        "s-9",
    )
    assert read["usage"] == {"input_tokens": 100, "output_tokens": 10, "cache_read_tokens": 60}
    assert read["tags"] == {"plan": "pro"}
    span = _span({"langfuse.observation.type": "span", "gen_ai.request.model": "x"})
    assert event_json_from_span(span) == Skipped("not_a_model_call")


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"http.request.method": "GET", "url.full": "https://example.com"}, "not_genai"),
        ({}, "not_genai"),
        (
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 900},
            "not_a_model_call",
        ),
        (
            {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"},
            "not_a_model_call",
        ),
    ],
)
def test_spans_that_are_not_model_calls(attributes: dict[str, Any], reason: str) -> None:
    assert event_json_from_span(_span(attributes)) == Skipped(reason)


def test_errors_tiers_resource_attribution_and_ids() -> None:
    read = _read(
        {
            "gen_ai.provider.name": "aws.bedrock",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "anthropic.claude-3-haiku-20240307-v1:0",
            "error.type": "ThrottlingException",
        },
        status_code=2,
        status_message="Rate exceeded",
        resource={"llmledger.tenant": "acme", "llmledger.feature": "search"},
    )
    assert read["provider"] == "bedrock"
    assert (read["status"], read["error_type"], read["error_message"]) == (
        "error",
        "ThrottlingException",
        "Rate exceeded",
    )
    assert (read["tenant"], read["feature"], read["usage_source"]) == ("acme", "search", "missing")
    assert read["id"] == span_id_event_id(
        "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", START
    )
    assert read["ts"] == "2025-11-24T16:00:00Z" and read["duration_ms"] == 2000.0
    tiered = _read(
        {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
         "openai.response.service_tier": "default"}
    )  # fmt: skip
    assert tiered["service_tier"] == "standard"
    other = event_json_from_span(_span({"gen_ai.request.model": "gpt-4o"}, status_code=0))
    assert isinstance(other, dict) and other["id"] == read["id"]
    moved = SpanRecord("0af7651916cd43dd8448eb211c80319d", "b7ad6b7169203331", "s", START, START)
    assert span_id_event_id(moved.trace_id, moved.span_id, START) != read["id"]


def test_a_span_without_a_model_is_refused_by_the_validation() -> None:
    from llmledger.core.errors import InvalidEventError

    read = event_json_from_span(_span({"gen_ai.system": "openai", "gen_ai.usage.input_tokens": 5}))
    assert isinstance(read, dict) and "model" not in read
    with pytest.raises(InvalidEventError, match="model"):
        parse_event(read, now=datetime(2026, 1, 1, tzinfo=UTC))


def test_the_docs_name_every_attribute_read() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for names in BUCKET_ATTRIBUTES.values():
        for name in names:
            if name.startswith("llmledger.usage."):
                continue
            assert f"`{name}`" in text, name
    assert "`llmledger.usage.<bucket>`" in text
