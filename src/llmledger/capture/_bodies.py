"""Recording ``with_streaming_response`` calls, whose body the caller reads itself.

For those calls the SDK hands back a response whose HTTP body is still unread:
the caller may ``parse()`` it, iterate its lines or bytes, or close it unread.
Whichever it does, the bytes pass through the HTTP response's byte stream, so
that stream is wrapped in place (the response object, and what every method of
it returns, stay as they are): each network chunk costs one list append on the
caller's thread, and the body is parsed when the stream ends and handed over
(:func:`~llmledger.capture._core.hand_over`); its usage is read in the background.

The ending gives the status as for SDK streams: read to the end ``ok``, a read
error ``error``, closed part-way ``incomplete``, closed or dropped unread
``abandoned``.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from llmledger.capture._core import Call, hand_over
from llmledger.capture._streams import Tracker
from llmledger.core.events import Status

__all__ = ["BodyTracker", "body_event", "track_body"]

#: Hands over the call of a read body: ``(call, body, ended, status, ttft, exc)``.
Build = Callable[[Call, bytes, float, Status, float | None, BaseException | None], None]


class BodyTracker(Tracker):
    """Collects one response body's bytes and records its event once, when it ends."""

    __slots__ = ("build", "first")

    where = "response body end"

    def __init__(self, call: Call, build: Build) -> None:
        super().__init__(call)
        self.build = build
        self.first: float | None = None

    def add(self, chunk: bytes) -> None:
        """One network chunk, read by the caller."""
        if self.first is None:
            self.first = time.perf_counter()
        self.chunks.append(chunk)

    def stopped(self, exc: BaseException) -> None:
        """Reading stopped on ``exc``: closed part-way (``GeneratorExit``) or failed."""
        if isinstance(exc, GeneratorExit):
            self.closed()
        else:
            self.finish("error", exc)

    def _hand_over(self, status: Status, exc: BaseException | None, ended: float) -> None:
        self.build(self.call, b"".join(self.chunks), ended, status, self.first, exc)


def _byte_stream_bases(http_response: Any) -> tuple[type, type]:
    # The SDK's HTTP library (httpx or a fork of it) names the byte stream classes.
    package = importlib.import_module(type(http_response).__module__.partition(".")[0])
    return package.SyncByteStream, package.AsyncByteStream


_wrappers: dict[tuple[type, bool], type] = {}


def _wrapper(http_response: Any, asynchronous: bool) -> type:
    key = (type(http_response), asynchronous)
    made = _wrappers.get(key)
    if made is None:
        sync_base, async_base = _byte_stream_bases(http_response)
        made = _make_wrapper(async_base if asynchronous else sync_base, asynchronous)
        _wrappers[key] = made
    return made


def _make_wrapper(base: type, asynchronous: bool) -> type:
    def __init__(self: Any, inner: Any, tracker: BodyTracker) -> None:
        self._inner = inner
        self._tracker = tracker

    def __iter__(self: Any) -> Iterator[bytes]:
        tracker = self._tracker
        try:
            for chunk in self._inner:
                tracker.add(chunk)
                yield chunk
        except BaseException as exc:
            tracker.stopped(exc)
            raise
        tracker.finish("ok")

    def close(self: Any) -> None:
        self._tracker.closed()
        self._inner.close()

    async def __aiter__(self: Any) -> AsyncIterator[bytes]:
        tracker = self._tracker
        try:
            async for chunk in self._inner:
                tracker.add(chunk)
                yield chunk
        except BaseException as exc:
            tracker.stopped(exc)
            raise
        tracker.finish("ok")

    async def aclose(self: Any) -> None:
        self._tracker.closed()
        await self._inner.aclose()

    methods: dict[str, Any] = {"__init__": __init__, "__slots__": ("_inner", "_tracker")}
    if asynchronous:
        methods.update(__aiter__=__aiter__, aclose=aclose)
    else:
        methods.update(__iter__=__iter__, close=close)
    return type("TrackedByteStream", (base,), methods)


def track_body(call: Call, http_response: Any, build: Build, asynchronous: bool) -> None:
    """Wrap the unread body of ``http_response`` so that reading it records ``call``."""
    cls = _wrapper(http_response, asynchronous)
    http_response.stream = cls(http_response.stream, BodyTracker(call, build))


_LAST_EVENTS = frozenset({"message_stop", "response.completed", "response.incomplete"})


def _ended_in_full(body: bytes, events: list[dict[str, Any]]) -> bool:
    """Whether a stream transcript holds its provider's final event."""
    if b"data: [DONE]" in body:
        return True
    return bool(events) and events[-1].get("type") in _LAST_EVENTS


def body_event(request_id: str | None, text: Callable[[str, Any], str | None]) -> Build:
    """How to hand over the call of a body: SSE for a streamed call, JSON otherwise.

    ``text`` gives the response text of a JSON body (``(operation, body)``) or of
    the list of stream events (``(operation, events)``), used when content is kept.
    """
    from llmledger.normalize.sse import transcript_events

    def build(
        call: Call,
        body: bytes,
        ended: float,
        status: Status,
        ttft: float | None,
        exc: BaseException | None,
    ) -> None:
        if call.stream:
            events = transcript_events(body.decode("utf-8", errors="replace"))
            if status == "incomplete" and _ended_in_full(body, events):
                # The SDK stops reading at the stream's last event and closes the response.
                status = "ok"
            hand_over(
                call,
                ended=ended,
                status=status,
                ttft=ttft,
                request_id=request_id,
                events=events,
                exc=exc,
                text=lambda: text(call.operation, events),
            )
        elif status == "ok":
            parsed = json.loads(body)
            hand_over(
                call,
                ended=ended,
                request_id=request_id,
                body=parsed,
                exc=exc,
                text=lambda: text(call.operation, parsed),
            )
        else:
            # A JSON body read part-way tells nothing: the call is recorded without usage.
            hand_over(call, ended=ended, status=status, request_id=request_id, exc=exc)

    return build
