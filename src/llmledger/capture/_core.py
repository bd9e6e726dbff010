"""What every provider hook shares.

The caller's thread only takes a :class:`Call` (timestamps, the attribution in
force, the requested model, references) and, once the call ends, hands the
ledger the call's plain values (:func:`hand_over`): the journal writes them to
disk as they are, and reading the usage, pricing and writing to the store
happen in the ledger's background writer. A call made inside a
:func:`llmledger.track` block hands the block the work building its event
instead, and the block records it as its own event.

The options a hook follows (:class:`CaptureOptions`) belong to the
:class:`~llmledger.capture.Instrumentation` that installed it and are bound into
the hook when it is made; nothing here is a module-wide setting.

Every hook body runs under :func:`internal_error`'s guard, so a tracking failure
is logged and counted and never reaches the caller (it is re-raised only when
``settings.strict`` is on, as in the test suite).
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import llmledger.runtime.ledger as _ledger_module
from llmledger.core.attribution import Attribution, attribution_in_force, current_attribution
from llmledger.core.events import Operation, Status, UsageEvent
from llmledger.core.ids import fingerprint
from llmledger.core.usage import Usage
from llmledger.runtime.captured import Captured, captured, captured_event
from llmledger.runtime.ledger import Ledger, get_ledger
from llmledger.runtime.recording import Block, current_block

if TYPE_CHECKING:
    from llmledger.runtime.limits import LimitCheck

__all__ = [
    "DEFAULT_OPTIONS",
    "Call",
    "CaptureOptions",
    "Redactor",
    "Scope",
    "adapter_call",
    "attribution_from",
    "begin",
    "capture_content",
    "count",
    "current_scope",
    "fingerprint",
    "hand_over",
    "internal_error",
    "internal_errors",
    "merge_attribution",
    "open_block",
    "submit",
    "usage_event",
]

log = logging.getLogger("llmledger.capture")

#: A redaction hook: gets ``("prompt" | "response", text)``, returns the text to keep.
Redactor = Callable[[str, str], str]


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    """The options :func:`llmledger.instrument` was given, bound into every hook it installs.

    Attributes:
        include_usage: Ask OpenAI chat streams for their usage chunk, and hide it.
        store_content: Keep prompt and response text; None follows the setting.
        redact: Called on any text before it is kept.
        ledger: The ledger the calls are recorded in; None: the process ledger in
            force when each call starts.

    Example:
        >>> CaptureOptions(include_usage=True).store_content is None
        True
    """

    include_usage: bool = False
    store_content: bool | None = None
    redact: Redactor | None = None
    ledger: Ledger | None = None


#: What adapters and hooks made outside :func:`llmledger.instrument` follow.
DEFAULT_OPTIONS = CaptureOptions()

_errors_lock = threading.Lock()
_internal_errors = 0

# Bound once: begin() runs on every captured call, on the caller's thread.
_wall_clock = time.time
_clock = time.perf_counter


def internal_errors() -> int:
    """How many internal capture errors were caught (and logged) in this process."""
    return _internal_errors


def internal_error(where: str, ledger: Ledger | None = None) -> None:
    """Count and log the exception being handled; re-raise it when the ledger is strict.

    Call it only from an ``except`` block. ``ledger`` is the one the call records
    into, when known; otherwise the process ledger's setting decides.
    """
    global _internal_errors
    with _errors_lock:
        _internal_errors += 1
    try:
        strict = (ledger or get_ledger()).settings.strict
    except Exception:
        strict = False
    if strict:
        raise
    log.exception("llmledger: capture failed in %s; the call itself is unaffected", where)


# -- content opt-in per block --------------------------------------------------------

_content_override: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "llmledger_capture_content", default=None
)


class capture_content:
    """Keep (or, with ``False``, do not keep) prompt and response text of the calls in a block.

    Wins over the ``store_content`` setting and :func:`llmledger.instrument`'s
    argument, for the calls made inside the block only.

    Example:
        >>> with capture_content():
        ...     pass  # calls made here keep their prompt and response text
    """

    def __init__(self, enabled: bool = True) -> None:
        self._enabled = enabled
        self._tokens: list[contextvars.Token[bool | None]] = []

    def __enter__(self) -> None:
        self._tokens.append(_content_override.set(self._enabled))

    def __exit__(self, *exc: object) -> None:
        _content_override.reset(self._tokens.pop())


# -- adapters (LiteLLM, LangChain) -------------------------------------------------------


@dataclass(slots=True)
class Scope:
    """Set by an adapter around one framework call; provider hooks inside it mark it seen.

    ``attribution`` holds what the framework call adds (its user, tags…), merged
    into the event a provider hook records; ``seen`` counts those events, so the
    adapter records the call itself only when no hook did. A ``closed`` scope
    (its call has returned) is ignored by the hooks, so a scope left in a
    context by a framework that never reset it cannot claim later calls.
    """

    attribution: Mapping[str, Any] = field(default_factory=dict)
    seen: int = 0
    closed: bool = False


_FIELDS = ("tenant", "user", "feature", "session")


def attribution_from(metadata: Any) -> dict[str, Any]:
    """The attribution a framework call names in its metadata.

    Reads ``tenant``, ``user``, ``feature``, ``session`` (strings) and ``tags`` (a
    mapping; integer values become text) from ``metadata``, or from its
    ``llmledger`` entry when there is one, so they need not share a namespace
    with other metadata. Anything else, or of another type, is left out.

    Example:
        >>> attribution_from({"user": "u1", "tags": {"doc": 7}, "run": 3})
        {'user': 'u1', 'tags': {'doc': '7'}}
        >>> attribution_from({"llmledger": {"feature": "search"}, "feature": "x"})
        {'feature': 'search'}
    """
    if not isinstance(metadata, Mapping):
        return {}
    nested = metadata.get("llmledger")
    source: Mapping[str, Any] = nested if isinstance(nested, Mapping) else metadata
    found: dict[str, Any] = {}
    for name in _FIELDS:
        value = source.get(name)
        if isinstance(value, str) and value:
            found[name] = value
    tags = source.get("tags")
    if isinstance(tags, Mapping):
        kept = {
            key: str(value)
            for key, value in tags.items()
            if isinstance(key, str)
            and key
            and isinstance(value, (str, int))
            and not isinstance(value, bool)
        }
        if kept:
            found["tags"] = kept
    return found


def merge_attribution(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Attribution layers merged, later ones winning; tags are merged key by key.

    Example:
        >>> merge_attribution({"user": "a", "tags": {"x": "1"}}, {"user": "b", "tags": {"y": "2"}})
        {'user': 'b', 'tags': {'x': '1', 'y': '2'}}
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        for name, value in layer.items():
            if name == "tags":
                merged["tags"] = {**merged.get("tags", {}), **value}
            elif value is not None:
                merged[name] = value
    return merged


current_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "llmledger_capture_scope", default=None
)


# -- the call ------------------------------------------------------------------------


@dataclass(slots=True)
class Call:
    """What is known when a provider call starts, taken on the caller's thread."""

    provider: str
    operation: Operation
    model: str | None
    wall: float
    started: float
    attribution: Attribution
    ledger: Ledger
    options: CaptureOptions
    stream: bool = False
    api_key: str | None = None
    reader: str | None = None
    prompt: str | None = None
    extra: Mapping[str, Any] | None = None
    hide_usage_chunk: bool = False
    block: Block | None = None
    #: The limits' reservation of a guarded call, settled once its event is built.
    reservation: LimitCheck | None = None


def begin(
    options: CaptureOptions,
    provider: str,
    operation: Operation,
    model: str | None,
    stream: bool = False,
    api_key: Any = None,
    request: Any = None,
) -> Call:
    """Start recording a call: timestamps, attribution, and the prompt when content is kept.

    ``request`` is the request body; it is serialised here (only when content is
    kept) because the caller may change its messages once the call returns.
    Everything else about the call is read when it ends (:func:`hand_over`).
    """
    # The process ledger is read directly: this runs on every call, and
    # get_ledger() only differs before the first ledger is built.
    ledger = options.ledger or _ledger_module._ledger or get_ledger()
    call = Call(
        provider,
        operation,
        model,
        _wall_clock(),
        _clock(),
        attribution_in_force(),
        ledger,
        options,
        stream,
        api_key if type(api_key) is str else None,
    )
    scope = current_scope.get()
    if scope is not None and not scope.closed:
        scope.seen += 1
        call.extra = scope.attribution
    block = current_block.get()
    if block is not None and not block.closed:
        block.seen += 1
        call.block = block
    if request is not None:
        wanted = _content_override.get()
        if wanted is None:
            wanted = options.store_content
            if wanted is None:
                wanted = ledger.settings.store_content
        if wanted:
            call.prompt = json.dumps(request, default=str, ensure_ascii=False)
    return call


def open_block() -> Block | None:
    """The :func:`llmledger.track` block open in this context, one more call counted in it.

    For a framework adapter, in the caller's context when the framework's call starts.
    """
    block = current_block.get()
    if block is None or block.closed:
        return None
    block.seen += 1
    return block


def submit(call: Call, build: Callable[[], UsageEvent]) -> None:
    """Hand over the deferred work that builds the call's event.

    To the :func:`llmledger.track` block the call started in while that block is
    open (it records the event itself), otherwise to the ledger.
    """
    if call.reservation is not None:
        build = call.reservation.settling(build)
    block = call.block
    if block is None:
        call.ledger.submit(build)
    elif not block.take(build):
        block.ledger.submit(block.deferred(build))


# -- handing a call over --------------------------------------------------------------


def hand_over(
    call: Call,
    *,
    ended: float,
    status: Status = "ok",
    ttft: float | None = None,
    request_id: str | None = None,
    body: Mapping[str, Any] | None = None,
    events: Sequence[Mapping[str, Any]] | None = None,
    exc: BaseException | None = None,
    text: Callable[[], str | None] | None = None,
) -> None:
    """Hand over an ended call: its plain values go to the journal, and the writer
    builds its event in the background (reading the usage, pricing).

    ``body`` is the response body (or the parts of it its reading reads), ``events``
    a stream's events; neither, for a call that failed before any answer or whose
    answer tells nothing (its usage is then missing).  ``exc`` is the exception that
    ended the call.  ``text`` gives the response text and is called only when the
    call keeps its text.  Inside a :func:`llmledger.track` block, or for a guarded
    call (its reservation is settled with the event), the event is built where the
    block or the settlement needs it.
    """
    prompt = response = None
    if call.prompt is not None:
        prompt = call.prompt
        response = text() if text is not None else None
        redact = call.options.redact
        if redact is not None:
            prompt = redact("prompt", prompt)
            response = redact("response", response) if response is not None else None
    values = captured(
        call,
        ended,
        status=status,
        ttft=ttft,
        request_id=request_id,
        body=body,
        events=events,
        exc=exc,
        prompt=prompt,
        response=response,
    )
    if call.block is None and call.reservation is None:
        call.ledger.submit(values)
        return
    ledger = call.ledger
    submit(call, lambda: captured_event(Captured(*values), ledger))


def adapter_call(
    provider: str,
    operation: Operation,
    model: str | None,
    *,
    extra: Mapping[str, Any] | None = None,
    attribution: Attribution | None = None,
    started: float | None = None,
    stream: bool = False,
    api_key: Any = None,
    block: Block | None = None,
) -> Call:
    """Start recording a call seen by a framework adapter rather than a provider hook.

    ``started`` is the call's start as seconds since the epoch when the framework
    gives it (then durations are measured in the same clock); by default it is now.
    ``block`` is the :func:`llmledger.track` block the framework's call started in
    (:func:`open_block`), which then records the event. Unlike :func:`begin` this
    never marks a :class:`Scope` seen.
    """
    wall = time.time() if started is None else started
    clock = time.perf_counter() if started is None else started
    return Call(
        provider,
        operation,
        model,
        wall,
        clock,
        current_attribution() if attribution is None else attribution,
        get_ledger(),
        DEFAULT_OPTIONS,
        stream,
        api_key if isinstance(api_key, str) else None,
        extra=extra,
        block=block,
    )


def usage_event(
    call: Call,
    usage: Usage | None,
    *,
    ended: float,
    status: Status = "ok",
    ttft: float | None = None,
    usage_raw: Any = None,
    response_model: str | None = None,
    request_id: str | None = None,
    finish_reason: str | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
) -> UsageEvent:
    """Build the event of an adapter's call from usage it has already read.

    ``usage`` None means the framework reported none: the event says its usage
    is missing. Counts that break the invariants are kept, with warnings.
    """
    from llmledger.normalize.base import Reading

    values = captured(
        call,
        ended,
        status=status,
        ttft=ttft,
        error_type=error_type,
        error_message=error_message,
    )
    reading = Reading(
        provider=call.provider,
        operation=call.operation,
        usage=usage or Usage(),
        usage_raw=usage_raw,
        usage_source="provider" if usage is not None else "missing",
        response_model=response_model,
        request_id=request_id,
        finish_reason=finish_reason,
        stream=call.stream,
        warnings=usage.problems() if usage is not None else [],
    )
    return captured_event(Captured(*values), call.ledger, reading)


def count(value: Any) -> int:
    """A token count as an int: anything that is not a non-negative integer is 0.

    Example:
        >>> count(12), count(None), count(True), count(-1)
        (12, 0, 0, 0)
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def request_id_of(exc: BaseException) -> str | None:
    """The provider's request id carried by an SDK exception, when it has one."""
    request_id = getattr(exc, "request_id", None)
    if isinstance(request_id, str):
        return request_id
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        for name in ("x-request-id", "request-id", "x-goog-request-id"):
            value = headers.get(name)
            if isinstance(value, str):
                return value
    return None
