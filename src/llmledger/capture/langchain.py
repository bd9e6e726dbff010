"""Recording LangChain model calls, once: a ``langchain_core`` callback handler.

A LangChain chat model usually calls a provider SDK that :func:`llmledger.instrument`
has hooked already; the handler then only adds the call's attribution (its
``metadata``) to the event the hook records. Calls no hook sees (a model whose
client is not hooked, a fake model in tests, a provider reached over plain HTTP)
are recorded by the handler itself, from the ``usage_metadata`` LangChain reports.

The handler opens a :class:`~llmledger.capture._core.Scope` when a model run
starts and closes it when the run ends; the hooks count themselves into it. It
runs inline (``run_inline``), so the scope is set in the caller's own context,
for ``invoke`` and ``ainvoke`` alike.

Example:
    >>> from llmledger.capture import langchain_handler
    >>> handler = langchain_handler(feature="support")
    >>> # model.invoke(messages, config={"callbacks": [handler],
    >>> #                                "metadata": {"user": "u42", "tags": {"ticket": "9"}}})
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Unpack
from uuid import UUID

from llmledger.capture._adapter import AdapterRecorder, AttributionArgs, mixed_class
from llmledger.capture._core import (
    Call,
    Scope,
    adapter_call,
    attribution_from,
    count,
    current_scope,
    internal_error,
    open_block,
    submit,
    usage_event,
)
from llmledger.core.events import Status
from llmledger.core.providers import provider_name
from llmledger.core.usage import Usage
from llmledger.normalize.openai import openai_style_usage

__all__ = ["LangChainRecorder", "handler_class", "langchain_handler", "usage_from_metadata"]

# Class names of well-known chat models, when the run names no provider.
_CLASS_HINTS = (
    ("AzureChatOpenAI", "azure"),
    ("OpenAI", "openai"),
    ("Anthropic", "anthropic"),
    ("GoogleGenerativeAI", "google"),
    ("VertexAI", "vertex"),
    ("Bedrock", "bedrock"),
    ("Mistral", "mistral"),
    ("Groq", "groq"),
    ("Ollama", "ollama"),
)


def usage_from_metadata(usage_metadata: Any) -> Usage | None:
    """Usage from a LangChain message's ``usage_metadata`` (None when there is none).

    LangChain's ``input_tokens`` already includes cache reads and writes, and
    ``output_tokens`` includes reasoning, as llmledger's buckets do.

    Example:
        >>> usage = usage_from_metadata({"input_tokens": 120, "output_tokens": 30,
        ...     "input_token_details": {"cache_read": 100},
        ...     "output_token_details": {"reasoning": 12}})
        >>> usage.cache_read_tokens, usage.reasoning_tokens
        (100, 12)
    """
    if not isinstance(usage_metadata, Mapping):
        return None
    details = usage_metadata.get("input_token_details") or {}
    output_details = usage_metadata.get("output_token_details") or {}
    cache_5m = count(details.get("ephemeral_5m_input_tokens"))
    cache_1h = count(details.get("ephemeral_1h_input_tokens"))
    return Usage(
        input_tokens=count(usage_metadata.get("input_tokens")),
        output_tokens=count(usage_metadata.get("output_tokens")),
        cache_read_tokens=count(details.get("cache_read")),
        cache_write_tokens=count(details.get("cache_creation")) or cache_5m + cache_1h,
        cache_write_5m_tokens=cache_5m,
        cache_write_1h_tokens=cache_1h,
        input_audio_tokens=count(details.get("audio")),
        reasoning_tokens=count(output_details.get("reasoning")),
        output_audio_tokens=count(output_details.get("audio")),
    )


def _result_facts(result: Any) -> tuple[Usage | None, Any, str | None, str | None]:
    """Usage, raw usage, response model and finish reason of an ``LLMResult``."""
    llm_output = getattr(result, "llm_output", None) or {}
    model = llm_output.get("model_name") or llm_output.get("model")
    finish: str | None = None
    for candidates in getattr(result, "generations", None) or ():
        for generation in candidates:
            message = getattr(generation, "message", None)
            metadata = getattr(message, "response_metadata", None) or {}
            model = model or metadata.get("model_name") or metadata.get("model")
            info = getattr(generation, "generation_info", None) or {}
            finish = finish or metadata.get("finish_reason") or info.get("finish_reason")
            raw = getattr(message, "usage_metadata", None)
            usage = usage_from_metadata(raw)
            if usage is not None:
                return usage, dict(raw or {}), _text(model), _text(finish)
    token_usage = llm_output.get("token_usage") or llm_output.get("usage")
    if isinstance(token_usage, Mapping) and "prompt_tokens" in token_usage:
        return openai_style_usage(token_usage), dict(token_usage), _text(model), _text(finish)
    return None, None, _text(model), _text(finish)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _provider_and_model(
    serialized: Any, metadata: Mapping[str, Any], params: Mapping[str, Any]
) -> tuple[str, str | None]:
    named = metadata.get("ls_provider")
    provider = provider_name(named) if isinstance(named, str) and named else None
    if provider is None:
        ids = serialized.get("id") if isinstance(serialized, Mapping) else None
        name = str(ids[-1]) if isinstance(ids, list) and ids else ""
        provider = next((p for hint, p in _CLASS_HINTS if hint in name), "langchain")
    kwargs = serialized.get("kwargs") if isinstance(serialized, Mapping) else None
    kwargs = kwargs if isinstance(kwargs, Mapping) else {}
    model = next(
        (
            value
            for value in (
                metadata.get("ls_model_name"),
                params.get("model"),
                params.get("model_name"),
                kwargs.get("model"),
                kwargs.get("model_name"),
            )
            if isinstance(value, str) and value
        ),
        None,
    )
    return provider, model


@dataclass(slots=True)
class _Run:
    call: Call
    scope: Scope
    previous: Scope | None
    first_token: float | None = None


class LangChainRecorder(AdapterRecorder):
    """The handler's behaviour; :func:`handler_class` mixes it into LangChain's base class.

    Args:
        tenant, user, feature, session, tags: Attribution for every call this
            handler sees; a run's ``metadata`` (same names) wins over it.
    """

    run_inline = True  # in the caller's context, so the scope is seen by the hooks
    raise_error = False

    def __init__(self, **attribution: Unpack[AttributionArgs]) -> None:
        super().__init__(**attribution)
        self._runs: dict[UUID, _Run] = {}
        self._lock = threading.Lock()

    # -- start ------------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: Sequence[Sequence[Any]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A chat model run starts: open its scope."""
        self._start(run_id, serialized, metadata, kwargs.get("invocation_params"))

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A (completion) LLM run starts: open its scope."""
        self._start(run_id, serialized, metadata, kwargs.get("invocation_params"))

    def _start(self, run_id: UUID, serialized: Any, metadata: Any, params: Any) -> None:
        try:
            metadata = metadata if isinstance(metadata, Mapping) else {}
            params = params if isinstance(params, Mapping) else {}
            extra = self._attribution(attribution_from(metadata))
            provider, model = _provider_and_model(serialized, metadata, params)
            call = adapter_call(
                provider,
                "chat",
                model,
                extra=extra,
                stream=bool(params.get("stream")),
                block=open_block(),
            )
            current = current_scope.get()
            with self._lock:
                # The prompts of one batch start together, then run: they share one scope.
                sibling = next((run for run in self._runs.values() if run.scope is current), None)
                if sibling is not None and current is not None and not current.closed:
                    run = _Run(call, current, sibling.previous)
                else:
                    run = _Run(call, Scope(extra), current)
                    current_scope.set(run.scope)
                self._runs[run_id] = run
        except Exception:
            internal_error("langchain run start")

    def on_llm_new_token(self, token: str, *, run_id: UUID, **kwargs: Any) -> None:
        """A streamed token: the first one times the run's time to first token."""
        run = self._runs.get(run_id)
        if run is not None and run.first_token is None:
            run.first_token = time.perf_counter()
            run.call.stream = True

    # -- end --------------------------------------------------------------------------

    def _end(self, run_id: UUID) -> _Run | None:
        """Close the run; the run back when no provider hook recorded it."""
        with self._lock:
            run = self._runs.pop(run_id, None)
            if run is None:
                return None
            if not any(other.scope is run.scope for other in self._runs.values()):
                run.scope.closed = True
                if current_scope.get() is run.scope:
                    current_scope.set(run.previous)
        return None if run.scope.seen else run

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """The run ended: record it, unless a provider hook did."""
        self._record(run_id, response, None)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """The run failed (or its stream was closed early): record it, unless a hook did."""
        self._record(run_id, kwargs.get("response"), error)

    def _record(self, run_id: UUID, response: Any, error: BaseException | None) -> None:
        try:
            ended = time.perf_counter()
            run = self._end(run_id)
            if run is None:
                return
            call, ttft = run.call, run.first_token
            status: Status = "ok"
            if error is not None:
                status = "error"
                if isinstance(error, (GeneratorExit, KeyboardInterrupt)) or (
                    type(error).__name__ == "CancelledError"
                ):
                    status = "incomplete" if ttft is not None else "abandoned"
            failed = error if status == "error" else None

            def build() -> Any:
                usage, raw, response_model, finish = _result_facts(response)
                return usage_event(
                    call,
                    usage,
                    ended=ended,
                    ttft=ttft,
                    status=status,
                    usage_raw=raw,
                    response_model=response_model,
                    finish_reason=finish,
                    error_type=type(failed).__name__ if failed is not None else None,
                    error_message=str(failed) if failed is not None else None,
                )

            submit(call, build)
        except Exception:
            internal_error("langchain run error" if error is not None else "langchain run end")


def handler_class() -> type:
    """The handler class, a ``langchain_core.callbacks.BaseCallbackHandler``, made on first use.

    Raises:
        ImportError: when ``langchain_core`` is not installed.

    Example:
        >>> handler_class().__name__
        'LedgerCallbackHandler'
    """
    return mixed_class(
        LangChainRecorder, "langchain_core.callbacks:BaseCallbackHandler", "LedgerCallbackHandler"
    )


def langchain_handler(
    *,
    tenant: str | None = None,
    user: str | None = None,
    feature: str | None = None,
    session: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Any:
    """A LangChain callback handler that records each model call once.

    Pass it in a run's ``config={"callbacks": [...]}`` (or to the model's
    ``callbacks=``). A run's ``metadata`` may name ``tenant``, ``user``,
    ``feature``, ``session`` and ``tags`` (a mapping), directly or under an
    ``llmledger`` key; they win over the handler's own arguments, which win over
    the :func:`llmledger.attribute` block in force.

    Raises:
        ImportError: when ``langchain_core`` is not installed.

    Example:
        >>> handler = langchain_handler(tenant="acme")
        >>> type(handler).__name__, handler.run_inline
        ('LedgerCallbackHandler', True)
    """
    made: Any = handler_class()(
        tenant=tenant, user=user, feature=feature, session=session, tags=tags
    )
    return made
