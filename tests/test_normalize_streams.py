"""Stream readers: accumulation rules, SSE framing, the Bedrock binary event stream, SDK dumps.

Synthetic transcripts here (marked as such) reuse the JSON shapes of the
recorded ones; only the counts are invented, to hit a rule a recording lacks.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llmledger.core.errors import ResponseParseError
from llmledger.core.usage import Usage
from llmledger.normalize import read_stream, read_stream_events
from llmledger.normalize.eventstream import iter_messages
from llmledger.normalize.sse import SSEDecoder, iter_sse, transcript_events

RECORDED = Path(__file__).parent / "fixtures" / "recorded"


def sse(*events: dict[str, Any], named: bool = False, done: bool = False) -> str:
    out = []
    for event in events:
        head = f"event: {event['type']}\n" if named else ""
        out.append(f"{head}data: {json.dumps(event)}\n\n")
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out)


# --- OpenAI chat -----------------------------------------------------------------------


def test_openai_stream_without_include_usage_is_missing_not_zero() -> None:
    text = (RECORDED / "openai_chat_stream_include_usage.sse").read_text()
    # Drop the usage chunk: what a stream without stream_options.include_usage looks like.
    without = "\n\n".join(b for b in text.split("\n\n") if '"choices":[]' not in b)
    reading = read_stream(without)
    assert reading.usage_source == "missing"
    assert reading.usage == Usage()
    assert reading.usage_raw is None
    assert reading.finish_reason == "tool_calls"
    assert reading.stream is True


def test_gateway_usage_on_every_chunk_takes_the_last() -> None:
    # Synthetic: some gateways repeat a cumulative usage on every chunk.
    chunks = [
        {
            "object": "chat.completion.chunk",
            "id": "gen-1",
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "cost": 0.0001},
        },
        {
            "object": "chat.completion.chunk",
            "id": "gen-1",
            "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 7, "cost": 0.00035},
        },
    ]
    reading = read_stream(sse(*chunks, done=True))
    assert reading.provider == "openrouter"
    assert reading.usage == Usage(input_tokens=10, output_tokens=7)
    assert reading.reported_cost == Decimal("0.00035")


def test_byok_cost_adds_the_upstream_charge() -> None:
    body = {
        "object": "chat.completion.chunk",
        "id": "gen-2",
        "choices": [],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 5,
            "cost": 0.001,
            "is_byok": True,
            "cost_details": {"upstream_inference_cost": 0.019},
        },
    }
    reading = read_stream_events([body], provider="openrouter")
    assert reading.reported_cost == Decimal("0.020")


# --- OpenAI Responses --------------------------------------------------------------------


def _response(status: str, usage: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "status": status,
        "model": "gpt-5",
        "service_tier": "default",
        "usage": usage,
        **extra,
    }


USAGE = {
    "input_tokens": 120,
    "input_tokens_details": {"cached_tokens": 100},
    "output_tokens": 64,
    "output_tokens_details": {"reasoning_tokens": 64},
    "total_tokens": 184,
}


@pytest.mark.parametrize(
    ("terminal", "finish"),
    [("response.incomplete", "max_output_tokens"), ("response.failed", "failed")],
)
def test_responses_incomplete_and_failed_carry_usage(terminal: str, finish: str) -> None:
    # Synthetic transcript with the recorded event shapes.
    status = "incomplete" if terminal == "response.incomplete" else "failed"
    details = {"reason": "max_output_tokens"} if status == "incomplete" else None
    text = sse(
        {
            "type": "response.created",
            "sequence_number": 0,
            "response": _response("in_progress", None),
        },
        {"type": "response.output_text.delta", "sequence_number": 1, "delta": "x"},
        {
            "type": terminal,
            "sequence_number": 2,
            "response": _response(status, USAGE, incomplete_details=details),
        },
        named=True,
    )
    reading = read_stream(text)
    assert (reading.provider, reading.operation) == ("openai", "responses")
    assert reading.usage == Usage(
        input_tokens=120, output_tokens=64, cache_read_tokens=100, reasoning_tokens=64
    )
    assert reading.finish_reason == finish
    assert reading.usage_raw == USAGE


def test_responses_stream_cut_before_completion_is_missing() -> None:
    text = sse({"type": "response.created", "response": _response("in_progress", None)})
    reading = read_stream(text)
    assert reading.usage_source == "missing"
    assert reading.finish_reason == "in_progress"


# --- Anthropic -----------------------------------------------------------------------------


def test_anthropic_message_delta_overwrites_and_never_adds() -> None:
    events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "model": "claude-x",
                "usage": {
                    "input_tokens": 40,
                    "cache_read_input_tokens": 900,
                    "cache_creation_input_tokens": 0,
                    "output_tokens": 1,
                },
            },
        },
        {"type": "message_delta", "delta": {"stop_reason": None}, "usage": {"output_tokens": 50}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {
                "input_tokens": 40,
                "cache_read_input_tokens": 900,
                "cache_creation_input_tokens": None,
                "output_tokens": 120,
            },
        },
    ]
    reading = read_stream_events(events, provider="anthropic")
    assert reading.usage == Usage(input_tokens=940, output_tokens=120, cache_read_tokens=900)
    assert reading.finish_reason == "max_tokens"
    assert reading.usage_raw["cache_creation_input_tokens"] == 0  # null did not erase it


def test_anthropic_stream_via_bedrock_invoke_chunks() -> None:
    # boto3 invoke_model_with_response_stream yields {"chunk": {"bytes": b"..."}}.
    inner = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_bdrk_1",
                "model": "claude-x",
                "usage": {
                    "input_tokens": 3,
                    "cache_creation_input_tokens": 500,
                    "output_tokens": 1,
                },
            },
        },
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 9},
        },
    ]
    events = [{"chunk": {"bytes": json.dumps(e).encode()}} for e in inner]
    reading = read_stream_events(events, provider="bedrock")
    assert reading.provider == "bedrock"
    assert reading.usage == Usage(input_tokens=503, output_tokens=9, cache_write_tokens=500)
    as_base64 = [
        {"chunk": {"bytes": base64.b64encode(json.dumps(e).encode()).decode()}} for e in inner
    ]
    assert read_stream_events(as_base64, provider="bedrock").usage == reading.usage


# --- Gemini --------------------------------------------------------------------------------


def test_gemini_sdk_model_dump_is_read_like_the_wire() -> None:
    wire = transcript_events((RECORDED / "gemini_stream.sse").read_text())

    def snake(chunk: dict[str, Any]) -> dict[str, Any]:
        meta = chunk["usageMetadata"]
        return {
            "response_id": chunk["responseId"],
            "model_version": chunk["modelVersion"],
            "candidates": [{"finish_reason": c.get("finishReason")} for c in chunk["candidates"]],
            "usage_metadata": {
                "prompt_token_count": meta["promptTokenCount"],
                "candidates_token_count": meta["candidatesTokenCount"],
                "thoughts_token_count": meta["thoughtsTokenCount"],
                "total_token_count": meta["totalTokenCount"],
                "prompt_tokens_details": [{"modality": "TEXT", "token_count": 18}],
            },
        }

    dumped = read_stream_events((snake(c) for c in wire), provider="google")
    direct = read_stream_events(wire, provider="google")
    assert (
        dumped.usage
        == direct.usage
        == Usage(input_tokens=18, output_tokens=115, reasoning_tokens=35)
    )
    assert (dumped.request_id, dumped.finish_reason) == (direct.request_id, "STOP")


def test_gemini_json_array_stream() -> None:
    chunks = transcript_events((RECORDED / "gemini_stream.sse").read_text())
    reading = read_stream(json.dumps(chunks))
    assert reading.usage.output_tokens == 115


# --- Bedrock binary event stream -------------------------------------------------------------


def _header(name: str, value: str) -> bytes:
    raw = value.encode()
    return bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw


def frame(event_type: str, payload: dict[str, Any], message_type: str = "event") -> bytes:
    """Our own encoder for the AWS event-stream framing (synthetic frames)."""
    headers = (
        _header(":event-type", event_type)
        + _header(":content-type", "application/json")
        + _header(":message-type", message_type)
    )
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + headers + body
    return head + struct.pack(">I", zlib.crc32(head))


def test_recorded_bedrock_stream_frames_verify() -> None:
    messages = list(iter_messages((RECORDED / "bedrock_converse_stream_nova.bin").read_bytes()))
    assert len(messages) == 33
    assert messages[0].headers[":event-type"] == "messageStart"
    assert messages[-1].headers[":event-type"] == "metadata"


def test_synthetic_bedrock_stream_with_cache_tokens() -> None:
    data = (
        frame("messageStart", {"role": "assistant"})
        + frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}})
        + frame("messageStop", {"stopReason": "max_tokens"})
        + frame(
            "metadata",
            {
                "usage": {
                    "inputTokens": 7,
                    "outputTokens": 3,
                    "cacheReadInputTokens": 1000,
                    "cacheWriteInputTokens": 24,
                    "totalTokens": 1034,
                },
                "metrics": {"latencyMs": 200},
            },
        )
    )
    reading = read_stream(data)
    assert reading.provider == "bedrock"
    assert reading.usage == Usage(
        input_tokens=1031, output_tokens=3, cache_read_tokens=1000, cache_write_tokens=24
    )
    assert reading.finish_reason == "max_tokens"


def test_bedrock_exception_frame_becomes_a_warning() -> None:
    data = frame("messageStart", {"role": "assistant"}) + frame(
        "throttlingException", {"message": "slow down"}, message_type="exception"
    )
    reading = read_stream(data, provider="bedrock")
    assert reading.usage_source == "missing"
    assert any("slow down" in w for w in reading.warnings)


@pytest.mark.parametrize("where", ["prelude", "payload", "message_crc"])
def test_bedrock_bad_crc_is_a_parse_error(where: str) -> None:
    data = bytearray((RECORDED / "bedrock_converse_stream_nova.bin").read_bytes())
    index = {"prelude": 9, "payload": 200, "message_crc": len(data) - 1}[where]
    data[index] ^= 0xFF
    with pytest.raises(ResponseParseError, match=r"CRC|impossible"):
        read_stream(bytes(data), provider="bedrock")


def test_bedrock_truncated_stream_is_a_parse_error() -> None:
    data = (RECORDED / "bedrock_converse_stream_nova.bin").read_bytes()
    with pytest.raises(ResponseParseError, match="truncated"):
        read_stream(data[:-10], provider="bedrock")
    with pytest.raises(ResponseParseError, match="truncated"):
        list(iter_messages(data + data[:8]))


# --- SSE framing ------------------------------------------------------------------------------


def test_sse_rules() -> None:
    text = ": comment\r\nevent: a\r\ndata: one\r\ndata:two\r\n\r\ndata: [DONE]\n\nretry: 5\nid: 1\n"
    assert list(iter_sse(text)) == [("a", "one\ntwo"), (None, "[DONE]")]


def test_sse_decoder_handles_split_crlf_and_utf8() -> None:
    payload = 'data: {"t": "caf\u00e9"}\r\n\r\n'.encode()
    decoder = SSEDecoder()
    events = []
    for i in range(len(payload)):
        events += decoder.feed(payload[i : i + 1])
    events += decoder.close()
    assert events == [(None, '{"t": "caf\u00e9"}')]


def test_transcript_without_final_blank_line_keeps_last_event() -> None:
    assert transcript_events('data: {"a": 1}') == [{"a": 1}]


def test_crlf_transcript_reads_the_same() -> None:
    text = (RECORDED / "anthropic_stream_thinking.sse").read_text()
    assert read_stream(text.replace("\n", "\r\n")).usage == read_stream(text).usage
