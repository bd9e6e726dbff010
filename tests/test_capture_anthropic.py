"""The real ``anthropic`` client, instrumented, against recorded responses."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
import pytest

import llmledger
from llmledger.capture import Instrumentation
from llmledger.capture._stainless import as_dict
from llmledger.capture.anthropic import _event_fields, _has_output, _message_body
from llmledger.normalize import read_response, read_stream
from tests.test_capture_support import (
    JSON,
    SSE,
    KeepingLedger,
    Replay,
    as_read,
    instrumented,
    ledger,
    recorded,
)

__all__ = ["instrumented", "ledger"]

MESSAGE = recorded("anthropic_messages_cache_read.json")
THINKING_STREAM = recorded("anthropic_stream_thinking.sse")
MESSAGES: Any = [{"role": "user", "content": "Hello"}]
MODEL = "claude-sonnet-4-6"


def _messages(body: dict[str, Any]) -> tuple[int, bytes, dict[str, str]]:
    headers = {"request-id": "req_ant_1"}
    if body.get("stream"):
        return 200, THINKING_STREAM, {**SSE, **headers}
    return 200, MESSAGE, {**JSON, **headers}


@pytest.fixture
def replay() -> Replay:
    return Replay({"/v1/messages": _messages})


_OPTIONS: Any = {"api_key": "sk-ant-test", "base_url": "https://api.anthropic.com"}


@pytest.fixture
def client(replay: Replay) -> anthropic.Anthropic:
    return replay.sdk_client(anthropic.Anthropic, "anthropic", **_OPTIONS)


@pytest.fixture
def aclient(replay: Replay) -> anthropic.AsyncAnthropic:
    return replay.sdk_client(anthropic.AsyncAnthropic, "anthropic", asynchronous=True, **_OPTIONS)


def _create(client: anthropic.Anthropic, **extra: Any) -> Any:
    return client.messages.create(model=MODEL, max_tokens=1024, messages=MESSAGES, **extra)


def test_messages_create_counts_cache_reads_into_input(
    client: anthropic.Anthropic, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    with llmledger.attribute(feature="chat"):
        message = _create(client)
    assert type(message) is anthropic.types.Message
    event = ledger.one()
    assert (event.provider, event.operation, event.status, event.feature) == (
        "anthropic",
        "chat",
        "ok",
        "chat",
    )
    assert (event.usage.input_tokens, event.usage.cache_read_tokens) == (3 + 1111, 1111)
    assert event.request_id == "req_ant_1"


def test_with_raw_response_and_async_create(
    client: anthropic.Anthropic,
    aclient: anthropic.AsyncAnthropic,
    ledger: KeepingLedger,
    instrumented: Instrumentation,
) -> None:
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    assert raw.parse().usage.cache_read_input_tokens == 1111

    async def main() -> None:
        await aclient.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)

    asyncio.run(main())
    raw_event, async_event = ledger.events()
    assert raw_event.request_id == "req_ant_1"
    assert async_event.usage.cache_read_tokens == 1111


def test_stream_consumed_is_ok_with_cumulative_usage_and_ttft(
    client: anthropic.Anthropic, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    stream = _create(client, stream=True)
    assert isinstance(stream, anthropic.Stream)
    for _event in stream:
        pass
    event = ledger.one()
    assert (event.status, event.stream, event.usage.output_tokens) == ("ok", True, 282)
    assert event.ttft_ms is not None and event.request_id == "req_ant_1"


def test_stream_helper_to_the_end_and_left_early(
    client: anthropic.Anthropic, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    with client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == 282
    with client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES) as early:
        for _text in early.text_stream:
            break
    done, left = ledger.events()
    assert (done.status, done.usage.output_tokens) == ("ok", 282)
    assert left.status == "incomplete"
    assert left.usage.input_tokens > 0  # message_start had arrived


def test_stream_endings_broken_closed_dropped(
    client: anthropic.Anthropic, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    for _event in _create(client, stream=True):
        break
    closed = _create(client, stream=True)
    closed.close()
    _create(client, stream=True)
    # Before anthropic 1.x a dropped stream is in a reference cycle, so the one broken
    # out of is recorded at the next garbage collection rather than at once: compare as a set.
    statuses = sorted(e.status for e in ledger.events())
    assert statuses == ["abandoned", "abandoned", "incomplete"]


def test_async_stream_helper(
    aclient: anthropic.AsyncAnthropic, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    async def main() -> None:
        async with aclient.messages.stream(
            model=MODEL, max_tokens=1024, messages=MESSAGES
        ) as stream:
            async for _text in stream.text_stream:
                pass
        stream2 = await aclient.messages.create(
            model=MODEL, max_tokens=10, messages=MESSAGES, stream=True
        )
        async for _event in stream2:
            break
        await stream2.close()

    asyncio.run(main())
    assert [e.status for e in ledger.events()] == ["ok", "incomplete"]


def test_failed_call_records_the_request_id(
    replay: Replay, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    replay.routes["/v1/messages"] = (
        529,
        json.dumps(error).encode(),
        {**JSON, "request-id": "req_x"},
    )
    client = anthropic.Anthropic(
        api_key="k", http_client=replay.sync_client("anthropic"), max_retries=0
    )
    with pytest.raises(anthropic.APIStatusError):
        _create(client)
    event = ledger.one()
    assert (event.status, event.request_id, event.model) == ("error", "req_x", MODEL)
    assert event.error_type is not None and "Overloaded" in (event.error_message or "")


def _steps_client(body: bytes, headers: dict[str, str]) -> anthropic.Anthropic:
    replay = Replay({"/v1/messages": (200, body, headers)})
    return replay.sdk_client(anthropic.Anthropic, "anthropic", **_OPTIONS)


def test_an_advisor_call_keeps_its_steps_and_models_on_the_event(
    ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    client = _steps_client(recorded("anthropic_messages_advisor_tool.json"), JSON)
    client.messages.create(model="claude-sonnet-5", max_tokens=1024, messages=MESSAGES)
    event = ledger.one()
    # 1128 + 2518 + 1262 in, 110 + 22 + 11 out: every step billed, under the call's model
    assert (event.model, event.usage.input_tokens, event.usage.output_tokens) == (
        "claude-sonnet-5",
        4908,
        143,
    )
    assert [(p.model, p.usage.input_tokens) for p in event.usage_parts] == [
        (None, 1128),
        ("claude-opus-4-8", 2518),
        (None, 1262),
    ]
    assert event.service_tier == "standard"


def test_a_compaction_stream_and_a_web_search_reach_the_event(
    ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    stream = _steps_client(recorded("anthropic_stream_compaction_cache_read.sse"), SSE)
    for _event in _create(stream, stream=True):
        pass
    searched = _steps_client(recorded("anthropic_messages_web_search.json"), JSON)
    _create(searched)
    compacted, search = ledger.events()
    # compaction 100 + 55096 read, 83 out; message 181, 8 out
    assert (compacted.usage.input_tokens, compacted.usage.cache_read_tokens) == (55377, 55096)
    assert [p.usage.output_tokens for p in compacted.usage_parts] == [83, 8]
    assert (compacted.fee_counts, search.fee_counts) == ({}, {"web_searches": 1})
    assert compacted.warnings == ()


@pytest.mark.parametrize(
    "fixture",
    [
        "anthropic_messages_cache_read.json",
        "anthropic_messages_advisor_tool.json",
        "anthropic_messages_compaction_cache_write.json",
        "anthropic_messages_compaction_end_to_end.json",
        "anthropic_messages_web_search.json",
    ],
)
def test_a_message_is_read_from_its_fields_as_from_its_whole_body(
    fixture: str, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    # The hook reads a few fields of the SDK's model rather than dumping it whole:
    # the event must be what reading the recorded body itself gives.
    body = recorded(fixture)
    replay = Replay({"/v1/messages": (200, body, JSON)})
    client = replay.sdk_client(anthropic.Anthropic, "anthropic", **_OPTIONS)
    message = client.messages.create(model="m", max_tokens=64, messages=MESSAGES)
    read_body = _message_body(anthropic.types.Message)
    assert read_body is not None and read_body("chat", message) is not None
    event = ledger.one()
    reading = read_response(json.loads(body), provider="anthropic", operation="chat")
    assert as_read(event) == as_read(reading)


@pytest.mark.parametrize(
    "fixture",
    [
        "anthropic_sdk_basic_stream.sse",
        "anthropic_stream_advisor_tool.sse",
        "anthropic_stream_cache_write_1h.sse",
        "anthropic_stream_compaction_cache_read.sse",
        "anthropic_stream_thinking.sse",
    ],
)
def test_stream_events_are_read_from_their_fields_as_from_their_whole_events(
    fixture: str, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    body = recorded(fixture)
    seen = list(_create(_steps_client(body, SSE), stream=True))
    for stream_event in seen:
        fields = _event_fields(stream_event)
        assert fields is not None
        assert _has_output(fields) == _has_output(as_dict(stream_event))
    assert any(_has_output(as_dict(stream_event)) for stream_event in seen)
    event = ledger.one()
    reading = read_stream(body, provider="anthropic", operation="chat")
    assert (event.status, event.stream) == ("ok", True)
    assert as_read(event) == as_read(reading)
