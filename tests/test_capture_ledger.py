"""Automatic capture end to end: the real ledger (``configure()``, the writer, the SQLite
store in the test's ``LLMLEDGER_HOME``) and the real SDK clients, against the local
simulated provider and against recorded responses. What is asserted is what the
store holds after ``flush()``: usage, priced cost, attribution, status and timings."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

import llmledger
from llmledger.capture import Instrumentation, instrument
from llmledger.core.events import UsageEvent
from llmledger.core.usage import Usage
from llmledger.runtime.ledger import Ledger
from llmledger.sim import SimulatedProvider
from tests.test_capture_support import JSON, Replay, recorded

CLAUDE = "claude-haiku-4-5"
QUESTION: Any = [{"role": "user", "content": "What is the capital of France?"}]
FAILING: Any = [{"role": "user", "content": "Please [fail] now."}]


@pytest.fixture
def ledger() -> Ledger:
    return llmledger.configure()


@pytest.fixture
def hooks(ledger: Ledger) -> Iterator[Instrumentation]:
    handle = instrument()
    yield handle
    handle.uninstrument()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedProvider]:
    with SimulatedProvider() as provider:
        yield provider


@pytest.fixture
def oa(sim: SimulatedProvider) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-sim", base_url=sim.openai_base_url, max_retries=0)


@pytest.fixture
def an(sim: SimulatedProvider) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-sim", base_url=sim.anthropic_base_url, max_retries=0)


def stored(ledger: Ledger) -> list[UsageEvent]:
    """Every event in the store, oldest first, once the writer has committed them."""
    gc.collect()  # streams dropped unread are recorded when collected
    assert llmledger.flush(10)
    return sorted(ledger.store.events(), key=lambda event: event.ts)


def only(ledger: Ledger) -> UsageEvent:
    events = stored(ledger)
    assert len(events) == 1, events
    return events[0]


def assert_priced(event: UsageEvent) -> None:
    assert event.cost is not None and event.cost > 0, event.unpriced_reason
    assert event.cost_source == "catalog" and event.price_ref


# -- the simulated provider: openai ------------------------------------------------------------


def test_openai_chat_is_stored_with_usage_cost_and_attribution(
    ledger: Ledger, hooks: Instrumentation, oa: openai.OpenAI
) -> None:
    with llmledger.attribute(tenant="acme", user="u1", feature="search", tags={"doc": "7"}):
        completion = oa.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    event = only(ledger)
    assert completion.usage is not None
    assert (event.provider, event.operation, event.model, event.status) == (
        "openai",
        "chat",
        "gpt-4o-mini",
        "ok",
    )
    assert event.usage.input_tokens == completion.usage.prompt_tokens
    assert event.usage.output_tokens == completion.usage.completion_tokens
    assert event.request_id is not None and event.request_id.startswith("req_")
    assert (event.tenant, event.user, event.feature, event.tags) == (
        "acme",
        "u1",
        "search",
        {"doc": "7"},
    )
    assert event.duration_ms is not None and event.duration_ms > 0 and event.ttft_ms is None
    assert_priced(event)


def test_openai_stream_read_to_the_end_has_usage_and_ttft(
    ledger: Ledger, hooks: Instrumentation, oa: openai.OpenAI
) -> None:
    stream = oa.chat.completions.create(
        model="gpt-4o-mini",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None
    event = only(ledger)
    assert (event.status, event.stream, event.usage_source) == ("ok", True, "provider")
    assert (event.usage.input_tokens, event.usage.output_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )
    assert event.ttft_ms is not None and event.duration_ms is not None
    assert 0 < event.ttft_ms <= event.duration_ms
    assert_priced(event)


def test_openai_stream_endings_incomplete_and_abandoned(
    ledger: Ledger, hooks: Instrumentation, oa: openai.OpenAI
) -> None:
    with oa.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, stream=True) as early:
        for _chunk in early:
            break
    oa.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, stream=True).close()
    oa.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, stream=True)  # dropped
    statuses = [event.status for event in stored(ledger)]
    assert statuses == ["incomplete", "abandoned", "abandoned"]


def test_openai_failed_call_is_stored_as_an_error_that_costs_nothing(
    ledger: Ledger, hooks: Instrumentation, oa: openai.OpenAI
) -> None:
    with pytest.raises(openai.InternalServerError):
        oa.chat.completions.create(model="gpt-4o-mini", messages=FAILING)
    event = only(ledger)
    assert (event.status, event.error_type, event.usage_source) == (
        "error",
        "InternalServerError",
        "missing",
    )
    assert event.request_id is not None
    assert not event.cost


def test_openai_responses_and_async_calls(
    ledger: Ledger, hooks: Instrumentation, sim: SimulatedProvider
) -> None:
    client = openai.AsyncOpenAI(api_key="sk-sim", base_url=sim.openai_base_url, max_retries=0)

    async def main() -> None:
        with llmledger.attribute(feature="async"):
            await client.responses.create(model="gpt-4o-mini", input="Hello")
            stream = await client.responses.create(model="gpt-4o-mini", input="Hi", stream=True)
            async for _event in stream:
                pass
        await client.close()

    asyncio.run(main())
    plain, streamed = stored(ledger)
    assert (plain.operation, plain.status, plain.feature) == ("responses", "ok", "async")
    assert (streamed.operation, streamed.status, streamed.stream) == ("responses", "ok", True)
    assert streamed.usage.output_tokens > 0 and streamed.ttft_ms is not None
    assert_priced(plain)
    assert_priced(streamed)


# -- the simulated provider: anthropic ----------------------------------------------------------


def test_anthropic_message_and_stream(
    ledger: Ledger, hooks: Instrumentation, an: anthropic.Anthropic
) -> None:
    with llmledger.attribute(user="u2"):
        message = an.messages.create(model=CLAUDE, max_tokens=200, messages=QUESTION)
        with an.messages.stream(model=CLAUDE, max_tokens=200, messages=QUESTION) as stream:
            final = stream.get_final_message()
    plain, streamed = stored(ledger)
    for event, usage in ((plain, message.usage), (streamed, final.usage)):
        assert (event.provider, event.model, event.status, event.user) == (
            "anthropic",
            CLAUDE,
            "ok",
            "u2",
        )
        assert event.usage.output_tokens == usage.output_tokens
        assert event.usage.input_tokens == (
            usage.input_tokens
            + (usage.cache_read_input_tokens or 0)
            + (usage.cache_creation_input_tokens or 0)
        )
        assert_priced(event)
    assert streamed.stream and streamed.ttft_ms is not None and plain.request_id


def test_anthropic_stream_left_early_and_failed_call(
    ledger: Ledger, hooks: Instrumentation, an: anthropic.Anthropic
) -> None:
    with an.messages.stream(model=CLAUDE, max_tokens=200, messages=QUESTION) as stream:
        for _text in stream.text_stream:
            break
    with pytest.raises(anthropic.InternalServerError):
        an.messages.create(model=CLAUDE, max_tokens=200, messages=FAILING)
    left, failed = stored(ledger)
    assert left.status == "incomplete" and left.usage.input_tokens > 0
    assert (failed.status, failed.error_type) == ("error", "InternalServerError")


# -- recorded responses through MockTransport --------------------------------------------------


def test_recorded_openai_cache_hit_is_priced_with_the_cache_rate(
    ledger: Ledger, hooks: Instrumentation
) -> None:
    replay = Replay(
        {"/chat/completions": (200, recorded("openai_chat_prompt_cache_hit.json"), JSON)}
    )
    client = openai.OpenAI(api_key="sk-test", http_client=replay.sync_client(), max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    event = only(ledger)
    assert (event.usage.input_tokens, event.usage.cache_read_tokens, event.usage.output_tokens) == (
        4020,
        4012,
        4,
    )
    assert_priced(event)
    assert event.cost_breakdown and event.cost_breakdown.get("cache_read_tokens")
    # The same call with no cache hit costs more: the cached part got the cache rate.
    uncached = dataclasses.replace(
        event,
        usage=Usage(input_tokens=4020, output_tokens=4),
        cost=None,
        cost_breakdown=None,
        cost_source=None,
        price_ref=None,
    )
    assert event.cost is not None and event.cost < (ledger.prepare(uncached).cost or 0)


def test_recorded_anthropic_cache_read_counts_every_input_token(
    ledger: Ledger, hooks: Instrumentation
) -> None:
    body = recorded("anthropic_messages_cache_read.json")
    replay = Replay({"/v1/messages": (200, body, {**JSON, "request-id": "req_rec"})})
    client = anthropic.Anthropic(
        api_key="k", http_client=replay.sync_client("anthropic"), max_retries=0
    )
    message = client.messages.create(model=CLAUDE, max_tokens=100, messages=QUESTION)
    event = only(ledger)
    usage = message.usage
    assert event.usage.cache_read_tokens == usage.cache_read_input_tokens
    assert event.usage.input_tokens == (
        usage.input_tokens
        + (usage.cache_read_input_tokens or 0)
        + (usage.cache_creation_input_tokens or 0)
    )
    assert event.request_id == "req_rec"
    assert_priced(event)


# -- with_streaming_response: the caller reads the body itself ---------------------------------


def test_streaming_response_calls_are_recorded_however_the_body_is_read(
    ledger: Ledger, sim: SimulatedProvider, oa: openai.OpenAI
) -> None:
    with instrument(include_usage=True):
        create = oa.chat.completions.with_streaming_response.create
        with create(model="gpt-4o-mini", messages=QUESTION) as response:
            completion = response.parse()
        with create(model="gpt-4o-mini", messages=QUESTION, stream=True) as response:
            lines = list(response.iter_lines())
        with create(model="gpt-4o-mini", messages=QUESTION, stream=True) as response:
            pass  # closed unread
    plain, streamed, unread = stored(ledger)
    assert completion.usage is not None
    assert (plain.status, plain.usage.input_tokens) == ("ok", completion.usage.prompt_tokens)
    assert plain.request_id is not None
    assert_priced(plain)
    # The caller's bytes are the server's: no usage chunk was added to its request.
    assert not any('"choices":[]' in line for line in lines)
    assert (streamed.status, streamed.stream, streamed.usage_source) == ("ok", True, "missing")
    assert streamed.ttft_ms is not None
    assert unread.status == "abandoned"


def test_streaming_response_stream_with_usage_and_anthropic(
    ledger: Ledger, hooks: Instrumentation, oa: openai.OpenAI, an: anthropic.Anthropic
) -> None:
    with oa.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        for _chunk in response.parse():
            pass
    with an.messages.with_streaming_response.create(
        model=CLAUDE, max_tokens=100, messages=QUESTION, stream=True
    ) as response:
        for _line in response.iter_lines():
            break
    with an.messages.with_streaming_response.create(
        model=CLAUDE, max_tokens=100, messages=QUESTION
    ) as response:
        message = response.parse()
    openai_stream, left, whole = stored(ledger)
    assert (openai_stream.status, openai_stream.usage_source) == ("ok", "provider")
    assert openai_stream.usage.output_tokens > 0
    assert_priced(openai_stream)
    # Left after one line: the status follows what had arrived on the wire by then.
    assert left.status in ("ok", "incomplete") and left.usage.input_tokens > 0
    assert (whole.status, whole.usage.output_tokens) == ("ok", message.usage.output_tokens)
    assert_priced(whole)


def test_async_streaming_response(
    ledger: Ledger, hooks: Instrumentation, sim: SimulatedProvider
) -> None:
    client = openai.AsyncOpenAI(api_key="sk-sim", base_url=sim.openai_base_url, max_retries=0)

    async def main() -> None:
        create = client.chat.completions.with_streaming_response.create
        async with create(model="gpt-4o-mini", messages=QUESTION) as response:
            await response.parse()
        async with create(model="gpt-4o-mini", messages=QUESTION, stream=True) as response:
            async for _line in response.iter_lines():
                pass
        await client.close()

    asyncio.run(main())
    plain, streamed = stored(ledger)
    assert (plain.status, plain.stream, streamed.status, streamed.stream) == (
        "ok",
        False,
        "ok",
        True,
    )
    assert plain.usage.output_tokens > 0


# -- track() around an instrumented call -----------------------------------------------------


def test_track_around_an_instrumented_call_stores_one_priced_event(
    ledger: Ledger, hooks: Instrumentation, oa: openai.OpenAI
) -> None:
    assert ledger.prices.wait(120)  # t.event is priced from the loaded prices
    with llmledger.track(provider="openai", model="gpt-4o-mini", feature="summary") as t:
        t.set_response(oa.chat.completions.create(model="gpt-4o-mini", messages=QUESTION))
    event = only(ledger)
    assert t.event is not None and t.event.id == event.id
    assert t.event.cost == event.cost and t.event.usage == event.usage
    assert event.feature == "summary" and event.request_id is not None
    assert_priced(event)
