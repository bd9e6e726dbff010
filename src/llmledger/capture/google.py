"""Capture of the ``google-genai`` SDK: ``generate_content``, ``generate_content_stream``
and ``embed_content``, sync and async, on the Gemini API and on Vertex AI.

The hook sits on the SDK's API client (``request``, ``request_streamed`` and
their async twins), below the ``Models`` methods: automatic function calling
and automatic continuation make several HTTP calls for one ``generate_content``,
and each is billed, so each is one event. The client hands over the wire JSON,
which is what the usage normaliser reads.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from llmledger.capture._core import (
    Call,
    CaptureOptions,
    begin,
    hand_over,
    internal_error,
    request_id_of,
)
from llmledger.capture._limits import guard_call
from llmledger.capture._patch import Patch
from llmledger.capture._streams import StreamSpec, StreamTracker, aiterate, iterate
from llmledger.core.events import Operation

__all__ = ["available", "body_text", "make_patches"]

T = TypeVar("T")

_METHODS: dict[str, Operation] = {
    "generateContent": "chat",
    "streamGenerateContent": "chat",
    "embedContent": "embeddings",
    "batchEmbedContents": "embeddings",
}


def _route(path: Any) -> tuple[Operation, str] | None:
    """The operation and model of an API path (``models/gemini-2.5-flash:generateContent``)."""
    if not isinstance(path, str):
        return None
    target, _, method = path.partition("?")[0].rpartition(":")
    model = target.rpartition("/")[2]
    operation = _METHODS.get(method)
    if operation is None and method == "predict" and "embedding" in model:
        operation = "embeddings"  # Vertex AI's text embedding models
    if operation is None:
        return None
    return operation, model


def _start(
    options: CaptureOptions, client: Any, path: Any, request_dict: Any, stream: bool
) -> Call | None:
    """The call to record, or None for a path that is not a billed call (or on failure)."""
    try:
        route = _route(path)
        if route is None:
            return None
        operation, model = route
        call = begin(
            options,
            "vertex" if getattr(client, "vertexai", False) else "google",
            operation,
            model or None,
            stream=stream,
            api_key=getattr(client, "api_key", None),
            request=request_dict,
        )
        call.reader = "google"
        return call
    except Exception:
        internal_error("google stream start" if stream else "google call start", options.ledger)
        return None


def _as_dict(chunk: Any) -> Mapping[str, Any]:
    body = getattr(chunk, "body", chunk)
    if isinstance(body, Mapping):
        return body
    loaded: Mapping[str, Any] = json.loads(body) if body else {}
    return loaded


def body_text(operation: str, body: Mapping[str, Any]) -> str | None:
    """The text parts of the first candidate of a ``generateContent`` body.

    Example:
        >>> body_text("chat", {"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]})
        'Hi'
    """
    for candidate in body.get("candidates") or ():
        parts = (candidate.get("content") or {}).get("parts") or ()
        text = "".join(str(part.get("text") or "") for part in parts if not part.get("thought"))
        return text or None
    return None


def _has_output(event: Mapping[str, Any]) -> bool:
    return bool(event.get("candidates"))


def _stream_text(events: Sequence[Mapping[str, Any]]) -> str | None:
    return "".join(body_text("chat", event) or "" for event in events) or None


def _no_request_id(source: Any) -> str | None:
    return None


_STREAM = StreamSpec(_as_dict, _has_output, _stream_text, _no_request_id)


def _resolved() -> None:
    """Nothing to read from a google-genai client before a guarded call: ``_start`` has it all."""


def _failed(call: Call, exc: BaseException) -> None:
    try:
        ended = time.perf_counter()
        hand_over(call, ended=ended, status="error", exc=exc, request_id=request_id_of(exc))
    except Exception:
        internal_error("google failed call", call.ledger)


def _response_done(call: Call, response: Any) -> None:
    try:
        ended = time.perf_counter()
        body = _as_dict(response)
        hand_over(call, ended=ended, body=body, text=lambda: body_text(call.operation, body))
    except Exception:
        internal_error("google call end", call.ledger)


def _tracked(call: Call, inner: T, wrap: Callable[[T, StreamTracker], T]) -> T:
    """The SDK's chunk iterator wrapped by ``wrap`` (:func:`iterate` or :func:`aiterate`)."""
    try:
        return wrap(inner, StreamTracker(call, _STREAM))
    except Exception:
        internal_error("google stream start", call.ledger)
        return inner


def _sync_request(options: CaptureOptions, original: Callable[..., Any]) -> Callable[..., Any]:
    def request(
        self: Any, http_method: Any, path: Any, request_dict: Any, *args: Any, **kwargs: Any
    ) -> Any:
        call = _start(options, self, path, request_dict, stream=False)
        if call is None:
            return original(self, http_method, path, request_dict, *args, **kwargs)
        if call.ledger.guarded:
            guard_call(call, request_dict, _resolved)
        try:
            response = original(self, http_method, path, request_dict, *args, **kwargs)
        except BaseException as exc:
            _failed(call, exc)
            raise
        _response_done(call, response)
        return response

    return request


def _async_request(options: CaptureOptions, original: Callable[..., Any]) -> Callable[..., Any]:
    async def async_request(
        self: Any, http_method: Any, path: Any, request_dict: Any, *args: Any, **kwargs: Any
    ) -> Any:
        call = _start(options, self, path, request_dict, stream=False)
        if call is None:
            return await original(self, http_method, path, request_dict, *args, **kwargs)
        if call.ledger.guarded:
            await asyncio.to_thread(guard_call, call, request_dict, _resolved)
        try:
            response = await original(self, http_method, path, request_dict, *args, **kwargs)
        except BaseException as exc:
            _failed(call, exc)
            raise
        _response_done(call, response)
        return response

    return async_request


def _sync_streamed(options: CaptureOptions, original: Callable[..., Any]) -> Callable[..., Any]:
    def request_streamed(
        self: Any, http_method: Any, path: Any, request_dict: Any, *args: Any, **kwargs: Any
    ) -> Iterator[Any]:
        inner: Iterator[Any] = original(self, http_method, path, request_dict, *args, **kwargs)
        call = _start(options, self, path, request_dict, stream=True)
        if call is None:
            return inner
        if call.ledger.guarded:
            guard_call(call, request_dict, _resolved)
        # The SDK's generator sends the request on its first step, inside ours.
        return _tracked(call, inner, iterate)

    return request_streamed


def _async_streamed(options: CaptureOptions, original: Callable[..., Any]) -> Callable[..., Any]:
    async def async_request_streamed(
        self: Any, http_method: Any, path: Any, request_dict: Any, *args: Any, **kwargs: Any
    ) -> AsyncIterator[Any]:
        call = _start(options, self, path, request_dict, stream=True)
        if call is None:
            return await original(self, http_method, path, request_dict, *args, **kwargs)  # type: ignore[no-any-return]
        if call.ledger.guarded:
            await asyncio.to_thread(guard_call, call, request_dict, _resolved)
        try:
            inner = await original(self, http_method, path, request_dict, *args, **kwargs)
        except BaseException as exc:
            _failed(call, exc)
            raise
        return _tracked(call, inner, aiterate)

    return async_request_streamed


def available() -> bool:
    """Whether the ``google-genai`` SDK can be imported."""
    try:
        importlib.import_module("google.genai")
    except ImportError:
        return False
    return True


def make_patches(options: CaptureOptions) -> list[Patch]:
    """The patches that capture the ``google-genai`` SDK's calls, with these options."""
    client = importlib.import_module("google.genai._api_client").BaseApiClient
    found = [
        Patch.of(client, name, functools.partial(make, options))
        for name, make in (
            ("request", _sync_request),
            ("async_request", _async_request),
            ("request_streamed", _sync_streamed),
            ("async_request_streamed", _async_streamed),
        )
    ]
    return [patch for patch in found if patch is not None]
