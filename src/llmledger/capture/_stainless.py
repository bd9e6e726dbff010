"""The hook shared by the ``openai`` and ``anthropic`` SDKs.

Both SDKs send every API call through one method of their base client,
``SyncAPIClient.request`` / ``AsyncAPIClient.request``, which sees the route,
the JSON body and whether the call streams, and returns what the resource
method returns: the response model (``.parse()`` results included), the SDK's
own ``Stream`` / ``AsyncStream``, or, for ``with_raw_response``, a raw response
whose ``.parse()`` gives either. Hooking there covers every resource method,
sync and async, clients made before :func:`llmledger.instrument` was called,
and OpenAI-compatible servers reached through ``base_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib
import inspect
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llmledger.capture._bodies import body_event, track_body
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
from llmledger.capture._streams import (
    TRACKER_ATTR,
    StreamSpec,
    StreamTracker,
    aiterate,
    iterate,
    tracker_of,
)
from llmledger.core.events import Operation

__all__ = ["StainlessSDK", "field_of", "optional", "patches", "raw_response_types"]


@dataclass(frozen=True, slots=True)
class StainlessSDK:
    """What differs between the two SDKs.

    Attributes:
        provider: The event's provider when the client's host says nothing else.
        routes: API path → operation, for the calls that are recorded.
        streams: Operation → how its stream chunks are read.
        body_text: ``(operation, body)`` → the response text (kept content).
        request_id_header: The response header with the provider's request id.
        resolve: ``(client, call)`` → sets the event's provider and reader name
            from the client (its host).
        hide_usage_chunk: Predicate of the usage-only chunk that the
            ``include_usage`` option adds to chat streams (OpenAI only); a chunk it
            hides is one the stream's ``keep`` keeps (it carries the usage).
        sync_client, async_client: The base client classes to hook.
        stream_types: The SDK's ``Stream`` and ``AsyncStream``.
        raw_types: The raw response classes ``with_raw_response`` returns.
        stream_classes: The SDK's stream classes and helper streams whose
            ``close()`` ends a tracked stream; each with how to reach its raw stream.
        read_body: ``(operation, response model)`` → the part of the JSON body the
            reader reads, taken from the model's fields instead of dumping it all
            (used when the response text is not kept); None when it cannot say.
    """

    provider: str
    routes: Mapping[str, Operation]
    streams: Mapping[str, StreamSpec]
    body_text: Callable[[str, Mapping[str, Any]], str | None]
    request_id_header: str
    resolve: Callable[[Any, Call], None]
    hide_usage_chunk: Callable[[Any], bool] | None
    sync_client: type
    async_client: type
    stream_types: tuple[type, ...]
    raw_types: tuple[type, ...]
    stream_classes: tuple[tuple[type, Callable[[Any], Any]], ...]
    read_body: Callable[[str, Any], Mapping[str, Any] | None] | None = None


def as_dict(model: Any) -> Mapping[str, Any]:
    """A response model as its JSON body (wire names), without serialisation warnings."""
    if isinstance(model, Mapping):
        return model
    dump = getattr(model, "model_dump", None)
    if callable(dump):
        result: Mapping[str, Any] = dump(
            mode="json", by_alias=True, exclude_unset=True, warnings=False
        )
        return result
    to_dict = getattr(model, "to_dict", None)
    if callable(to_dict):
        converted: Mapping[str, Any] = to_dict()
        return converted
    raise TypeError(f"cannot read a {type(model).__name__} as a response body")


_SCALARS = frozenset({int, str, float, bool})
# Model classes whose JSON dump is their fields as set (no aliases, no custom serialising).
_plain_classes: dict[type, bool] = {}


def _plain_class(cls: type) -> bool:
    plain = _plain_classes.get(cls)
    if plain is None:
        fields = getattr(cls, "model_fields", None)
        decorators = getattr(cls, "__pydantic_decorators__", None)
        plain = (
            isinstance(fields, Mapping)
            and decorators is not None
            and not decorators.field_serializers
            and not decorators.model_serializers
            and not getattr(cls, "model_computed_fields", None)
            and all(
                getattr(f, "alias", None) in (None, name)
                and getattr(f, "serialization_alias", None) in (None, name)
                for name, f in fields.items()
            )
        )
        _plain_classes[cls] = plain
    return plain


def fields_as_dict(model: Any) -> Mapping[str, Any] | None:
    """What :func:`as_dict` gives for a model of plain values (and nested such models),
    read from its fields: a fraction of the cost of a dump on the caller's thread.

    None when the model holds anything else (then dump it).
    """
    if not _plain_class(type(model)):
        return None
    try:
        values = model.__dict__
        names = model.__pydantic_fields_set__
        extra = model.__pydantic_extra__
    except AttributeError:
        return None
    found: dict[str, Any] = {}
    for name in names:
        value = values.get(name)
        if type(value) in _SCALARS or value is None:
            found[name] = value
        else:
            nested = fields_as_dict(value)
            if nested is None:
                return None
            found[name] = nested
    if extra:
        found.update(extra)
    return found


def field_of(model: Any, name: str) -> Any:
    """A model's field ``name``, declared or extra, or None when it has none.

    Read from the model's own values: ``getattr`` of a name a pydantic model lacks
    goes through its ``__getattr__``, which costs tens of microseconds to raise.

    Example:
        >>> import pydantic
        >>> class Body(pydantic.BaseModel, extra="allow"):
        ...     id: str
        >>> body = Body.model_validate({"id": "r1", "error": "overloaded"})
        >>> field_of(body, "id"), field_of(body, "error"), field_of(Body(id="r2"), "error")
        ('r1', 'overloaded', None)
    """
    try:
        found = model.__dict__.get(name)
        if found is None:
            extra = model.__pydantic_extra__
            if extra:
                found = extra.get(name)
    except AttributeError:
        return None
    return found


def usage_as_dict(usage: Any) -> Mapping[str, Any] | None:
    """A response's ``usage`` model as its JSON object (None stays None)."""
    if usage is None:
        return None
    found = fields_as_dict(usage)
    return as_dict(usage) if found is None else found


def _route(sdk: StainlessSDK, url: Any) -> Operation | None:
    operation = sdk.routes.get(url)
    if operation is None and isinstance(url, str) and "://" in url:
        path = url.split("://", 1)[1].partition("/")[2].partition("?")[0]
        for route, op in sdk.routes.items():
            if ("/" + path).endswith(route):
                return op
    return operation


#: Headers that carry the provider key (lower case), the client's own or per call.
_KEY_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key"})


def _key_in_headers(headers: Any) -> str | None:
    """The key a call's ``extra_headers`` send instead of the client's, or None.

    Example:
        >>> _key_in_headers({"Authorization": "Bearer sk-other"}), _key_in_headers({})
        ('sk-other', None)
    """
    if type(headers) is not dict or not headers:
        return None
    for name, value in headers.items():
        if type(value) is str and type(name) is str and name.lower() in _KEY_HEADERS:
            scheme, _, token = value.strip().partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else value.strip()
            return key or None
    return None


def _reads_body_itself(request_options: Any) -> bool:
    # ``with_streaming_response``: the caller reads the raw bytes, so nothing can be hidden.
    headers = request_options.headers
    return isinstance(headers, Mapping) and headers.get("X-Stainless-Raw-Response") == "stream"


def _start(
    sdk: StainlessSDK, options: CaptureOptions, client: Any, request_options: Any, stream: bool
) -> tuple[Call, Any] | None:
    """The call record, and the request options to send (a copy when usage is asked for).

    None for a request that is not a billed call, or when starting the record failed.
    """
    try:
        url = request_options.url
        operation = sdk.routes.get(url) if type(url) is str else None
        if operation is None:
            operation = _route(sdk, url)
            if operation is None:
                return None
        body = request_options.json_data
        # ``type() is dict``, not ``Mapping``: an ABC check costs more than the rest of this.
        model = body.get("model") if type(body) is dict else None
        # Positional: keyword arguments cost more, and this runs on every call.
        call = begin(
            options,
            sdk.provider,
            operation,
            model if type(model) is str else None,
            stream,
            _key_in_headers(request_options.headers),
            body,
        )
        if stream and options.include_usage:
            request_options = _asking_usage(sdk, call, request_options)
        return call, request_options
    except Exception:
        internal_error(f"{sdk.provider} call start", options.ledger)
        return None


def _asking_usage(sdk: StainlessSDK, call: Call, request_options: Any) -> Any:
    """The options of a chat stream, asking for its usage chunk when the hook can hide it."""
    body = request_options.json_data
    if (
        sdk.hide_usage_chunk is None
        or call.operation != "chat"
        or not isinstance(body, dict)
        or _reads_body_itself(request_options)
    ):
        return request_options
    asked = body.get("stream_options")
    if isinstance(asked, Mapping) and "include_usage" in asked:
        return request_options
    # A copy: the caller's options (and body) are never changed.
    asking = copy.copy(request_options)
    asking.json_data = {**body, "stream_options": {**(asked or {}), "include_usage": True}}
    call.hide_usage_chunk = True
    return asking


_RESOLVED = "_llmledger_resolved"


def _resolve(sdk: StainlessSDK, client: Any, call: Call) -> None:
    """What is read from the client once the call is sent: its provider, reader and key
    (an unguarded call reads them after the call, so nothing delays the request).
    """
    # Kept on the client, and read again only when its base URL or key is replaced.
    # Both are read from the client's own values: the ``base_url`` property of some
    # SDK versions imports a module on every read (it returns ``_base_url``).
    try:
        values = client.__dict__
        known = values.get(_RESOLVED)
        base_url = values["_base_url"]
        api_key = values["api_key"]
    except (AttributeError, KeyError):
        base_url = getattr(client, "base_url", None)
        api_key = getattr(client, "api_key", None)
        known = None
    if known is not None and known[0] is base_url and known[1] is api_key:
        call.provider, call.reader = known[2], known[3]
    else:
        sdk.resolve(client, call)
        with contextlib.suppress(AttributeError, TypeError):
            client.__dict__[_RESOLVED] = (base_url, api_key, call.provider, call.reader)
    if call.api_key is None:  # else the request's own headers named the key sent
        call.api_key = api_key if isinstance(api_key, str) else None


def _failed(sdk: StainlessSDK, client: Any, call: Call, exc: BaseException) -> None:
    try:
        ended = time.perf_counter()
        _resolve(sdk, client, call)
        hand_over(call, ended=ended, status="error", exc=exc, request_id=request_id_of(exc))
    except Exception:
        internal_error(f"{sdk.provider} failed call", call.ledger)


def _response_done(
    sdk: StainlessSDK, client: Any, call: Call, result: Any, http_response: Any = None
) -> None:
    """Hand over a non-streamed response: a model, or the read body of a raw response.

    Only the fields the reading reads are taken from a model (``sdk.read_body``),
    unless the response text is kept, which needs the whole body.
    """
    ended = _clock()
    _resolve(sdk, client, call)
    if http_response is not None:
        body: Mapping[str, Any] = json.loads(http_response.content)
        request_id = http_response.headers.get(sdk.request_id_header)
    else:
        read_body = sdk.read_body
        found = (
            read_body(call.operation, result)
            if read_body is not None and call.prompt is None
            else None
        )
        body = as_dict(result) if found is None else found
        request_id = getattr(result, "_request_id", None)
    hand_over(
        call,
        ended=ended,
        body=body,
        request_id=request_id,
        # Only a call that keeps its text reads it (no closure for the others).
        text=None if call.prompt is None else lambda: sdk.body_text(call.operation, body),
    )


def _track(sdk: StainlessSDK, client: Any, call: Call, stream: Any, asynchronous: bool) -> None:
    """Wrap the SDK stream's own chunk iterator in place: its type and methods stay."""
    if tracker_of(stream) is not None:
        return
    spec = sdk.streams.get(call.operation)
    if spec is None:
        return
    _resolve(sdk, client, call)
    tracker = StreamTracker(call, spec, getattr(stream, "response", None))
    hide = sdk.hide_usage_chunk if call.hide_usage_chunk else None
    inner = stream._iterator
    stream._iterator = (
        aiterate(inner, tracker, hide) if asynchronous else iterate(inner, tracker, hide)
    )
    vars(stream)[TRACKER_ATTR] = tracker


def _raw_streams_body(result: Any) -> bool:
    # ``with_streaming_response``: the body is read by the caller, later.
    request = getattr(result.http_response, "request", None)
    headers = getattr(request, "headers", None) or {}
    return bool(headers.get("X-Stainless-Raw-Response") == "stream")


def _track_body(
    sdk: StainlessSDK, client: Any, call: Call, http_response: Any, asynchronous: bool
) -> None:
    """Record a ``with_streaming_response`` call when the caller reads (or drops) its body."""
    _resolve(sdk, client, call)
    spec = sdk.streams.get(call.operation) if call.stream else None

    def text(operation: str, data: Any) -> str | None:
        if spec is not None:
            return spec.text(data)
        return None if call.stream else sdk.body_text(operation, data)

    request_id = http_response.headers.get(sdk.request_id_header)
    track_body(call, http_response, body_event(request_id, text), asynchronous)


_clock = time.perf_counter
_MODEL, _STREAM, _RAW = 0, 1, 2
_kinds: dict[type, int] = {}


def _kind(sdk: StainlessSDK, result: Any) -> int:
    # One dict look-up per call instead of isinstance checks against generic classes.
    cls = type(result)
    kind = _kinds.get(cls)
    if kind is None:
        if isinstance(result, sdk.stream_types):
            kind = _STREAM
        elif isinstance(result, sdk.raw_types):
            kind = _RAW
        else:
            kind = _MODEL
        _kinds[cls] = kind
    return kind


def _done(sdk: StainlessSDK, client: Any, call: Call, result: Any, asynchronous: bool) -> Any:
    """Start recording what the call returned; returns what must be awaited, if anything."""
    kind = _kinds.get(type(result))
    if kind is None:
        kind = _kind(sdk, result)
    if kind == _MODEL:
        _response_done(sdk, client, call, result)
        return None
    if kind == _STREAM:
        _track(sdk, client, call, result, asynchronous)
        return None
    if kind == _RAW:
        if _raw_streams_body(result):
            _track_body(sdk, client, call, result.http_response, asynchronous)
            return None
        if call.stream:
            # Cached by the SDK: the caller's own parse() gets this same stream.
            raw: Any = result
            return raw.parse()
        _response_done(sdk, client, call, result, result.http_response)
    return None


def _sync_request(
    sdk: StainlessSDK, options: CaptureOptions, original: Callable[..., Any]
) -> Callable[..., Any]:
    def request(self: Any, cast_to: Any, request_options: Any, *args: Any, **kwargs: Any) -> Any:
        started = _start(sdk, options, self, request_options, bool(kwargs.get("stream")))
        if started is None:
            return original(self, cast_to, request_options, *args, **kwargs)
        call, request_options = started
        if call.ledger.guarded:
            guard_call(call, request_options.json_data, lambda: _resolve(sdk, self, call))
        try:
            result = original(self, cast_to, request_options, *args, **kwargs)
        except BaseException as exc:
            _failed(sdk, self, call, exc)
            raise
        try:
            parsed = _done(sdk, self, call, result, asynchronous=False)
            if parsed is not None:
                _track(sdk, self, call, parsed, asynchronous=False)
        except Exception:
            internal_error(f"{sdk.provider} call end", call.ledger)
        return result

    return request


def _async_request(
    sdk: StainlessSDK, options: CaptureOptions, original: Callable[..., Any]
) -> Callable[..., Any]:
    async def request(
        self: Any, cast_to: Any, request_options: Any, *args: Any, **kwargs: Any
    ) -> Any:
        started = _start(sdk, options, self, request_options, bool(kwargs.get("stream")))
        if started is None:
            return await original(self, cast_to, request_options, *args, **kwargs)
        call, request_options = started
        if call.ledger.guarded:
            await asyncio.to_thread(
                guard_call, call, request_options.json_data, lambda: _resolve(sdk, self, call)
            )
        try:
            result = await original(self, cast_to, request_options, *args, **kwargs)
        except BaseException as exc:
            _failed(sdk, self, call, exc)
            raise
        try:
            parsed = _done(sdk, self, call, result, asynchronous=True)
            if parsed is not None:
                if inspect.isawaitable(parsed):
                    parsed = await parsed
                _track(sdk, self, call, parsed, asynchronous=True)
        except Exception:
            internal_error(f"{sdk.provider} call end", call.ledger)
        return result

    return request


def _closer(get_raw: Callable[[Any], Any], original: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(original):

        async def aclose(self: Any) -> Any:
            _closing(get_raw, self)
            return await original(self)

        return aclose

    def close(self: Any) -> Any:
        _closing(get_raw, self)
        return original(self)

    return close


def _closing(get_raw: Callable[[Any], Any], stream: Any) -> None:
    try:
        tracker = tracker_of(get_raw(stream))
        if tracker is not None:
            tracker.closed()
    except Exception:
        internal_error("stream close")


def optional(module: str, name: str) -> Any:
    """``module.name``, or None when this SDK version has no such thing.

    Example:
        >>> optional("json", "loads").__name__, optional("json", "nothing")
        ('loads', None)
    """
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def raw_response_types(package: str) -> tuple[type, ...]:
    """What ``with_raw_response`` returns in this SDK version (0.x: ``LegacyAPIResponse``).

    Example:
        >>> raw_response_types("no_such_sdk")
        ()
    """
    found = (
        optional(f"{package}._legacy_response", "LegacyAPIResponse"),
        optional(f"{package}._response", "BaseAPIResponse"),
    )
    return tuple(cls for cls in found if cls is not None)


def patches(sdk: StainlessSDK, options: CaptureOptions) -> list[Patch]:
    """The patches that hook this SDK with these options (not yet applied)."""
    found = [
        Patch.of(
            sdk.sync_client, "request", lambda original: _sync_request(sdk, options, original)
        ),
        Patch.of(
            sdk.async_client, "request", lambda original: _async_request(sdk, options, original)
        ),
    ]
    for cls, get_raw in sdk.stream_classes:
        found.append(
            Patch.of(cls, "close", lambda original, get_raw=get_raw: _closer(get_raw, original))
        )
    return [patch for patch in found if patch is not None]
