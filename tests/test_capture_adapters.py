"""The LiteLLM callback and the LangChain handler: each call recorded once, with attribution.

LangChain runs for real (``langchain_core``): a fake chat model that reports
``usage_metadata``, and a small chat model over the real ``openai`` client against
a MockTransport. Here the LiteLLM callback is driven as LiteLLM drives it:
``log_pre_api_call`` in the caller's context, the provider call,
``log_post_api_call``, then the success or failure event, with payloads shaped
like LiteLLM's ``standard_logging_object``, so these tests run next to
``openai`` 3 too; tests/test_capture_litellm_real.py runs the real LiteLLM
where it installs (it pins ``openai`` < 3).
"""

from __future__ import annotations

import asyncio
import sys
import time
import types
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import openai
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult

import llmledger
from llmledger.capture import Instrumentation, langchain_handler, litellm_callback
from llmledger.capture import _adapter as capture_adapter
from llmledger.capture._core import current_scope
from tests.test_capture_support import JSON, KeepingLedger, Replay, instrumented, ledger, recorded

__all__ = ["instrumented", "ledger"]

CHAT = recorded("openai_chat_prompt_cache_hit.json")


def _openai_client() -> openai.OpenAI:
    replay = Replay({"/chat/completions": (200, CHAT, {**JSON, "x-request-id": "req_1"})})
    return openai.OpenAI(
        api_key="sk-test",
        base_url="https://api.openai.com/v1",
        http_client=replay.sync_client(),
        max_retries=0,
    )


# -- LangChain -------------------------------------------------------------------------------


def _fake_model(count: int = 1) -> GenericFakeChatModel:
    message = AIMessage(
        content="Paris.",
        response_metadata={"model_name": "claude-sonnet-4-5-20250929", "finish_reason": "end_turn"},
        usage_metadata={
            "input_tokens": 1200,
            "output_tokens": 40,
            "total_tokens": 1240,
            "input_token_details": {"cache_read": 1000, "cache_creation": 100},
            "output_token_details": {"reasoning": 10},
        },
    )
    return GenericFakeChatModel(messages=iter([message] * count))


class OpenAIChat(BaseChatModel):
    """A minimal LangChain chat model over the real ``openai`` client."""

    client: Any
    model: str = "gpt-4o-mini"

    @property
    def _llm_type(self) -> str:
        return "openai-chat-test"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "openai"
        params["ls_model_name"] = self.model
        return params

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        completion = self.client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": str(messages[-1].content)}]
        )
        usage = completion.usage
        message = AIMessage(
            content=completion.choices[0].message.content or "",
            usage_metadata={
                "input_tokens": usage.prompt_tokens,
                "output_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def test_handler_is_a_langchain_callback_handler() -> None:
    handler = langchain_handler(tenant="acme")
    assert isinstance(handler, BaseCallbackHandler)
    assert handler.run_inline


def test_a_call_no_hook_sees_is_recorded_by_the_handler(ledger: KeepingLedger) -> None:
    handler = langchain_handler(tenant="acme", tags={"env": "test"})
    with llmledger.attribute(feature="qa", user="outer"):
        reply = _fake_model().invoke(
            "Capital of France?",
            config={"callbacks": [handler], "metadata": {"user": "u1", "tags": {"doc": 7}}},
        )
    assert reply.content == "Paris."
    event = ledger.one()
    assert (event.provider, event.model, event.status, event.usage_source) == (
        "genericfakechatmodel",
        "claude-sonnet-4-5-20250929",
        "ok",
        "provider",
    )
    usage = event.usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        1200,
        1000,
        100,
    )
    assert (usage.output_tokens, usage.reasoning_tokens) == (40, 10)
    assert event.finish_reason == "end_turn"
    # The run's metadata wins over the handler's arguments, which win over the block.
    assert (event.tenant, event.user, event.feature) == ("acme", "u1", "qa")
    assert event.tags == {"env": "test", "doc": "7"}
    assert current_scope.get() is None


def test_a_call_through_a_hooked_sdk_is_recorded_once_by_the_hook(
    ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    model = OpenAIChat(client=_openai_client())
    handler = langchain_handler(feature="qa")
    model.invoke("hi", config={"callbacks": [handler], "metadata": {"user": "u2"}})
    event = ledger.one()
    # The hook's event: the provider's own usage and request id, the run's attribution.
    assert (event.provider, event.model, event.request_id) == ("openai", "gpt-4o-mini", "req_1")
    assert event.usage.cache_read_tokens == 4012
    assert (event.user, event.feature) == ("u2", "qa")
    assert current_scope.get() is None


def test_without_instrumentation_the_handler_records_the_sdk_call(ledger: KeepingLedger) -> None:
    model = OpenAIChat(client=_openai_client())
    model.invoke("hi", config={"callbacks": [langchain_handler()]})
    event = ledger.one()
    assert (event.provider, event.model, event.usage.input_tokens) == (
        "openai",
        "gpt-4o-mini",
        4020,
    )
    assert event.request_id is None  # the handler never sees the HTTP response


def test_async_runs_and_batches_are_each_recorded_once(
    ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    handler = langchain_handler()
    model = OpenAIChat(client=_openai_client())

    async def main() -> None:
        await _fake_model().ainvoke("a", config={"callbacks": [handler]})
        await model.ainvoke("b", config={"callbacks": [handler]})  # sync client in a thread

    asyncio.run(main())
    prompts: list[list[BaseMessage]] = [[HumanMessage(text)] for text in "xyz"]
    _fake_model(3).generate(prompts, callbacks=[handler])
    model.generate(prompts[:2], callbacks=[handler])
    events = ledger.events()
    fake, sdk = "genericfakechatmodel", "openai"
    assert [e.provider for e in events] == [fake, sdk, fake, fake, fake, sdk, sdk]


def test_a_streamed_run_has_a_time_to_first_token(ledger: KeepingLedger) -> None:
    chunks = list(_fake_model().stream("hi", config={"callbacks": [langchain_handler()]}))
    assert "".join(str(chunk.content) for chunk in chunks) == "Paris."
    event = ledger.one()
    assert event.stream and event.ttft_ms is not None and event.status == "ok"


def test_a_failed_run_is_recorded_as_an_error(ledger: KeepingLedger) -> None:
    class Broken(GenericFakeChatModel):
        def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
            raise TimeoutError("model timed out")

    with pytest.raises(TimeoutError):
        Broken(messages=iter([])).invoke("hi", config={"callbacks": [langchain_handler()]})
    event = ledger.one()
    assert (event.status, event.error_type, event.usage_source) == (
        "error",
        "TimeoutError",
        "missing",
    )
    assert event.error_message == "model timed out"
    assert current_scope.get() is None


# -- LiteLLM ---------------------------------------------------------------------------------


def _litellm_kwargs(
    call_id: str,
    *,
    provider: str = "anthropic",
    model: str = "claude-sonnet-4-5-20250929",
    metadata: dict[str, Any] | None = None,
    stream: bool = False,
    cost: float = 0.0042,
) -> dict[str, Any]:
    """``kwargs`` as LiteLLM hands them to a callback (the parts llmledger reads)."""
    started = time.time() - 0.5
    return {
        "model": model,
        "litellm_call_id": call_id,
        "call_type": "completion",
        "stream": stream,
        "custom_llm_provider": provider,
        "api_key": "sk-ant-test",
        "litellm_params": {
            "custom_llm_provider": provider,
            "metadata": metadata or {},
            "api_base": "https://api.anthropic.com/v1/messages",
        },
        "standard_logging_object": {
            "id": call_id,
            "call_type": "completion",
            "status": "success",
            "response_cost": cost,
            "prompt_tokens": 1500,
            "completion_tokens": 80,
            "total_tokens": 1580,
            "startTime": started,
            "endTime": started + 0.5,
            "completionStartTime": started + 0.2,
            "model": model,
            "custom_llm_provider": provider,
            "metadata": {"requester_metadata": metadata or {}, "user_api_key_hash": None},
            "cache_hit": None,
            "stream": stream,
            "end_user": "",
        },
    }


def _litellm_response(model: str = "claude-sonnet-4-5-20250929") -> dict[str, Any]:
    """A ``ModelResponse`` as a dict: LiteLLM folds Anthropic's cache counts into prompt_tokens."""
    return {
        "id": "chatcmpl-1",
        "model": model,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
        "usage": {
            "prompt_tokens": 1500,
            "completion_tokens": 80,
            "total_tokens": 1580,
            "prompt_tokens_details": {"cached_tokens": 1200},
            "cache_read_input_tokens": 1200,
            "cache_creation_input_tokens": 200,
        },
    }


def _times() -> tuple[datetime, datetime]:
    now = datetime.now()  # LiteLLM passes naive local times
    return now, now


def test_litellm_call_no_hook_sees_is_recorded_once(ledger: KeepingLedger) -> None:
    callback = litellm_callback(feature="chat")
    kwargs = _litellm_kwargs("call-1", metadata={"user": "u9", "tags": {"ticket": "42"}})
    kwargs["response_headers"] = {"Request-Id": "req_011CV", "content-type": "application/json"}
    with llmledger.attribute(tenant="acme"):
        callback.log_pre_api_call(kwargs["model"], [], kwargs)
        assert current_scope.get() is not None
        callback.log_post_api_call(kwargs, None, *_times())
    assert current_scope.get() is None
    callback.log_success_event(kwargs, _litellm_response(), *_times())
    asyncio.run(callback.async_log_success_event(kwargs, _litellm_response(), *_times()))
    event = ledger.one()
    assert (event.provider, event.model, event.operation) == (
        "anthropic",
        "claude-sonnet-4-5-20250929",
        "chat",
    )
    usage = event.usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        1500,
        1200,
        200,
    )
    assert usage.output_tokens == 80
    assert (event.tenant, event.user, event.feature, event.tags) == (
        "acme",
        "u9",
        "chat",
        {"ticket": "42"},
    )
    assert event.duration_ms == pytest.approx(500, abs=1)
    assert event.api_key_fingerprint and "sk-ant" not in event.api_key_fingerprint
    assert event.request_id == "req_011CV"


def test_litellm_call_through_a_hooked_sdk_is_recorded_once_by_the_hook(
    ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    callback = litellm_callback()
    kwargs = _litellm_kwargs(
        "call-2", provider="openai", model="gpt-4o-mini", metadata={"feature": "search"}
    )
    callback.log_pre_api_call(kwargs["model"], [], kwargs)
    _openai_client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    callback.log_post_api_call(kwargs, None, *_times())
    callback.log_success_event(kwargs, _litellm_response("gpt-4o-mini"), *_times())
    event = ledger.one()
    assert (event.request_id, event.usage.input_tokens, event.feature) == ("req_1", 4020, "search")


def test_litellm_scope_closed_after_the_call_claims_no_later_call(
    ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    callback = litellm_callback()
    kwargs = _litellm_kwargs("call-3", metadata={"user": "litellm-user"})

    def litellm_call() -> None:
        # LiteLLM sets the scope in the caller's context and the success event comes later.
        callback.log_pre_api_call(kwargs["model"], [], kwargs)
        callback.log_post_api_call(kwargs, None, *_times())

    litellm_call()
    _openai_client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "direct"}]
    )
    callback.log_success_event(kwargs, _litellm_response(), *_times())
    direct, through_litellm = ledger.events()
    assert (direct.provider, direct.user) == ("openai", None)
    assert (through_litellm.provider, through_litellm.user) == ("anthropic", "litellm-user")


def test_litellm_success_without_a_pre_call_is_recorded(ledger: KeepingLedger) -> None:
    callback = litellm_callback()
    kwargs = _litellm_kwargs("call-4", stream=True)
    asyncio.run(callback.async_log_success_event(kwargs, _litellm_response(), *_times()))
    event = ledger.one()
    assert event.stream and event.ttft_ms == pytest.approx(200, abs=1)


def test_litellm_usage_from_the_payload_when_the_response_has_none(
    ledger: KeepingLedger,
) -> None:
    kwargs = _litellm_kwargs("call-5", provider="vertex_ai", model="vertex_ai/gemini-2.5-flash")
    litellm_callback().log_success_event(kwargs, None, *_times())
    event = ledger.one()
    # LiteLLM's vertex_ai calls ran on Vertex AI.
    assert (event.provider, event.model) == ("vertex", "gemini-2.5-flash")
    assert (event.usage.input_tokens, event.usage.output_tokens) == (1500, 80)


def test_litellm_failure_is_recorded_as_an_error(ledger: KeepingLedger) -> None:
    callback = litellm_callback()
    kwargs = _litellm_kwargs("call-6")
    kwargs["exception"] = RuntimeError("overloaded")
    kwargs["standard_logging_object"].update(
        status="failure",
        error_str="AnthropicException - Overloaded",
        error_information={
            "error_class": "InternalServerError",
            "error_code": "529",
            "error_provider_request_id": "req_011XY",
        },
    )
    asyncio.run(callback.async_log_failure_event(kwargs, None, *_times()))
    event = ledger.one()
    assert (event.status, event.error_type, event.usage_source) == (
        "error",
        "InternalServerError",
        "missing",
    )
    assert event.error_message == "AnthropicException - Overloaded"
    assert event.request_id == "req_011XY"


def test_litellm_cache_hits_made_no_provider_call(ledger: KeepingLedger) -> None:
    kwargs = _litellm_kwargs("call-7")
    kwargs["standard_logging_object"]["cache_hit"] = True
    litellm_callback().log_success_event(kwargs, _litellm_response(), *_times())
    assert ledger.events() == []


def test_litellm_cost_is_used_only_for_a_model_the_catalog_cannot_price(
    ledger: KeepingLedger,
) -> None:
    callback = litellm_callback()
    known = _litellm_kwargs("call-8", cost=123.0)
    unknown = _litellm_kwargs("call-9", provider="openai", model="in-house-model", cost=0.0031)
    callback.log_success_event(known, _litellm_response(), *_times())
    callback.log_success_event(unknown, _litellm_response("in-house-model"), *_times())
    priced, reported = (ledger.prepare(e) for e in ledger.events())
    assert priced.cost_source == "catalog" and priced.cost is not None
    assert priced.cost < Decimal(1)
    assert (reported.cost, reported.cost_source) == (Decimal("0.0031"), "provider-reported")


@pytest.fixture
def fake_litellm(monkeypatch: pytest.MonkeyPatch) -> Iterator[type]:
    """A stand-in ``litellm.integrations.custom_logger`` module with a ``CustomLogger`` class."""

    class CustomLogger:
        def __init__(self, message_logging: bool = True) -> None:
            self.message_logging = message_logging

    module = types.ModuleType("litellm.integrations.custom_logger")
    module.CustomLogger = CustomLogger  # type: ignore[attr-defined]
    for name in ("litellm", "litellm.integrations"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "litellm.integrations.custom_logger", module)
    monkeypatch.setattr(capture_adapter, "_made", {})
    yield CustomLogger


def test_litellm_callback_subclasses_custom_logger_when_litellm_is_there(
    fake_litellm: type, ledger: KeepingLedger
) -> None:
    callback: Any = litellm_callback()
    assert fake_litellm in type(callback).__mro__
    assert callback.message_logging is True  # the base class was initialised
    callback.log_success_event(_litellm_kwargs("call-10"), _litellm_response(), *_times())
    assert ledger.one().provider == "anthropic"


def test_adapter_failures_stay_inside(
    ledger: KeepingLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMLEDGER_STRICT", "false")
    ledger.settings = llmledger.load_settings()
    callback = litellm_callback()
    callback.log_pre_api_call("m", [], {"litellm_call_id": object()})
    callback.log_success_event({"standard_logging_object": "garbage"}, object(), None, None)
    handler = langchain_handler()
    handler.on_llm_end(object(), run_id="not-a-run")
    assert ledger.events()[0].model == "unknown"


# -- adapters inside a track() block ----------------------------------------------------------


def test_a_langchain_run_in_a_track_block_is_the_blocks_one_event(ledger: KeepingLedger) -> None:
    with llmledger.track(provider="anthropic", model="claude-sonnet-4-5", feature="qa") as t:
        _fake_model().invoke("Capital of France?", config={"callbacks": [langchain_handler()]})
    event = ledger.one()
    assert t.event is event and event.feature == "qa"
    assert event.usage.input_tokens == 1200  # the run's usage, not an empty block of its own


def test_a_hooked_call_under_langchain_in_a_track_block_is_recorded_once(
    ledger: KeepingLedger, instrumented: Instrumentation
) -> None:
    model = OpenAIChat(client=_openai_client())
    handler = langchain_handler(feature="qa")
    with llmledger.track(provider="openai", model="gpt-4o-mini", user="u3", tenant="t") as t:
        model.invoke("hi", config={"callbacks": [handler], "metadata": {"user": "u4"}})
    event = ledger.one()
    assert t.event is event and event.request_id == "req_1"
    # The run's metadata, inside the block, refines the block's attribution.
    assert (event.tenant, event.user, event.feature) == ("t", "u4", "qa")


def test_a_litellm_call_in_a_track_block_is_the_blocks_one_event(ledger: KeepingLedger) -> None:
    callback = litellm_callback()
    kwargs = _litellm_kwargs("call-track")
    with llmledger.track(provider="anthropic", model="claude-sonnet-4-5", tenant="acme") as t:
        callback.log_pre_api_call(kwargs["model"], [], kwargs)
        callback.log_post_api_call(kwargs, None, *_times())
        callback.log_success_event(kwargs, _litellm_response(), *_times())
    event = ledger.one()
    assert t.event is event and event.tenant == "acme"
    assert event.usage.cache_read_tokens == 1200
