"""Recording a streamed call exactly once, however the caller ends it.

A :class:`StreamTracker` is fed by a generator that wraps the SDK's own chunk
iterator (so the SDK's stream object, its type and its methods stay as they
are). On the caller's thread each chunk costs a test and at most one list append
(and, for the first few chunks, a timestamp for time to first token). Only the
chunks the reading needs are kept (the first few, and those the SDK's
:attr:`StreamSpec.keep` picks: usage, the ending), unless the response text is
kept: holding every parsed chunk until the stream ends costs the caller more in
memory and garbage collection than the tracking itself. Turning the chunks into
usage happens in the background once the stream ends (the caller's thread hands
over the kept chunks' fields, :func:`~llmledger.capture._core.hand_over`):

* iterated to the end: ``ok``
* the SDK raised while reading: ``error``
* closed, left from a ``with`` block or broken out of after some chunks: ``incomplete``
* closed or dropped before any chunk was read: ``abandoned``

Whichever comes first wins; later ends are ignored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from llmledger.capture._core import Call, hand_over, internal_error, request_id_of
from llmledger.core.events import Status

__all__ = [
    "TRACKER_ATTR",
    "StreamSpec",
    "StreamTracker",
    "Tracker",
    "aiterate",
    "iterate",
    "tracker_of",
]

T = TypeVar("T")

#: Where a tracked SDK stream object keeps its tracker (an instance attribute).
TRACKER_ATTR = "_llmledger_stream"

# Timestamps are kept for the first chunks only: the first token is among them
# (a role-only or start event may come first), and the cost stays per stream.
_TIMED_CHUNKS = 8


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """How to read one SDK's stream chunks (``keep`` on every chunk, the others once the
    stream ends, on the caller's thread, for the few chunks handed over).

    Attributes:
        as_dict: A chunk as its JSON event dict.
        has_output: Whether an event carries generated output (time to first token).
        text: The response text of the whole list of events (kept content).
        request_id: The provider's request id, from the object ``source`` the hook kept.
        keep: On the caller's thread: whether a chunk after the first few carries
            what the reading needs (usage, the ending); the others are not kept,
            so a stream holds no more memory than its ends. None keeps every chunk.
        read_chunk: A chunk as the part of its event dict that the reading and
            ``has_output`` read, from its fields instead of a whole dump (used when
            the response text is not kept); None when it cannot say.
    """

    as_dict: Callable[[Any], Mapping[str, Any]]
    has_output: Callable[[Mapping[str, Any]], bool]
    text: Callable[[Sequence[Mapping[str, Any]]], str | None]
    request_id: Callable[[Any], str | None]
    keep: Callable[[Any], bool] | None = None
    read_chunk: Callable[[Any], Mapping[str, Any] | None] | None = None


class Tracker:
    """Collects one call's chunks and records its event once, at the first ending.

    Subclasses say what is handed over at the ending (:meth:`_hand_over`) and, for a
    call that failed before any chunk, its request id.
    """

    __slots__ = ("call", "chunks", "done")

    #: Named in the log when recording the ending fails.
    where = "stream end"

    def __init__(self, call: Call) -> None:
        self.call = call
        self.chunks: list[Any] = []
        self.done = False

    def finish(self, status: Status, exc: BaseException | None = None) -> None:
        """Record the call with this ending, unless it was already recorded."""
        if self.done:
            return
        self.done = True
        try:
            ended = time.perf_counter()
            call = self.call
            if exc is not None and not self.chunks:
                request_id = self._request_id(exc)
                hand_over(call, ended=ended, status="error", exc=exc, request_id=request_id)
                return
            self._hand_over(status, exc, ended)
        except Exception:
            internal_error(self.where)

    def closed(self) -> None:
        """The caller closed the stream (``close()`` or leaving a ``with`` block)."""
        self.finish("incomplete" if self.chunks else "abandoned")

    def __del__(self) -> None:
        # The stream object was dropped: the last chance to record it.
        if not self.done:
            self.closed()

    def _request_id(self, exc: BaseException | None) -> str | None:
        return None

    def _hand_over(self, status: Status, exc: BaseException | None, ended: float) -> None:
        raise NotImplementedError


class StreamTracker(Tracker):
    """Collects one SDK stream's chunks and records its event once, when the stream ends."""

    __slots__ = ("keep", "source", "spec", "times")

    def __init__(self, call: Call, spec: StreamSpec, source: Any = None) -> None:
        super().__init__(call)
        self.spec = spec
        self.source = source
        self.times: list[float] = []
        # Kept text needs every chunk.
        self.keep = spec.keep if call.prompt is None else None

    def _request_id(self, exc: BaseException | None) -> str | None:
        return _request_id(self.spec, self.source, exc)

    def _hand_over(self, status: Status, exc: BaseException | None, ended: float) -> None:
        call, spec, chunks, times, keep = self.call, self.spec, self.chunks, self.times, self.keep
        # Kept text needs whole events; otherwise the fields the reading reads are enough.
        read = spec.read_chunk if call.prompt is None else None

        def event_of(chunk: Any) -> Mapping[str, Any]:
            found = read(chunk) if read is not None else None
            return spec.as_dict(chunk) if found is None else found

        # The first chunks were kept for their times: the first with output is the first token.
        timed: dict[int, Mapping[str, Any]] = {}
        ttft = times[0] if times else None
        for i in range(len(times)):
            timed[i] = found = event_of(chunks[i])
            if spec.has_output(found):
                ttft = times[i]
                break
        # Of those, the reading needs the first and the ones ``keep`` picks; the chunks
        # after them were picked as they came.
        first = len(times)
        events = [
            timed[i] if i in timed else event_of(chunk)
            for i, chunk in enumerate(chunks[:first])
            if keep is None or i == 0 or keep(chunk)
        ]
        events += [event_of(chunk) for chunk in chunks[first:]]
        hand_over(
            call,
            ended=ended,
            status=status,
            ttft=ttft,
            request_id=_request_id(spec, self.source, exc),
            events=events,
            exc=exc,
            text=lambda: spec.text(events),
        )


def _request_id(spec: StreamSpec, source: Any, exc: BaseException | None) -> str | None:
    if exc is not None:
        found = request_id_of(exc)
        if found:
            return found
    return spec.request_id(source) if source is not None else None


def tracker_of(stream: Any) -> StreamTracker | None:
    """The tracker of an SDK stream object, when it is tracked."""
    try:
        tracker = vars(stream).get(TRACKER_ATTR)
    except TypeError:
        return None
    return tracker if isinstance(tracker, StreamTracker) else None


def iterate(
    inner: Iterator[T], tracker: StreamTracker, hide: Callable[[T], bool] | None = None
) -> Iterator[T]:
    """Yield the SDK's chunks, keeping a reference to each; ``hide`` drops some from view.

    The first chunks are timed and kept; the loop over the rest tests only what it
    must (``keep``, ``hide``), as it runs once per chunk on the caller's thread.

    Example:
        >>> from llmledger.capture._streams import iterate
        >>> # stream._iterator = iterate(stream._iterator, tracker)
    """
    chunks = tracker.chunks
    times = tracker.times
    keep = tracker.keep
    append = chunks.append
    clock = time.perf_counter
    try:
        for chunk in inner:
            times.append(clock())
            append(chunk)
            if hide is None or not hide(chunk):
                yield chunk
            if len(times) == _TIMED_CHUNKS:
                break
        else:
            tracker.finish("ok")
            return
        if hide is not None and keep is not None:
            # What ``hide`` hides (the usage) is always kept: only kept chunks are tested.
            for chunk in inner:
                if keep(chunk):
                    append(chunk)
                    if hide(chunk):
                        continue
                yield chunk
        elif hide is not None:
            for chunk in inner:
                append(chunk)
                if not hide(chunk):
                    yield chunk
        elif keep is not None:
            for chunk in inner:
                if keep(chunk):
                    append(chunk)
                yield chunk
        else:
            for chunk in inner:
                append(chunk)
                yield chunk
    except GeneratorExit:
        tracker.finish("incomplete")
        raise
    except BaseException as exc:
        tracker.finish("error", exc)
        raise
    tracker.finish("ok")


async def aiterate(
    inner: AsyncIterator[T], tracker: StreamTracker, hide: Callable[[T], bool] | None = None
) -> AsyncIterator[T]:
    """The asynchronous twin of :func:`iterate`."""
    chunks = tracker.chunks
    times = tracker.times
    keep = tracker.keep
    append = chunks.append
    clock = time.perf_counter
    try:
        async for chunk in inner:
            times.append(clock())
            append(chunk)
            if hide is None or not hide(chunk):
                yield chunk
            if len(times) == _TIMED_CHUNKS:
                break
        else:
            tracker.finish("ok")
            return
        if hide is not None and keep is not None:
            # What ``hide`` hides (the usage) is always kept: only kept chunks are tested.
            async for chunk in inner:
                if keep(chunk):
                    append(chunk)
                    if hide(chunk):
                        continue
                yield chunk
        elif hide is not None:
            async for chunk in inner:
                append(chunk)
                if not hide(chunk):
                    yield chunk
        elif keep is not None:
            async for chunk in inner:
                if keep(chunk):
                    append(chunk)
                yield chunk
        else:
            async for chunk in inner:
                append(chunk)
                yield chunk
    except (GeneratorExit, asyncio.CancelledError):
        tracker.finish("incomplete" if chunks else "abandoned")
        raise
    except BaseException as exc:
        tracker.finish("error", exc)
        raise
    tracker.finish("ok")
