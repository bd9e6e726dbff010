"""``track()`` around instrumented SDK calls: each provider call is recorded once, with the
block's attribution and the hook's usage; and the options an ``instrument()`` handle keeps.

The real ``openai`` and ``anthropic`` clients run against recorded responses (the replay
helpers of ``test_capture_support``); the ledger keeps what it is given.
"""

from __future__ import annotations

import asyncio
import gc
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest

import llmledger
from llmledger.capture import Instrumentation, instrument
from llmledger.core.errors import ConfigError
from llmledger.core.events import UsageEvent
from tests.test_capture_support import (
    JSON,
    SSE,
    KeepingLedger,
    Replay,
    instrumented,
    ledger,
    recorded,
    without_usage_chunk,
)

__all__ = ["instrumented", "ledger"]

CHAT = recorded("openai_chat_prompt_cache_hit.json")
CHAT_STREAM = recorded("openai_chat_stream_include_usage.sse")
EMBEDDINGS = recorded("openai_embeddings.json")
MESSAGE = recorded("anthropic_messages_cache_read.json")
MESSAGES: Any = [{"role": "user", "content": "What is the capital of France?"}]
_OPTIONS: Any = {"api_key": "sk-test", "base_url": "https://api.openai.com/v1"}


def _chat(body: dict[str, Any]) -> tuple[int, bytes, dict[str, str]]:
    headers = {"x-request-id": "req_chat_1"}
    if not body.get("stream"):
        return 200, CHAT, {**JSON, **headers}
    asked = (body.get("stream_options") or {}).get("include_usage")
    return 200, CHAT_STREAM if asked else without_usage_chunk(CHAT_STREAM), {**SSE, **headers}


@pytest.fixture(autouse=True)
def _prices_loaded(request: pytest.FixtureRequest) -> None:
    # t.event is priced from the prices in memory: loaded, it is priced, not pending.
    if "ledger" in request.fixturenames:
        assert request.getfixturevalue("ledger").prices.wait(120)


@pytest.fixture
def replay() -> Replay:
    return Replay(
        {
            "/chat/completions": _chat,
            "/embeddings": (200, EMBEDDINGS, {**JSON, "x-request-id": "req_emb_1"}),
            "/v1/messages": (200, MESSAGE, {**JSON, "request-id": "req_msg_1"}),
        }
    )


@pytest.fixture
def client(replay: Replay) -> openai.OpenAI:
    return replay.sdk_client(openai.OpenAI, "openai", **_OPTIONS)


def _create(client: openai.OpenAI, **options: Any) -> Any:
    return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **options)


def _priced(event: UsageEvent | None) -> UsageEvent:
    assert event is not None
    assert event.cost is not None and event.cost > 0 and event.cost_source == "catalog"
    return event


# -- one call, one event -------------------------------------------------------------------


def test_track_around_an_instrumented_call_records_one_event(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    context = llmledger.attribute(user="context-user", tenant="acme", tags={"env": "prod"})
    block = llmledger.track(
        provider="openai", model="gpt-4o-mini", feature="summary", user="u42", tags={"doc": 7}
    )
    with context, block as t:
        completion = _create(client)
        t.set_response(completion)
    [event] = ledger.events()
    assert t.event is event and t.events == (event,)
    _priced(event)
    assert completion.usage is not None
    # The hook's reading of the call ...
    assert (event.usage.input_tokens, event.usage.output_tokens) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
    )
    assert event.usage.cache_read_tokens > 0 and event.usage_source == "provider"
    assert event.request_id == "req_chat_1"
    assert event.response_model == completion.model
    assert event.api_key_fingerprint is not None  # only a hook sees the key
    # ... with the block's attribution over the context's.
    assert (event.tenant, event.user, event.feature) == ("acme", "u42", "summary")
    assert event.tags == {"env": "prod", "doc": "7"}


def test_what_the_hook_saw_wins_over_the_fields_the_block_names(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    with llmledger.track(
        provider="anthropic", model="gpt-4o", finish_reason="made-up", session="s1"
    ) as t:
        _create(client)
        t.set(service_tier="flex", tags={"step": "2"})
    event = _priced(t.event)
    # What the hook saw wins: the host's provider, the requested model, the finish reason
    # and the service tier the response names.
    assert (event.provider, event.model) == ("openai", "gpt-4o-mini")
    assert (event.finish_reason, event.service_tier) == ("stop", "standard")
    # The block's attribution is added.
    assert (event.session, event.tags) == ("s1", {"step": "2"})
    assert ledger.events() == [event]


def test_block_without_a_hooked_call_records_its_own_event(
    ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    with llmledger.track(provider="openai", model="gpt-4o", feature="chat") as t:
        t.set_usage(input_tokens=1000, output_tokens=100)
    event = _priced(t.event)
    assert event.usage.total_tokens == 1100 and event.usage_source == "manual"
    assert ledger.events() == [event]


def test_each_hooked_call_in_a_block_is_its_own_event(
    client: openai.OpenAI, replay: Replay, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    claude = replay.sdk_client(anthropic.Anthropic, "anthropic", api_key="sk-ant-test")
    with llmledger.track(provider="openai", model="gpt-4o-mini", feature="rag") as t:
        client.embeddings.create(model="text-embedding-3-small", input="capital of France")
        t.set_response(_create(client))
        claude.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES)
    events = ledger.events()
    assert [e.operation for e in events] == ["embeddings", "chat", "chat"]
    assert [e.provider for e in events] == ["openai", "openai", "anthropic"]
    assert [e.request_id for e in events] == ["req_emb_1", "req_chat_1", "req_msg_1"]
    assert all(e.feature == "rag" for e in events)
    assert t.events == tuple(events) and t.event is events[-1]
    assert all(_priced(e) for e in events)


def test_a_stream_read_inside_the_block_is_one_event(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    with llmledger.track(provider="openai", model="gpt-4o-mini", user="u1") as t:
        chunks = list(_create(client, stream=True, stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    assert usage is not None
    [event] = ledger.events()
    assert t.event is event and event.stream and event.status == "ok"
    assert (event.usage.input_tokens, event.user) == (usage.prompt_tokens, "u1")
    _priced(event)


def test_a_stream_still_open_when_the_block_ends_is_recorded_once_when_it_ends(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    with llmledger.track(provider="openai", model="gpt-4o-mini", feature="later") as t:
        stream = _create(client, stream=True, stream_options={"include_usage": True})
    assert t.event is None and t.events == ()
    assert ledger.events() == []  # the block recorded nothing of its own
    list(stream)
    [event] = ledger.events()
    assert (event.status, event.feature, event.stream) == ("ok", "later", True)
    assert event.usage.input_tokens > 0


def test_a_dropped_stream_opened_in_a_block_is_abandoned_not_doubled(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    with llmledger.track(provider="openai", model="gpt-4o-mini"):
        _create(client, stream=True)  # never read, dropped
    gc.collect()
    [event] = ledger.events()
    assert event.status == "abandoned"


def test_a_failed_call_in_a_block_is_one_error_event(
    replay: Replay, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    replay.routes["/chat/completions"] = (
        429,
        b'{"error": {"message": "slow down", "type": "rate_limit"}}',
        {**JSON, "x-request-id": "req_429"},
    )
    client = replay.sdk_client(openai.OpenAI, "openai", **_OPTIONS)
    block = llmledger.track(provider="openai", model="gpt-4o-mini", feature="f")
    with pytest.raises(openai.RateLimitError), block as t:
        _create(client)
    [event] = ledger.events()
    assert t.event is event
    assert (event.status, event.error_type, event.request_id) == (
        "error",
        "RateLimitError",
        "req_429",
    )
    assert event.feature == "f" and event.cost == Decimal(0)


def test_an_error_of_the_app_after_the_call_leaves_the_call_ok(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    with pytest.raises(KeyError), llmledger.track(provider="openai", model="gpt-4o-mini") as t:
        _create(client)
        raise KeyError("the app's own bug")
    [event] = ledger.events()
    assert t.event is event and event.status == "ok" and event.error_type is None


def test_nested_blocks_record_the_call_once_and_the_inner_block_wins(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    with llmledger.track(
        provider="openai", model="gpt-4o-mini", feature="outer", session="s", tags={"a": "1"}
    ) as outer:
        with llmledger.track(
            provider="openai", model="gpt-4o-mini", feature="inner", tags={"b": "2"}
        ) as inner:
            _create(client)
        with llmledger.track(provider="openai", model="gpt-4o", user="manual") as manual:
            manual.set_usage(input_tokens=10, output_tokens=1)
    events = ledger.events()
    assert len(events) == 2
    hooked, own = events
    assert inner.events == (hooked,) and manual.events == (own,)
    assert outer.events == (hooked, own)  # the outer block recorded nothing of its own
    assert (hooked.feature, hooked.session, hooked.tags) == ("inner", "s", {"a": "1", "b": "2"})
    assert (own.user, own.usage.input_tokens) == ("manual", 10)


def test_attribution_nested_inside_the_block_refines_it_for_the_call(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    block = llmledger.track(provider="openai", model="gpt-4o-mini", feature="outer", user="u1")
    with block as t, llmledger.attribute(feature="inner", tags={"k": "v"}):
        _create(client)
        t.set(session="later")  # named after the call started: still given to it
    [event] = ledger.events()
    assert (event.feature, event.user, event.session, event.tags) == (
        "inner",
        "u1",
        "later",
        {"k": "v"},
    )


def test_async_calls_in_a_block(
    replay: Replay, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    aclient = replay.sdk_client(openai.AsyncOpenAI, "openai", asynchronous=True, **_OPTIONS)

    async def main() -> llmledger.Tracker:
        with llmledger.track(provider="openai", model="gpt-4o-mini", tenant="async") as t:
            await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return t

    t = asyncio.run(main())
    [event] = ledger.events()
    assert t.event is event and event.tenant == "async"


def test_a_call_in_another_context_is_not_the_blocks(
    client: openai.OpenAI, ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    import threading

    with llmledger.track(provider="openai", model="gpt-4o", user="block") as t:
        worker = threading.Thread(target=lambda: _create(client))  # a fresh context
        worker.start()
        worker.join()
        t.set_usage(input_tokens=5, output_tokens=1)
    own, hooked = sorted(ledger.events(), key=lambda e: e.model)
    assert (own.model, own.user, own.usage.input_tokens) == ("gpt-4o", "block", 5)
    assert (hooked.model, hooked.user) == ("gpt-4o-mini", None)
    assert t.events == (own,)


def test_an_undeclared_feature_of_the_block_is_refused_when_it_opens() -> None:
    llmledger.configure(features=["search"])
    refused = pytest.raises(llmledger.UnknownFeatureError, match="'chat'")
    with refused, llmledger.track(provider="openai", model="gpt-4o", feature="chat"):
        pass
    refused = pytest.raises(llmledger.UnknownFeatureError, match="'chat'")
    with (
        llmledger.attribute(feature="chat"),
        refused,
        llmledger.track(provider="openai", model="gpt-4o"),
    ):
        pass


# -- the instrument() handle keeps its options ---------------------------------------------


def test_a_second_instrument_keeps_the_options_in_force(
    client: openai.OpenAI, replay: Replay, ledger: KeepingLedger
) -> None:
    with instrument(include_usage=True) as handle:
        assert instrument() is handle and instrument(include_usage=True) is handle
        assert handle.options.include_usage
        list(_create(client, stream=True))
    assert replay.requests[-1]["stream_options"] == {"include_usage": True}
    assert ledger.one().usage_source == "provider"


def test_a_second_instrument_with_other_options_is_an_error(ledger: KeepingLedger) -> None:
    with instrument(include_usage=True) as handle:
        with pytest.raises(ConfigError, match="include_usage=True"):
            instrument(include_usage=False)
        with pytest.raises(ConfigError, match="store_content=None"):
            instrument(store_content=True)
        assert handle.active and handle.options.include_usage
    with instrument(include_usage=False) as again:  # once undone, any options
        assert again is not handle and not again.options.include_usage
    idle = instrument(openai=False, anthropic=False, google=False)
    assert not idle.active  # nothing hooked: other options contradict nothing
    with instrument(include_usage=True) as hooked:
        assert hooked.active and hooked.options.include_usage


def test_instrument_records_into_the_ledger_it_is_given(
    client: openai.OpenAI, ledger: KeepingLedger
) -> None:
    own = KeepingLedger()
    with instrument(ledger=own) as handle:
        assert handle.options.ledger is own
        _create(client)
        with llmledger.attribute(feature="f"):
            list(_create(client, stream=True))
    assert ledger.events() == []
    plain, streamed = own.events()
    assert (plain.stream, streamed.stream, streamed.feature) == (False, True, "f")
