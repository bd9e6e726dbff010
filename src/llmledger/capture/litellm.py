"""Recording LiteLLM calls, once: a LiteLLM custom callback.

LiteLLM reaches some providers through their SDKs (``openai``, and with it every
OpenAI-compatible server), which :func:`llmledger.instrument` hooks, and others
over its own HTTP client, which nothing else sees. The callback records only the
calls no provider hook saw, and gives its attribution to the events the hooks
record:

* ``log_pre_api_call`` runs in the caller's context just before the provider is
  called: it opens a :class:`~llmledger.capture._core.Scope` for the call (keyed by
  ``litellm_call_id``) that the hooks count themselves into;
* ``log_post_api_call`` runs when the provider has answered: it closes the scope;
* the success and failure events (sync or async, whichever LiteLLM sends, from
  whichever thread) record the call from ``standard_logging_object`` when its
  scope was not seen, once per call id. A failed call gets no ``log_post_api_call``:
  its failure event, sent in the caller's context, closes the scope.

Usage is read from the response's OpenAI-shaped ``usage`` (falling back to the
payload's ``prompt_tokens`` / ``completion_tokens``), with Anthropic's cache writes
split by lifetime when LiteLLM passes the split on, and priced by llmledger's
catalog like any event; LiteLLM's ``response_cost`` is used only for a model the
catalog cannot price. A LiteLLM cache hit calls no provider and is not recorded.

Example:
    >>> from llmledger.capture import litellm_callback
    >>> callback = litellm_callback(feature="chat")
    >>> # litellm.callbacks = [callback]
    >>> # litellm.completion(model="anthropic/claude-sonnet-4-5", messages=[...],
    >>> #                    metadata={"user": "u42", "tags": {"ticket": "9"}})
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Unpack

from llmledger.capture._adapter import AdapterRecorder, AttributionArgs, mixed_class
from llmledger.capture._core import (
    Scope,
    adapter_call,
    attribution_from,
    count,
    current_scope,
    internal_error,
    merge_attribution,
    open_block,
    submit,
    usage_event,
)
from llmledger.core.attribution import Attribution, current_attribution
from llmledger.core.events import Operation
from llmledger.core.providers import provider_name
from llmledger.core.usage import Usage
from llmledger.normalize.openai import openai_style_usage
from llmledger.pricing.model import PriceResult, with_price
from llmledger.runtime.recording import Block

__all__ = ["LiteLLMRecorder", "callback_class", "litellm_callback", "provider_of"]

_OPERATIONS: dict[str, Operation] = {
    "completion": "chat",
    "text_completion": "chat",
    "embedding": "embeddings",
    "image_generation": "images",
    "transcription": "audio",
    "speech": "audio",
    "rerank": "rerank",
    "responses": "responses",
    "anthropic_messages": "chat",
    "generate_content": "chat",
}

# Call ids kept to record each call once, and scopes of calls still running.
_REMEMBERED = 10_000


def provider_of(name: Any) -> str | None:
    """llmledger's provider name for LiteLLM's ``custom_llm_provider``.

    Example:
        >>> provider_of("vertex_ai"), provider_of("anthropic"), provider_of(None)
        ('vertex', 'anthropic', None)
    """
    if not isinstance(name, str) or not name:
        return None
    return provider_name(name)


def _operation(call_type: Any) -> Operation:
    if not isinstance(call_type, str):
        return "chat"
    return _OPERATIONS.get(call_type.removeprefix("a"), _OPERATIONS.get(call_type, "other"))


def _epoch(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()  # LiteLLM's naive times are local, as timestamp() reads them
    return None


def _get(source: Any, name: str) -> Any:
    if isinstance(source, Mapping):
        return source.get(name)
    return getattr(source, name, None)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(slots=True)
class _Pending:
    scope: Scope
    attribution: Attribution
    previous: Scope | None
    block: Block | None = None


def _metadata_attribution(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    payload = _mapping(kwargs.get("standard_logging_object"))
    params = _mapping(kwargs.get("litellm_params"))
    requester = _mapping(_mapping(payload.get("metadata")).get("requester_metadata"))
    found = merge_attribution(
        attribution_from(requester),
        attribution_from(params.get("metadata")),
        attribution_from(kwargs.get("metadata")),
    )
    end_user = payload.get("end_user") or kwargs.get("user")
    if "user" not in found and isinstance(end_user, str) and end_user:
        found["user"] = end_user
    return found


# Where LiteLLM passes on the provider's request id, among the response headers it keeps.
_REQUEST_ID_HEADERS = (
    "request-id",
    "x-request-id",
    "llm_provider-request-id",
    "llm_provider-x-request-id",
)


def _request_id(
    kwargs: Mapping[str, Any], payload: Mapping[str, Any], response: Any, failed: bool
) -> str | None:
    """The provider's request id: from the error of a failed call, else the response headers."""
    if failed:
        found = _mapping(payload.get("error_information")).get("error_provider_request_id")
        return found if isinstance(found, str) and found else None
    hidden = getattr(response, "_hidden_params", None)
    for headers in (
        _get(hidden, "additional_headers"),
        kwargs.get("response_headers"),
        _get(_mapping(payload.get("hidden_params")), "additional_headers"),
    ):
        if isinstance(headers, Mapping):
            lowered = {str(name).lower(): value for name, value in headers.items()}
            for name in _REQUEST_ID_HEADERS:
                value = lowered.get(name)
                if isinstance(value, str) and value:
                    return value
    return None


def _usage(response: Any, payload: Mapping[str, Any]) -> tuple[Usage | None, Any]:
    raw = _get(response, "usage")
    if raw is not None and _get(raw, "prompt_tokens") is not None:
        dump = getattr(raw, "model_dump", None)
        usage_raw = dump() if callable(dump) else raw
        return openai_style_usage(usage_raw), usage_raw
    if "prompt_tokens" in payload or "completion_tokens" in payload:
        counts = {
            "prompt_tokens": count(payload.get("prompt_tokens")),
            "completion_tokens": count(payload.get("completion_tokens")),
        }
        return openai_style_usage(counts), counts
    return None, None


def _reported_cost(payload: Mapping[str, Any]) -> Decimal | None:
    cost = payload.get("response_cost")
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost <= 0:
        return None
    try:
        return Decimal(str(cost))
    except InvalidOperation:
        return None


class LiteLLMRecorder(AdapterRecorder):
    """The callback's behaviour; :func:`callback_class` mixes it into LiteLLM's ``CustomLogger``.

    Args:
        tenant, user, feature, session, tags: Attribution for every call; a call's
            ``metadata`` (same names) wins over it.
    """

    def __init__(self, **attribution: Unpack[AttributionArgs]) -> None:
        super().__init__(**attribution)
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._recorded: OrderedDict[str, None] = OrderedDict()

    # -- around the provider call (caller's context) ------------------------------------

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        """The provider is about to be called: open the call's scope in the caller's context."""
        try:
            kwargs = _mapping(kwargs)
            call_id = kwargs.get("litellm_call_id")
            if not isinstance(call_id, str):
                return
            with self._lock:
                pending = self._pending.get(call_id)
                if pending is None:
                    extra = self._attribution(_metadata_attribution(kwargs))
                    pending = _Pending(Scope(extra), current_attribution(), None, open_block())
                    self._pending[call_id] = pending
                    while len(self._pending) > _REMEMBERED:
                        self._pending.popitem(last=False)
                pending.scope.closed = False  # a retry of the same call opens it again
                previous = current_scope.get()
                if previous is not pending.scope:
                    pending.previous = previous
                current_scope.set(pending.scope)
        except Exception:
            internal_error("litellm pre-call")

    def log_post_api_call(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """The provider answered: close the call's scope."""
        try:
            call_id = _mapping(kwargs).get("litellm_call_id")
            pending = self._pending.get(call_id) if isinstance(call_id, str) else None
            if pending is not None:
                self._close(pending)
        except Exception:
            internal_error("litellm post-call")

    def _close(self, pending: _Pending) -> None:
        pending.scope.closed = True
        if current_scope.get() is pending.scope:
            current_scope.set(pending.previous)

    def log_stream_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """A streamed chunk: nothing to do, the whole stream is recorded at its end."""

    async def async_log_stream_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """A streamed chunk (async): nothing to do."""

    # -- outcome (any thread) ----------------------------------------------------------

    def log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """The call succeeded: record it, unless a provider hook did."""
        self._finish(kwargs, response_obj, start_time, end_time, failed=False)

    def log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """The call failed: record it, unless a provider hook did."""
        self._finish(kwargs, response_obj, start_time, end_time, failed=True)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """The asynchronous twin of :meth:`log_success_event`."""
        self._finish(kwargs, response_obj, start_time, end_time, failed=False)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """The asynchronous twin of :meth:`log_failure_event`."""
        self._finish(kwargs, response_obj, start_time, end_time, failed=True)

    def _claim(self, call_id: str | None) -> tuple[bool, _Pending | None]:
        """Whether this call is still to be recorded, and its scope."""
        with self._lock:
            pending = self._pending.pop(call_id, None) if call_id else None
            if call_id:
                if call_id in self._recorded:
                    return False, pending
                self._recorded[call_id] = None
                while len(self._recorded) > _REMEMBERED:
                    self._recorded.popitem(last=False)
        if pending is not None:
            # LiteLLM skips log_post_api_call for a failed call, but reports the failure in
            # the caller's context: the scope it left there is taken out here.
            self._close(pending)
            if pending.scope.seen:
                return False, pending
        return True, pending

    def _finish(
        self, kwargs: Any, response: Any, start_time: Any, end_time: Any, *, failed: bool
    ) -> None:
        try:
            kwargs = _mapping(kwargs)
            payload = _mapping(kwargs.get("standard_logging_object"))
            call_id = kwargs.get("litellm_call_id") or payload.get("id")
            wanted, pending = self._claim(call_id if isinstance(call_id, str) else None)
            if not wanted or payload.get("cache_hit") is True or kwargs.get("cache_hit") is True:
                return
            self._record(kwargs, payload, response, start_time, end_time, failed, pending)
        except Exception:
            internal_error("litellm event")

    def _record(
        self,
        kwargs: Mapping[str, Any],
        payload: Mapping[str, Any],
        response: Any,
        start_time: Any,
        end_time: Any,
        failed: bool,
        pending: _Pending | None,
    ) -> None:
        params = _mapping(kwargs.get("litellm_params"))
        provider = (
            provider_of(payload.get("custom_llm_provider"))
            or provider_of(kwargs.get("custom_llm_provider"))
            or provider_of(params.get("custom_llm_provider"))
        )
        model = kwargs.get("model") or payload.get("model")
        if isinstance(model, str) and provider is None and "/" in model:
            provider = provider_of(model.partition("/")[0])
        provider = provider or "openai"
        if isinstance(model, str):
            for prefix in (payload.get("custom_llm_provider"), kwargs.get("custom_llm_provider")):
                if isinstance(prefix, str) and model.startswith(prefix + "/"):
                    model = model[len(prefix) + 1 :]
        started = _epoch(payload.get("startTime")) or _epoch(start_time) or time.time()
        ended = _epoch(payload.get("endTime")) or _epoch(end_time) or started
        first = _epoch(payload.get("completionStartTime"))
        stream = bool(payload.get("stream") or kwargs.get("stream"))
        if pending is not None:
            extra, attribution = pending.scope.attribution, pending.attribution
            block = pending.block
        else:
            extra = self._attribution(_metadata_attribution(kwargs))
            attribution = current_attribution()
            block = open_block()
        call = adapter_call(
            provider,
            _operation(payload.get("call_type") or kwargs.get("call_type")),
            model if isinstance(model, str) and model else None,
            extra=extra,
            attribution=attribution,
            started=started,
            stream=stream,
            api_key=kwargs.get("api_key") or params.get("api_key"),
            block=block,
        )
        error_type = error_message = None
        if failed:
            exception = kwargs.get("exception")
            error = _mapping(payload.get("error_information"))
            error_type = error.get("error_class") or (
                type(exception).__name__ if exception is not None else "LiteLLMError"
            )
            error_message = payload.get("error_str") or (
                str(exception) if exception is not None else None
            )
        ttft = first if stream and first is not None and first >= started else None

        def build() -> Any:
            usage, raw = (None, None) if failed else _usage(response, payload)
            response_model = None if failed else _get(response, "model")
            event = usage_event(
                call,
                usage,
                ended=ended,
                status="error" if failed else "ok",
                ttft=ttft,
                usage_raw=raw,
                response_model=response_model if isinstance(response_model, str) else None,
                request_id=_request_id(kwargs, payload, response, failed),
                error_type=error_type,
                error_message=error_message,
            )
            reported = None if failed else _reported_cost(payload)
            if reported is not None:
                # LiteLLM's response_cost is its own estimate: it prices only what
                # llmledger's price source cannot.
                event = call.ledger.prepare(event)
                if event.cost is None:
                    event = with_price(
                        event,
                        PriceResult(
                            cost=reported,
                            breakdown={},
                            source="provider-reported",
                            ref="litellm:response_cost",
                        ),
                    )
            return event

        submit(call, build)


def callback_class() -> type:
    """The callback class, made on first use.

    A subclass of ``litellm.integrations.custom_logger.CustomLogger`` when LiteLLM
    is installed (LiteLLM calls only such objects' methods), otherwise the plain
    :class:`LiteLLMRecorder`, which has the same methods.

    Example:
        >>> issubclass(callback_class(), LiteLLMRecorder)
        True
    """
    return mixed_class(
        LiteLLMRecorder,
        "litellm.integrations.custom_logger:CustomLogger",
        "LedgerLiteLLMCallback",
        optional=True,
    )


def litellm_callback(
    *,
    tenant: str | None = None,
    user: str | None = None,
    feature: str | None = None,
    session: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Any:
    """A LiteLLM callback that records each call once; add it to ``litellm.callbacks``.

    A call's ``metadata`` may name ``tenant``, ``user``, ``feature``, ``session``
    and ``tags`` (a mapping), directly or under an ``llmledger`` key; LiteLLM's
    ``user`` argument is the event's user when the metadata names none. They win
    over this function's arguments, which win over the :func:`llmledger.attribute`
    block in force when the call starts.

    Example:
        >>> callback = litellm_callback(tenant="acme")
        >>> hasattr(callback, "log_success_event"), hasattr(callback, "async_log_failure_event")
        (True, True)
    """
    made: Any = callback_class()(
        tenant=tenant, user=user, feature=feature, session=session, tags=tags
    )
    return made
