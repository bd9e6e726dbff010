"""The real ``openai`` client, instrumented, against recorded responses."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import openai
import pydantic
import pytest

import llmledger
from llmledger.capture import Instrumentation, capture_content, instrument
from llmledger.capture import openai as openai_capture
from llmledger.capture._core import fingerprint
from llmledger.capture._stainless import as_dict
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
    without_usage_chunk,
)

__all__ = ["instrumented", "ledger"]

CHAT = recorded("openai_chat_prompt_cache_hit.json")
CHAT_STREAM = recorded("openai_chat_stream_include_usage.sse")
RESPONSES = recorded("openai_responses_reasoning.json")
RESPONSES_STREAM = recorded("openai_responses_stream.sse")
EMBEDDINGS = recorded("openai_embeddings.json")
MESSAGES: Any = [{"role": "user", "content": "What is the capital of France?"}]


def _chat(body: dict[str, Any]) -> tuple[int, bytes, dict[str, str]]:
    headers = {"x-request-id": "req_chat_1"}
    if not body.get("stream"):
        return 200, CHAT, {**JSON, **headers}
    asked = (body.get("stream_options") or {}).get("include_usage")
    return 200, CHAT_STREAM if asked else without_usage_chunk(CHAT_STREAM), {**SSE, **headers}


def _responses(body: dict[str, Any]) -> tuple[int, bytes, dict[str, str]]:
    headers = {"x-request-id": "req_resp_1"}
    if body.get("stream"):
        return 200, RESPONSES_STREAM, {**SSE, **headers}
    return 200, RESPONSES, {**JSON, **headers}


def _replay() -> Replay:
    return Replay(
        {
            "/chat/completions": _chat,
            "/responses": _responses,
            "/embeddings": (200, EMBEDDINGS, {**JSON, "x-request-id": "req_emb_1"}),
        }
    )


@pytest.fixture
def replay() -> Replay:
    return _replay()


_OPTIONS: Any = {"api_key": "sk-test", "base_url": "https://api.openai.com/v1"}


@pytest.fixture
def client(replay: Replay) -> openai.OpenAI:
    return replay.sdk_client(openai.OpenAI, "openai", **_OPTIONS)


@pytest.fixture
def aclient(replay: Replay) -> openai.AsyncOpenAI:
    return replay.sdk_client(openai.AsyncOpenAI, "openai", asynchronous=True, **_OPTIONS)


# -- non-streamed ------------------------------------------------------------------------


def test_chat_create_is_recorded_with_usage_attribution_and_request_id(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    with llmledger.attribute(tenant="acme", user="u1", feature="search", tags={"doc": "7"}):
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert type(completion) is openai.types.chat.ChatCompletion
    event = ledger.one()
    assert (event.provider, event.operation, event.model, event.status) == (
        "openai",
        "chat",
        "gpt-4o-mini",
        "ok",
    )
    assert event.usage.input_tokens == 4020
    assert event.usage.cache_read_tokens == 4012
    assert event.usage_source == "provider"
    assert event.request_id == "req_chat_1"
    assert (event.tenant, event.user, event.feature, event.tags) == (
        "acme",
        "u1",
        "search",
        {"doc": "7"},
    )
    assert event.stream is False and event.duration_ms is not None and event.ts.tzinfo is not None
    assert event.api_key_fingerprint and "sk-test" not in event.api_key_fingerprint


def test_the_fingerprint_names_the_key_extra_headers_send_instead_of_the_clients(
    client: openai.OpenAI, replay: Replay, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        extra_headers={"Authorization": "Bearer sk-other-project"},
    )
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert [h["authorization"] for h in replay.headers] == [
        "Bearer sk-other-project",
        "Bearer sk-test",
    ]
    overridden, plain = ledger.events()
    assert overridden.api_key_fingerprint == fingerprint("sk-other-project")
    assert plain.api_key_fingerprint == fingerprint("sk-test")


def test_chat_parse_is_recorded_and_still_parses(
    replay: Replay, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    body = json.loads(CHAT)
    body["choices"][0]["message"]["content"] = '{"city": "Paris"}'
    replay.routes["/chat/completions"] = (200, json.dumps(body).encode(), JSON)

    class Answer(pydantic.BaseModel):
        city: str

    client = openai.OpenAI(api_key="sk-test", http_client=replay.sync_client(), max_retries=0)
    parsed = client.chat.completions.parse(
        model="gpt-4o-mini", messages=MESSAGES, response_format=Answer
    )
    assert parsed.choices[0].message.parsed == Answer(city="Paris")
    assert ledger.one().usage.cache_read_tokens == 4012


def test_responses_and_embeddings_are_recorded(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    client.responses.create(model="gpt-5-pro", input="hi")
    client.embeddings.create(model="text-embedding-3-small", input="hello")
    responses, embeddings = ledger.events()
    assert (
        responses.operation,
        responses.usage.reasoning_tokens,
        responses.usage.output_tokens,
    ) == ("responses", 64, 77)
    assert (embeddings.operation, embeddings.request_id) == ("embeddings", "req_emb_1")
    assert embeddings.usage.input_tokens == json.loads(EMBEDDINGS)["usage"]["prompt_tokens"]


def test_async_calls_are_recorded(
    aclient: openai.AsyncOpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    async def main() -> None:
        with llmledger.attribute(user="async-user"):
            await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        await aclient.embeddings.create(model="text-embedding-3-small", input="hello")

    asyncio.run(main())
    chat, embeddings = ledger.events()
    assert (chat.user, chat.usage.cache_read_tokens) == ("async-user", 4012)
    assert embeddings.operation == "embeddings"


def test_with_raw_response_is_recorded_from_its_body(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["x-request-id"] == "req_chat_1"
    assert raw.parse().usage is not None
    event = ledger.one()
    assert (event.request_id, event.usage.input_tokens) == ("req_chat_1", 4020)


def test_with_raw_response_stream_is_recorded_when_consumed(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    stream = raw.parse()
    assert isinstance(stream, openai.Stream)
    assert len(list(stream)) == 8
    event = ledger.one()
    assert (event.status, event.stream, event.usage.input_tokens) == ("ok", True, 53)


# -- streams ----------------------------------------------------------------------------------


def _stream(client: openai.OpenAI, **extra: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, **extra
    )


def test_stream_consumed_to_the_end_keeps_its_type_and_is_ok(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    stream = _stream(client, stream_options={"include_usage": True})
    assert isinstance(stream, openai.Stream)
    assert stream.response.status_code == 200
    chunks = list(stream)
    assert chunks[-1].usage is not None  # the caller asked for it, so it sees it
    event = ledger.one()
    assert (event.status, event.stream, event.usage_source) == ("ok", True, "provider")
    assert (event.usage.input_tokens, event.usage.output_tokens) == (53, 15)
    assert event.ttft_ms is not None and event.duration_ms is not None
    assert event.ttft_ms <= event.duration_ms
    assert event.request_id == "req_chat_1"
    assert event.response_model == "gpt-4o-mini-2024-07-18"


def test_stream_without_include_usage_has_its_usage_missing_not_zero(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    for _ in _stream(client):
        pass
    event = ledger.one()
    assert (event.status, event.usage_source) == ("ok", "missing")


def test_include_usage_option_asks_for_usage_and_hides_the_extra_chunk(
    client: openai.OpenAI, replay: Replay, ledger: KeepingLedger
) -> None:
    messages = copy.deepcopy(MESSAGES)
    with instrument(include_usage=True):
        chunks = list(
            client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
        )
    assert replay.requests[-1]["stream_options"] == {"include_usage": True}
    assert messages == MESSAGES
    assert all(chunk.choices for chunk in chunks)  # the usage-only chunk is not shown
    event = ledger.one()
    assert (event.usage_source, event.usage.input_tokens) == ("provider", 53)


def test_include_usage_option_respects_the_callers_own_choice(
    client: openai.OpenAI, replay: Replay, ledger: KeepingLedger
) -> None:
    options: Any = {"include_usage": False}
    with instrument(include_usage=True):
        list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options=options
            )
        )
    assert replay.requests[-1]["stream_options"] == {"include_usage": False}
    assert options == {"include_usage": False}
    assert ledger.one().usage_source == "missing"


def test_stream_broken_out_of_is_incomplete(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    for _chunk in _stream(client, stream_options={"include_usage": True}):
        break
    event = ledger.one()
    assert event.status == "incomplete"


def test_stream_closed_early_is_incomplete_and_recorded_once(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    stream = _stream(client)
    next(stream)
    stream.close()
    stream.close()
    del stream
    assert [e.status for e in ledger.events()] == ["incomplete"]


def test_stream_left_from_a_with_block_is_incomplete(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    with _stream(client) as stream:
        next(iter(stream))
    assert ledger.one().status == "incomplete"


def test_stream_never_iterated_is_abandoned_when_closed_or_dropped(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    _stream(client).close()
    _stream(client)  # dropped at once
    assert [e.status for e in ledger.events()] == ["abandoned", "abandoned"]


def test_stream_helper_and_responses_streams(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert final.usage is not None
    for _event in client.responses.create(model="gpt-5", input="hi", stream=True):
        pass
    with client.responses.stream(model="gpt-5", input="hi") as responses_stream:
        for _event in responses_stream:
            break
    helper, responses, broken = ledger.events()
    assert (helper.status, helper.usage.input_tokens) == ("ok", 53)
    assert (responses.operation, responses.status, responses.service_tier) == (
        "responses",
        "ok",
        "flex",
    )
    assert responses.usage.output_tokens > 0
    assert (broken.operation, broken.status) == ("responses", "incomplete")


def test_async_stream_endings(
    aclient: openai.AsyncOpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    async def main() -> None:
        stream = await aclient.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        assert isinstance(stream, openai.AsyncStream)
        async for _chunk in stream:
            pass
        async with await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        ) as early:
            async for _chunk in early:
                break
        never = await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        await never.close()

    asyncio.run(main())
    assert [(e.status, e.usage_source) for e in ledger.events()] == [
        ("ok", "provider"),
        ("incomplete", "missing"),
        ("abandoned", "missing"),
    ]


# -- failures, compatible servers, the handle ----------------------------------------------------


def test_failed_call_is_recorded_and_the_exception_is_unchanged(
    replay: Replay, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    error = {"error": {"message": "overloaded", "type": "server_error", "code": None}}
    replay.routes["/chat/completions"] = (
        500,
        json.dumps(error).encode(),
        {**JSON, "x-request-id": "req_bad"},
    )
    client = openai.OpenAI(api_key="sk-test", http_client=replay.sync_client(), max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.request_id == "req_bad"
    event = ledger.one()
    assert (event.status, event.error_type, event.request_id) == (
        "error",
        "InternalServerError",
        "req_bad",
    )
    assert event.usage_source == "missing" and event.model == "gpt-4o-mini"
    assert event.duration_ms is not None


def test_openai_compatible_base_url_names_the_provider(
    replay: Replay, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    client = openai.OpenAI(
        api_key="or-key",
        base_url="https://openrouter.ai/api/v1",
        http_client=replay.sync_client(),
        max_retries=0,
    )
    client.chat.completions.create(model="openai/gpt-4o-mini", messages=MESSAGES)
    for _ in client.chat.completions.create(
        model="openai/gpt-4o-mini", messages=MESSAGES, stream=True
    ):
        pass
    plain, streamed = ledger.events()
    assert (plain.provider, plain.model) == ("openrouter", "openai/gpt-4o-mini")
    assert streamed.provider == "openrouter"


@pytest.mark.parametrize(
    ("fixture", "base_url", "provider"),
    [
        ("openai_chat_prompt_cache_hit.json", "https://api.openai.com/v1", "openai"),
        ("openai_chat_audio.json", "https://api.openai.com/v1", "openai"),
        ("openai_chat_o3mini_reasoning.json", "https://api.openai.com/v1", "openai"),
        ("openrouter_chat_cost.json", "https://openrouter.ai/api/v1", "openrouter"),
        ("mistral_chat_cached.json", "https://api.mistral.ai/v1", "mistral"),
    ],
)
def test_a_chat_response_is_read_from_its_fields_as_from_its_whole_body(
    fixture: str,
    base_url: str,
    provider: str,
    ledger: KeepingLedger,
    instrumented: Instrumentation,
) -> None:
    # The hook reads a few fields of the SDK's model rather than dumping it whole:
    # the event must be what reading the recorded body itself gives.
    body = recorded(fixture)
    replay = Replay({"/chat/completions": (200, body, JSON)})
    client = openai.OpenAI(
        api_key="sk-test", base_url=base_url, http_client=replay.sync_client(), max_retries=0
    )
    completion = client.chat.completions.create(model="m", messages=MESSAGES)
    read_body = openai_capture.sdk().read_body
    assert read_body is not None and read_body("chat", completion) is not None
    event = ledger.one()
    reading = read_response(json.loads(body), provider=provider, operation="chat")
    assert event.provider == provider
    assert as_read(event) == as_read(reading)
    if reading.reported_cost is not None:
        assert (event.cost, event.cost_source) == (reading.reported_cost, "provider-reported")


@pytest.mark.parametrize(
    ("base_url", "provider"),
    [("https://api.openai.com/v1", "openai"), ("https://openrouter.ai/api/v1", "openrouter")],
)
def test_stream_chunks_are_read_from_their_fields_as_from_their_whole_events(
    base_url: str, provider: str, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    replay = Replay({"/chat/completions": (200, CHAT_STREAM, SSE)})
    client = openai.OpenAI(
        api_key="sk-test", base_url=base_url, http_client=replay.sync_client(), max_retries=0
    )
    seen = list(
        client.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    spec = openai_capture.sdk().streams["chat"]
    assert spec.read_chunk is not None
    for chunk in seen:
        fields = spec.read_chunk(chunk)
        assert fields is not None
        assert spec.has_output(fields) == spec.has_output(as_dict(chunk))
    assert any(spec.has_output(as_dict(chunk)) for chunk in seen)
    event = ledger.one()
    reading = read_stream(CHAT_STREAM, provider=provider, operation="chat")
    assert (event.provider, event.status, event.stream) == (provider, "ok", True)
    assert (
        event.usage,
        event.usage_raw,
        event.usage_source,
        event.response_model,
        event.finish_reason,
        event.service_tier,
        event.warnings,
    ) == (
        reading.usage,
        reading.usage_raw,
        reading.usage_source,
        reading.response_model,
        reading.finish_reason,
        reading.service_tier,
        tuple(reading.warnings),
    )


def test_instrument_is_idempotent_and_undone_by_its_handle(
    client: openai.OpenAI, ledger: KeepingLedger
) -> None:
    from openai._base_client import SyncAPIClient

    original = SyncAPIClient.__dict__["request"]
    first = instrument()
    assert instrument() is first
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(ledger.events()) == 1  # hooked once, not twice
    first.uninstrument()
    assert SyncAPIClient.__dict__["request"] is original
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(ledger.events()) == 1


def _long_stream(repeats: int) -> bytes:
    """The recorded chat stream with its second chunk (an argument delta) repeated."""
    frames = [frame for frame in CHAT_STREAM.split(b"\n\n") if frame.strip()]
    return b"\n\n".join([frames[0], *[frames[1]] * repeats, *frames[1:]]) + b"\n\n"


def test_a_long_stream_keeps_only_the_chunks_its_reading_needs(
    ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    from llmledger.capture._streams import tracker_of

    body = _long_stream(200)
    replay = Replay({"/chat/completions": (200, body, SSE)})
    client = replay.sdk_client(openai.OpenAI, "openai", **_OPTIONS)
    stream = _stream(client, stream_options={"include_usage": True})
    chunks = list(stream)
    tracker = tracker_of(stream)
    assert tracker is not None and len(chunks) > 200
    # The first chunks (time to first token, id, model), the finish reason, the usage.
    assert len(tracker.chunks) <= 10
    event = ledger.one()
    assert (event.status, event.usage.input_tokens, event.usage.output_tokens) == ("ok", 53, 15)
    assert event.finish_reason == "tool_calls" and event.ttft_ms is not None

    # Kept text needs every chunk.
    with capture_content():
        stream = _stream(client, stream_options={"include_usage": True})
        every = list(stream)
    tracker = tracker_of(stream)
    assert tracker is not None and len(tracker.chunks) == len(every)


@pytest.mark.parametrize("asynchronous", [False, True])
@pytest.mark.parametrize("hidden", [False, True])
def test_a_long_stream_read_to_the_end_is_read_whole(
    asynchronous: bool, hidden: bool, ledger: KeepingLedger
) -> None:
    # Asked for by the option, the usage chunk is hidden; asked for by the caller, shown.
    replay = Replay({"/chat/completions": (200, _long_stream(50), SSE)})
    asked: Any = {} if hidden else {"stream_options": {"include_usage": True}}
    with instrument(include_usage=hidden):
        if asynchronous:
            aclient = replay.sdk_client(openai.AsyncOpenAI, "openai", asynchronous=True, **_OPTIONS)

            async def consume() -> list[Any]:
                stream = await aclient.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=True, **asked
                )
                return [chunk async for chunk in stream]

            chunks = asyncio.run(consume())
        else:
            client = replay.sdk_client(openai.OpenAI, "openai", **_OPTIONS)
            chunks = list(_stream(client, **asked))
    assert len(chunks) > 50
    assert all(chunk.choices for chunk in chunks) == hidden
    event = ledger.one()
    assert (event.status, event.usage.input_tokens, event.usage.output_tokens) == ("ok", 53, 15)
    assert event.finish_reason == "tool_calls" and event.ttft_ms is not None
