"""The background writer: the caller's thread appends, one daemon thread writes.

``Writer.submit`` is all the host application's thread ever does: an append to
a bounded in-memory queue, O(1), never blocking and never raising.  A daemon
thread takes up to ``batch_size`` items at a time, turns deferred items into
events, runs the ``prepare`` hook (pricing), and writes the batch to the store
in one transaction.  ``flush()`` waits until everything submitted before it is
committed; an ``atexit`` hook flushes on interpreter exit, and after
``os.fork()`` the child gets a fresh queue and starts its own thread when first
used.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from llmledger.core.events import UsageEvent
from llmledger.core.settings import Settings, load_settings

if TYPE_CHECKING:
    from llmledger.store.protocol import WriteResult

__all__ = ["EventSink", "Item", "Writer"]

log = logging.getLogger("llmledger.runtime.writer")

#: What ``submit`` accepts: an event, or a zero-argument callable that makes one
#: in the background (e.g. normalising a captured stream).
Item = UsageEvent | Callable[[], UsageEvent]


class EventSink(Protocol):
    """Where a writer puts its batches: a store, the remote sink, or anything with this method."""

    def write(
        self,
        batch: Sequence[UsageEvent],
        *,
        on_error: Callable[[UsageEvent, Exception], None] | None = None,
    ) -> WriteResult:
        """Insert the events in one transaction; say which were new."""
        ...


class _FlushMarker:
    """Placed in the queue by ``flush``; set once everything before it is written."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_live_writers: weakref.WeakSet[Writer] = weakref.WeakSet()
_hooks_installed = False
_hooks_lock = threading.Lock()


def _install_process_hooks() -> None:
    global _hooks_installed
    with _hooks_lock:
        if _hooks_installed:
            return
        atexit.register(_flush_all_at_exit)
        os.register_at_fork(after_in_child=_reset_all_after_fork)
        _hooks_installed = True


def _flush_all_at_exit() -> None:
    for writer in list(_live_writers):
        writer._flush_at_exit()


def _reset_all_after_fork() -> None:
    for writer in list(_live_writers):
        writer._reset_after_fork()


class Writer:
    """Batches events onto a store from one background thread.

    Args:
        store: Where batches go: a store, the remote sink, or anything with their ``write``.
        settings: Source of the defaults below (loaded from the environment when None).
        batch_size: Most events per transaction.
        flush_interval: Seconds to wait for a batch to fill before writing what is there.
        queue_limit: Most items waiting; beyond it ``submit`` drops and counts.
        prepare: Called on each event in the background before it is written
            (pricing); returns the event to store.
        strict: Re-raise internal errors from ``flush()`` (tests).
        retries: Extra attempts for a batch the database refused for a
            transient reason (locked, unreachable), with growing pauses.
        retry_backoff: Pause before the first retry, in seconds; it quadruples.
        drop_warning_interval: Least seconds between two "queue full" warnings.
        exit_timeout: Most seconds the exit hook waits for the final flush.

    Example:
        >>> from datetime import datetime, timezone
        >>> from llmledger.store import open_store
        >>> store = open_store("sqlite://")
        >>> writer = Writer(store, batch_size=100)
        >>> writer.submit(UsageEvent(provider="openai", model="gpt-4o",
        ...                          ts=datetime.now(timezone.utc)))
        >>> writer.flush(timeout=10)
        True
        >>> writer.written, store.count()
        (1, 1)
        >>> writer.close()
        True
    """

    def __init__(
        self,
        store: EventSink,
        *,
        settings: Settings | None = None,
        batch_size: int | None = None,
        flush_interval: float | None = None,
        queue_limit: int | None = None,
        prepare: Callable[[UsageEvent], UsageEvent] | None = None,
        strict: bool | None = None,
        retries: int = 3,
        retry_backoff: float = 0.05,
        drop_warning_interval: float = 60.0,
        exit_timeout: float = 10.0,
    ) -> None:
        if settings is None and None in (batch_size, flush_interval, queue_limit, strict):
            settings = load_settings()
        defaults = settings or Settings()
        self.store = store
        self.prepare = prepare
        self.batch_size = max(1, batch_size if batch_size is not None else defaults.batch_size)
        self.flush_interval = (
            flush_interval if flush_interval is not None else defaults.flush_interval
        )
        self.queue_limit = max(1, queue_limit if queue_limit is not None else defaults.queue_limit)
        self.strict = strict if strict is not None else defaults.strict
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.drop_warning_interval = drop_warning_interval
        self.exit_timeout = exit_timeout
        self._written = 0
        self._failed = 0
        self._dropped = 0
        self._closed = False
        self._new_process_state()
        _install_process_hooks()
        _live_writers.add(self)

    def _new_process_state(self) -> None:
        self._queue: deque[Item | _FlushMarker] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._errors: list[BaseException] = []
        self._last_drop_warning = float("-inf")

    # -- the caller's side ---------------------------------------------------------

    def submit(self, item: Item) -> None:
        """Queue an event (or a callable making one) for writing; never blocks or raises.

        When the queue is full, or the writer is closed, the item is dropped and
        counted in ``dropped``.

        Example:
            >>> from llmledger.store import open_store
            >>> writer = Writer(open_store("sqlite://"), queue_limit=1, strict=False,
            ...                 batch_size=10, flush_interval=60)
            >>> writer.submit(lambda: 1 / 0)  # the error surfaces in the background
            >>> writer.submit(lambda: 1 / 0)  # queue full: dropped
            >>> writer.dropped
            1
        """
        try:
            queue = self._queue
            size = len(queue)
            if size >= self.queue_limit or self._closed:
                self._drop()
                return
            queue.append(item)
            if self._thread is None:
                self._start()
            elif (size + 1) % self.batch_size == 0:
                self._wake.set()
        except Exception:  # pragma: no cover - the host app must never see our errors
            log.exception("llmledger could not queue an event")

    def _drop(self) -> None:
        with self._lock:
            self._dropped += 1
            now = time.monotonic()
            if now - self._last_drop_warning < self.drop_warning_interval:
                return
            self._last_drop_warning = now
            dropped = self._dropped
        reason = (
            "writer is closed" if self._closed else f"queue is full ({self.queue_limit} waiting)"
        )
        log.warning("llmledger dropped an event: %s; %d dropped so far", reason, dropped)

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            thread = threading.Thread(target=self._run, name="llmledger-writer", daemon=True)
            thread.start()
            self._thread = thread

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item submitted before this call is committed.

        Returns:
            False when ``timeout`` seconds passed first.

        Raises:
            Exception: with ``strict``, the first internal error since the last flush.

        Example:
            >>> from llmledger.store import open_store
            >>> Writer(open_store("sqlite://"), strict=False).flush(timeout=1)
            True
        """
        thread = self._thread
        if thread is threading.current_thread():
            return False
        done = True
        # The thread may hold a batch it took from the queue but has not yet
        # committed: the marker goes behind it, so an empty queue is no shortcut.
        if self._queue or (thread is not None and thread.is_alive()):
            marker = _FlushMarker()
            self._queue.append(marker)
            if thread is None:
                self._start()
            if self._thread is None:  # closed: nothing will ever write it
                self._queue.remove(marker)
                done = not self._queue
            else:
                self._wake.set()
                done = marker.done.wait(timeout)
        self._raise_if_strict()
        return done

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the thread; later submissions are dropped.

        Returns:
            False when the final flush did not finish within ``timeout``.
        """
        try:
            done = self.flush(timeout)
        finally:
            self._closed = True
            self._stopping = True
            self._wake.set()
            thread = self._thread
        if thread is not None and done:
            thread.join(timeout)
        _live_writers.discard(self)
        return done

    def _raise_if_strict(self) -> None:
        if self.strict and self._errors:
            first = self._errors[0]
            self._errors.clear()
            raise first

    def _flush_at_exit(self) -> None:
        try:
            if not self.flush(self.exit_timeout):
                log.warning("llmledger: %d events were not written before exit", len(self._queue))
        except Exception:
            log.exception("llmledger could not flush events at exit")

    def _reset_after_fork(self) -> None:
        # The parent's thread does not exist here and its locks may be held:
        # start over with an empty queue; the parent writes what it had queued.
        self._new_process_state()
        self._written = self._failed = self._dropped = 0

    # -- counters ------------------------------------------------------------------

    @property
    def written(self) -> int:
        """Rows committed (an event whose id was already stored is not counted)."""
        return self._written

    @property
    def failed(self) -> int:
        """Items lost to errors: bad items, rejected events, batches that kept failing."""
        return self._failed

    @property
    def dropped(self) -> int:
        """Items refused by ``submit`` because the queue was full or the writer closed."""
        return self._dropped

    @property
    def pending(self) -> int:
        """Items waiting in the queue."""
        return len(self._queue)

    # -- the background thread -----------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        wake = self._wake
        while True:
            if len(queue) < self.batch_size and not self._stopping:
                wake.wait(self.flush_interval)
            wake.clear()
            while queue:
                self._write_next_batch(queue)
            if self._stopping and not queue:
                return

    def _write_next_batch(self, queue: deque[Item | _FlushMarker]) -> None:
        items: list[Item] = []
        markers: list[_FlushMarker] = []
        popleft = queue.popleft
        limit = self.batch_size
        while len(items) < limit:
            try:
                item = popleft()
            except IndexError:
                break
            if type(item) is _FlushMarker:
                markers.append(item)
                break
            items.append(item)  # type: ignore[arg-type]
        try:
            if items:
                self._write_items(items)
        except Exception as exc:  # pragma: no cover - last line of defence
            self._fail(len(items), "llmledger writer failed", exc)
        finally:
            for marker in markers:
                marker.done.set()

    def _write_items(self, items: list[Item]) -> None:
        prepare = self.prepare
        batch: list[UsageEvent] = []
        for item in items:
            try:
                event = item if type(item) is UsageEvent else self._resolve(item)
                if prepare is not None:
                    event = prepare(event)
            except Exception as exc:
                self._fail(1, "llmledger skipped an event that could not be prepared", exc)
                continue
            batch.append(event)
        if batch:
            self._write_with_retries(batch)

    @staticmethod
    def _resolve(item: Item) -> UsageEvent:
        event = item() if callable(item) else item
        if not isinstance(event, UsageEvent):
            raise TypeError(f"expected a UsageEvent, got {type(event).__name__}")
        return event

    def _write_with_retries(self, batch: list[UsageEvent]) -> None:
        from llmledger.store.errors import WriteError

        pause = self.retry_backoff
        for attempt in range(self.retries + 1):
            try:
                self._written += self._write_isolating(batch)
                return
            except WriteError as exc:
                if attempt == self.retries or not exc.retryable:
                    self._fail(len(batch), f"llmledger could not write {len(batch)} events", exc)
                    return
                log.warning("llmledger write failed (%s); retrying in %.2fs", exc, pause)
                time.sleep(pause)
                pause *= 4
            except Exception as exc:
                self._fail(len(batch), f"llmledger could not write {len(batch)} events", exc)
                return

    def _write_isolating(self, batch: list[UsageEvent]) -> int:
        """Write the batch; when the data is refused, split it to keep the good events."""
        from llmledger.store.errors import WriteError

        try:
            return self.store.write(batch, on_error=self._reject).count
        except WriteError as exc:
            if exc.retryable or len(batch) == 1:
                if len(batch) == 1 and not exc.retryable:
                    self._fail(1, f"llmledger could not store event {batch[0].id}", exc)
                    return 0
                raise
        middle = len(batch) // 2
        return self._write_isolating(batch[:middle]) + self._write_isolating(batch[middle:])

    def _reject(self, event: UsageEvent, exc: Exception) -> None:
        self._fail(1, f"llmledger skipped event {getattr(event, 'id', '?')}", exc)

    def _fail(self, count: int, message: str, exc: BaseException) -> None:
        self._failed += count
        log.error("%s: %s", message, exc, exc_info=exc if self.strict else None)
        if self.strict:
            self._errors.append(exc)
