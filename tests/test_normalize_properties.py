"""Property tests: inclusivity holds for any counts; framing never changes a reading."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

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
