"""A captured call as plain values: what its hook saw, journaled before its event exists.

A capture hook's work on the caller's thread ends with one tuple of plain values
(:func:`captured`): the call's id parts, times, attribution, the provider's answer
as the few JSON values its reading needs, and the kept text when text is kept.
The journal writes it as it is (``marshal``), so the call survives the death of
the process from the moment the SDK call returns; the background writer turns it
into its :class:`~llmledger.core.events.UsageEvent` (:func:`captured_event`),
reading the usage with the provider's rules and pricing it, off the caller's
thread.  Replays build the same event again: its id comes from the tuple.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from llmledger.core.attribution import Attribution
from llmledger.core.errors import ResponseParseError
from llmledger.core.events import Operation, Status, UsageEvent
from llmledger.core.ids import fingerprint, id_entropy, ulid_of

if TYPE_CHECKING:
    from llmledger.normalize.base import Reading
    from llmledger.runtime.ledger import Ledger

__all__ = ["Call", "Captured", "captured", "captured_event"]

_MAX_ERROR_MESSAGE = 1000


class Captured(NamedTuple):
    """The plain values of a captured call, in the journal's order.

    The journal keeps a plain tuple of these fields (``tuple(captured)``); a record
    read back is wrapped in this class again.
    """

    entropy: int  # the random part of the event's id (core.ids.id_entropy)
    wall: float  # seconds since the epoch when the call started
    provider: str
    reader: str | None  # the reader of its answers, when not the provider's own
    operation: str
    model: str | None  # the model requested
    stream: bool
    duration_ms: float
    ttft_ms: float | None
    tenant: str | None
    user: str | None
    feature: str | None
    session: str | None
    tags: dict[str, str] | None
    api_key_fingerprint: str | None
    status: str
    request_id: str | None
    body: Mapping[str, Any] | None  # the response body (the parts its reading reads)
    events: Sequence[Mapping[str, Any]] | None  # a stream's events (the ones it needs)
    error_type: str | None
    error_message: str | None
    prompt: str | None  # kept text, redacted already
    response: str | None


class Call(Protocol):
    """What a capture hook knows of a call when it ends (``capture._core.Call``)."""

    provider: str
    reader: str | None
    operation: Operation
    model: str | None
    stream: bool
    wall: float  # seconds since the epoch when the call started
    started: float  # time.perf_counter() when the call started
    attribution: Attribution
    extra: Mapping[str, Any] | None  # what a framework call adds to the attribution
    api_key: str | None


def captured(
    call: Call,
    ended: float,
    *,
    status: Status = "ok",
    ttft: float | None = None,
    request_id: str | None = None,
    body: Mapping[str, Any] | None = None,
    events: Sequence[Mapping[str, Any]] | None = None,
    exc: BaseException | None = None,
    error_type: str | None = None,
    error_message: str | None = None,
    prompt: str | None = None,
    response: str | None = None,
) -> tuple[Any, ...]:
    """The plain tuple of one ended call (see :class:`Captured`), on the caller's thread.

    ``ended`` and ``ttft`` are ``time.perf_counter()`` readings.  ``exc``, the
    exception that ended the call, names its error (or ``error_type`` and
    ``error_message`` do).
    """
    started = call.started
    attribution = call.attribution.merged(**call.extra) if call.extra else call.attribution
    if exc is not None:
        error_type, error_message = type(exc).__name__, str(exc)
    tags = attribution.tags
    return (
        id_entropy(),
        call.wall,
        call.provider,
        call.reader,
        call.operation,
        call.model,
        call.stream,
        round(max(ended - started, 0.0) * 1000, 3),
        None if ttft is None else round(max(ttft - started, 0.0) * 1000, 3),
        attribution.tenant,
        attribution.user,
        attribution.feature,
        attribution.session,
        dict(tags) if tags else None,
        fingerprint(call.api_key),
        status,
        request_id,
        body,
        events,
        error_type,
        None if error_type is None else (error_message or "")[:_MAX_ERROR_MESSAGE] or None,
        prompt,
        response,
    )


def captured_event(call: Captured, ledger: Ledger, reading: Reading | None = None) -> UsageEvent:
    """The event of a captured call, its usage read with the provider's rules (in the
    background writer); its kept text, if any, handed to the ledger's content store.

    A body the readers cannot read for an operation they have no reader for still
    gives an event, with its usage missing; for chat and responses calls it raises.
    ``reading`` is the usage a framework has already read, instead of a body.

    Raises:
        ResponseParseError: on a chat or responses body that cannot be read.
        InvalidEventError: on values no event can hold.
    """
    from llmledger.normalize import read_response, read_stream_events
    from llmledger.runtime.recording import assemble_event

    ms = int(call.wall * 1000)
    values: dict[str, Any] = {
        "id": ulid_of(ms, call.entropy),
        "provider": call.provider,
        "operation": call.operation,
        "stream": call.stream,
        "ts": datetime.fromtimestamp(call.wall, UTC),
        "duration_ms": call.duration_ms,
        "tenant": call.tenant,
        "user": call.user,
        "feature": call.feature,
        "session": call.session,
        "tags": call.tags or {},
        "api_key_fingerprint": call.api_key_fingerprint,
        "status": call.status,
    }
    if call.model:
        values["model"] = call.model
    if call.ttft_ms is not None:
        values["ttft_ms"] = call.ttft_ms
    if call.request_id:
        values["request_id"] = call.request_id
    if call.error_type is not None:
        values["error_type"] = call.error_type
        values["error_message"] = call.error_message
    reader = call.reader or call.provider
    features = ledger.features
    if reading is not None:
        values.setdefault("model", reading.response_model or "unknown")
        event = assemble_event(values, features=features, reading=reading)
        source = "the framework's usage"
    elif call.body is None and call.events is None:
        # The call failed before any answer was read (or its answer tells nothing).
        values.setdefault("model", "unknown")
        values["usage_source"] = "missing"
        event = assemble_event(values, features=features, usage={})
        source = "no response (the call failed)" if call.error_type else "no usage in the answer"
    else:
        operation: Any = call.operation
        try:
            if call.events is not None:
                reading = read_stream_events(call.events, provider=reader, operation=operation)
            else:
                assert call.body is not None
                reading = read_response(call.body, provider=reader, operation=operation)
        except ResponseParseError:
            if operation == "chat" or operation == "responses":
                raise
            reading = None
        if reading is None:
            values["usage_source"] = "missing"
            event = assemble_event(values, features=features, usage={})
        else:
            if reading.request_id and values.get("request_id") is None:
                values["request_id"] = reading.request_id
            event = assemble_event(values, features=features, reading=reading)
        source = "stream events" if call.events is not None else "response body"
    if call.prompt is not None or call.response is not None:
        from llmledger.runtime.content import ContentRecord, content_store

        content_store(ledger).save(
            ContentRecord(
                event_id=event.id, ts=event.ts, prompt=call.prompt, response=call.response
            )
        )
    if ledger.settings.debug:
        from llmledger.runtime.debug import log_captured

        log_captured(event, reader=reader, source=source)
    return event
