"""After-commit listeners: code that sees each batch the ledger has stored.

The writer hands a batch to its sink (the store, or the remote sink); once the
sink answers, the events it stored are given to every listener, in the writer's
thread, never the caller's.  OpenTelemetry export is one such listener.  A
listener that raises is logged and counted; it never loses or delays a write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmledger.core.events import UsageEvent

if TYPE_CHECKING:
    from llmledger.core.events import ContentRecord
    from llmledger.runtime.writer import EventSink
    from llmledger.store.protocol import WriteResult

__all__ = ["CommitListener", "CommitListeners", "ObservedSink"]

log = logging.getLogger("llmledger.runtime.observers")

#: Called with the events a write stored (priced; duplicates and rejects left out).
CommitListener = Callable[[Sequence[UsageEvent]], None]


class CommitListeners:
    """The listeners of one ledger, with what each needs at close.

    Example:
        >>> seen = []
        >>> listeners = CommitListeners()
        >>> listeners.add(seen.extend)
        >>> len(listeners)
        1
    """

    def __init__(self, *, strict: bool = False) -> None:
        self._listeners: list[tuple[CommitListener, Callable[[], None] | None]] = []
        self._lock = threading.Lock()
        self.strict = strict
        self.failed = 0

    def add(self, listener: CommitListener, *, on_close: Callable[[], None] | None = None) -> None:
        """Call ``listener`` after each commit; ``on_close`` when the ledger closes."""
        with self._lock:
            self._listeners = [*self._listeners, (listener, on_close)]

    def remove(self, listener: CommitListener) -> None:
        """Stop calling ``listener`` (its ``on_close`` is not called)."""
        with self._lock:
            self._listeners = [pair for pair in self._listeners if pair[0] is not listener]

    def __len__(self) -> int:
        return len(self._listeners)

    def notify(self, events: Sequence[UsageEvent]) -> None:
        """Give the stored events to each listener; a listener's error stays here."""
        if not events:
            return
        for listener, _ in self._listeners:
            try:
                listener(events)
            except Exception:
                self.failed += 1
                if self.strict:
                    raise
                log.exception("llmledger: an after-commit listener failed")

    def close(self) -> None:
        """Run every ``on_close`` (once) and forget the listeners."""
        with self._lock:
            listeners, self._listeners = self._listeners, []
        for _, on_close in listeners:
            if on_close is None:
                continue
            try:
                on_close()
            except Exception:
                log.exception("llmledger: an after-commit listener failed to close")

    def observe(self, sink: EventSink) -> EventSink:
        """``sink`` with these listeners told of each batch it stores."""
        return ObservedSink(sink, self)


class ObservedSink:
    """A sink whose successful writes are passed on to listeners."""

    def __init__(self, sink: EventSink, listeners: CommitListeners) -> None:
        self._sink = sink
        self._listeners = listeners

    @property
    def sink(self) -> EventSink:
        """The sink written through (the store, or the remote sink)."""
        return self._sink

    def write(
        self,
        batch: Sequence[UsageEvent],
        *,
        on_error: Callable[[UsageEvent, Exception], None] | None = None,
        content: Mapping[str, ContentRecord] | None = None,
    ) -> WriteResult:
        """Write through the sink (with the text kept for its events, if any), then tell
        the listeners what it stored."""
        if content:
            write: Any = self._sink.write
            result: WriteResult = write(batch, on_error=on_error, content=content)
        else:
            result = self._sink.write(batch, on_error=on_error)
        if len(self._listeners):
            self._listeners.notify(result.inserted)
        return result
