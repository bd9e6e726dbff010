"""Property tests: inclusivity holds for any counts; framing never changes a reading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from llmledger.core.usage import Usage
from llmledger.normalize import read_response, read_stream_events
from llmledger.normalize.sse import SSEDecoder, transcript_events

RECORDED = Path(__file__).parent / "fixtures" / "recorded"
counts = st.integers(min_value=0, max_value=10**9)


@given(uncached=counts, read=counts, five=counts, hour=counts, output=counts)
def test_anthropic_input_is_the_sum_of_its_three_fields(
    uncached: int, read: int, five: int, hour: int, output: int
) -> None:
    reading = read_response(
        {
            "type": "message",
            "usage": {
                "input_tokens": uncached,
                "cache_read_input_tokens": read,
                "cache_creation_input_tokens": five + hour,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": five,
                    "ephemeral_1h_input_tokens": hour,
                },
                "output_tokens": output,
            },
        }
    )
    usage = reading.usage
    assert usage.input_tokens == uncached + read + five + hour
    assert usage.uncached_input_tokens == uncached
    assert (usage.cache_write_5m_tokens, usage.cache_write_1h_tokens) == (five, hour)
    assert usage.problems() == [] and reading.warnings == []


@given(prompt=counts, tool=counts, candidates=counts, thoughts=counts, cached=counts)
def test_gemini_totals(prompt: int, tool: int, candidates: int, thoughts: int, cached: int) -> None:
    cached = min(cached, prompt)
    reading = read_response(
        {
            "usageMetadata": {
                "promptTokenCount": prompt,
                "toolUsePromptTokenCount": tool,
                "candidatesTokenCount": candidates,
                "thoughtsTokenCount": thoughts,
                "cachedContentTokenCount": cached,
            }
        }
    )
    assert reading.usage.total_tokens == prompt + tool + candidates + thoughts
    assert reading.warnings == []


@given(cuts=st.lists(st.integers(min_value=0, max_value=10**6), max_size=40), crlf=st.booleans())
def test_openai_stream_split_anywhere_reads_the_same(cuts: list[int], crlf: bool) -> None:
    raw = (RECORDED / "openai_chat_stream_include_usage.sse").read_bytes()
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    whole = read_stream_events(transcript_events(raw.decode()), provider="openai")
    points = sorted({c % (len(raw) + 1) for c in cuts})
    decoder = SSEDecoder()
    events = []
    start = 0
    for point in [*points, len(raw)]:
        events += decoder.feed(raw[start:point])
        start = point
    events += decoder.close()
    parsed = [json.loads(e.data) for e in events if e.data != "[DONE]"]
    split = read_stream_events(parsed, provider="openai")
    assert split == whole


_MODELS = st.sampled_from([None, "claude-main", "claude-opus-4-8", "claude-haiku-4-5"])
_iteration = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["message", "compaction", "advisor_message"]),
        "input_tokens": counts,
        "cache_read_input_tokens": counts,
        "five": counts,
        "hour": counts,
        "output_tokens": counts,
        "model": _MODELS,
    }
)


def _wire(step: dict[str, Any]) -> dict[str, Any]:
    wire = {
        "type": step["type"],
        "input_tokens": step["input_tokens"],
        "cache_read_input_tokens": step["cache_read_input_tokens"],
        "cache_creation_input_tokens": step["five"] + step["hour"],
        "cache_creation": {
            "ephemeral_5m_input_tokens": step["five"],
            "ephemeral_1h_input_tokens": step["hour"],
        },
        "output_tokens": step["output_tokens"],
    }
    if step["model"] is not None:
        wire["model"] = step["model"]
    return wire


@given(steps=st.lists(_iteration, min_size=1, max_size=6), thinking=counts)
def test_iterations_sum_to_the_usage_and_the_parts(
    steps: list[dict[str, Any]], thinking: int
) -> None:
    # The call's own model, as the response names it; an iteration naming it is its part.
    own = "claude-main"
    own_output = sum(s["output_tokens"] for s in steps if s["model"] in (None, own))
    thinking = min(thinking, own_output)
    messages = [s for s in steps if s["type"] == "message"]
    usage = {
        # The top level covers the message steps only, as the API reports it.
        "input_tokens": sum(s["input_tokens"] for s in messages),
        "cache_read_input_tokens": sum(s["cache_read_input_tokens"] for s in messages),
        "cache_creation_input_tokens": sum(s["five"] + s["hour"] for s in messages),
        "output_tokens": sum(s["output_tokens"] for s in messages),
        "output_tokens_details": {"thinking_tokens": thinking},
        "iterations": [_wire(s) for s in steps],
        "service_tier": "standard",
    }
    body = {"type": "message", "id": "msg_p", "model": own, "usage": usage}
    reading = read_response(body)

    # Each step normalised by hand (input = uncached + read + write), then summed.
    expected = Usage(
        input_tokens=sum(
            s["input_tokens"] + s["cache_read_input_tokens"] + s["five"] + s["hour"] for s in steps
        ),
        output_tokens=sum(s["output_tokens"] for s in steps),
        cache_read_tokens=sum(s["cache_read_input_tokens"] for s in steps),
        cache_write_tokens=sum(s["five"] + s["hour"] for s in steps),
        cache_write_5m_tokens=sum(s["five"] for s in steps),
        cache_write_1h_tokens=sum(s["hour"] for s in steps),
        reasoning_tokens=thinking,
    )
    assert reading.usage == expected
    assert sum((part.usage for part in reading.usage_parts), Usage()) == reading.usage
    assert [part.model for part in reading.usage_parts] == [
        None if s["model"] in (None, own) else s["model"] for s in steps
    ]
    for part, step in zip(reading.usage_parts, steps, strict=True):
        assert part.usage.input_tokens == (
            step["input_tokens"] + step["cache_read_input_tokens"] + step["five"] + step["hour"]
        )
        assert part.usage.output_tokens == step["output_tokens"]
        assert part.usage.problems() == []
    assert reading.usage.problems() == [] and reading.warnings == []
    assert reading.usage_raw["iterations"] == usage["iterations"]

    # The same call streamed: message_start holds the first step's counts so far,
    # message_delta the final usage; the reading is the same, nothing lost or doubled.
    first = usage["iterations"][0]
    start = {k: first[k] for k in ("input_tokens", "cache_read_input_tokens")}
    events = [
        {"type": "message_start", "message": {"id": "msg_p", "model": own, "usage": start}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage},
    ]
    streamed = read_stream_events(events, provider="anthropic")
    assert (streamed.usage, streamed.usage_parts, streamed.warnings) == (
        reading.usage,
        reading.usage_parts,
        [],
    )
