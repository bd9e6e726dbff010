"""The background writer: the caller's thread appends to the journal, one daemon thread writes.

``Writer.submit`` is all the host application's thread ever does: serialise the
event and append it to the journal (:mod:`llmledger.runtime.journal`) with one
``os.write``, never blocking on a database and never raising.  A daemon thread
reads the journal back in batches of up to ``batch_size``, runs the
``prepare`` hook (pricing), writes each batch to its sink (the store, or the
remote sink) in one transaction, and only then marks the batch done in the
journal.  While the sink is down, locked or read-only the events stay in the
journal and the batch is tried again with growing pauses: nothing is dropped.

``flush()`` waits until everything submitted before it, and everything that
dead processes left in the same journal, is stored; it says truthfully whether
it was.  An ``atexit`` hook and (from the main thread) SIGTERM/SIGINT handlers
flush for at most ``shutdown_timeout`` seconds, log what is left in the
journal, and hand the signal on.  After ``os.fork()`` the child gets its own
segment and starts its own thread when first used.
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, cast

from llmledger.core.events import UsageEvent
from llmledger.core.settings import Settings, load_settings
from llmledger.runtime.captured import Captured
from llmledger.runtime.journal import Chunk, Journal
from llmledger.runtime.threads import HANDLED_SIGNALS, leave_signals_to_the_main_thread

if TYPE_CHECKING:
    from llmledger.core.events import ContentRecord
    from llmledger.runtime.content import PendingContent
    from llmledger.store.protocol import WriteResult

__all__ = ["EventSink", "Item", "Writer"]

log = logging.getLogger("llmledger.runtime.writer")

#: What ``submit`` accepts: an event; a captured call's plain values
#: (:func:`~llmledger.runtime.captured.captured`), journaled as they are, whose event
#: ``prepare`` builds in the background; or a zero-argument callable that makes an
#: event (it runs at once, on the caller's thread, so the event is journaled before
#: the call returns).
Item = UsageEvent | tuple[Any, ...] | Callable[[], UsageEvent]


class EventSink(Protocol):
    """Where a writer puts its batches: a store, the remote sink, or anything with this method.

    A batch whose events carry kept prompt and response text (in the journal) is
    written with ``content=`` (by event id) as well; a sink that never sees kept
    text needs only ``on_error``.
    """

    def write(
        self,
        batch: Sequence[UsageEvent],
        *,
        on_error: Callable[[UsageEvent, Exception], None] | None = None,
    ) -> WriteResult:
        """Insert the events in one transaction; say which were new."""
        ...


#: Kept prompt and response text, by event id, as sinks take it.
Content = dict[str, "ContentRecord"]

#: A sink that wants to keep events it could not store for good (a refused
#: batch) calls nothing; a sink without ``set_aside`` has its rejects logged.
#: Called with the events and the reason, and (only when some of them carry kept
#: text) the text by event id as a third argument.
SetAside = Callable[..., None]

_live_writers: weakref.WeakSet[Writer] = weakref.WeakSet()
_hooks_installed = False
_hooks_lock = threading.Lock()
_previous_handlers: dict[int, Any] = {}


def _install_process_hooks() -> None:
    global _hooks_installed
    with _hooks_lock:
        if _hooks_installed:
            return
        atexit.register(_flush_all_at_exit)
        os.register_at_fork(after_in_child=_reset_all_after_fork)
        _hooks_installed = True


def _flush_all_at_exit() -> None:
    global _signal_flush_running
    for writer in list(_live_writers):
        writer._flush_before_exit("exit")
        # Releases the journal: stored segments are removed, the rest wait for the next process.
        writer._stop(0)
    # A signal whose flush thread still runs would end with the interpreter, never
    # delivered again: the flush above covered its writers, so it acts now.
    signum = _signal_flush_running
    if signum:
        _signal_flush_running = 0
        _pass_on(signum, None)


def _reset_all_after_fork() -> None:
    global _signal_flush_running
    # A flush the parent's signal started is the parent's.
    _signal_flush_running = 0
    _flushed_signals.clear()
    for writer in list(_live_writers):
        writer._reset_after_fork()


def install_signal_handlers(signals: Sequence[int] = HANDLED_SIGNALS) -> bool:
    """Flush every live writer on these signals, then hand the signal to the previous handler.

    Installed only from the main thread (the only one Python lets set handlers)
    and once per signal; a handler the application set later replaces ours.

    Returns:
        Whether the handlers are in place.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    with _hooks_lock:
        for signum in signals:
            if signum in _previous_handlers:
                continue
            try:
                _previous_handlers[signum] = signal.signal(signum, _on_signal)
            except (ValueError, OSError):  # pragma: no cover - not the main interpreter
                return False
    return True


# Signals whose flush ran: the next delivery of each does what the signal does.
_flushed_signals: set[int] = set()
#: The signal whose flush runs on its own thread (0: none).
_signal_flush_running = 0
# Whether the handler that started the flush returned (see _signal_main_thread);
# a plain flag: a handler takes no lock, it may have interrupted its holder.
_handler_returned = True


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Flush every live writer from a thread of its own, then do what the signal does.

    The handler runs on the main thread wherever it was interrupted, which may be
    inside the journal holding its lock (an append that is making a new segment):
    a flush waiting there would wait for itself.  So the handler only starts the
    flush and returns; the main thread goes on, and once the flush ended (within
    ``shutdown_timeout``) the signal is delivered to it again, and that delivery
    does what the signal did before llmledger: the application's own handler, or
    the default action.  A second signal while the flush runs acts at once, in place
    of the first.
    """
    global _signal_flush_running, _handler_returned
    if signum in _flushed_signals:
        _flushed_signals.discard(signum)
        _pass_on(signum, frame)
        return
    if _signal_flush_running:
        # A second signal while the flush runs acts now, in place of the first: the
        # flush's end delivers nothing more.
        _signal_flush_running = 0
        _pass_on(signum, frame)
        return
    writers = [w for w in list(_live_writers) if w._has_work()]
    if not writers:
        _pass_on(signum, frame)
        return
    _signal_flush_running = signum
    _handler_returned = False
    try:
        # Not threading.Thread: its start() takes the threading module's locks, which
        # the interrupted main thread may hold.
        _thread.start_new_thread(_flush_then_signal_again, (signum, writers))
    except RuntimeError:  # the interpreter is ending: no new thread, flush here
        _signal_flush_running = 0
        _flush_then_signal_again(signum, writers, again=False)
        _pass_on(signum, frame)
    _handler_returned = True


def _flush_then_signal_again(signum: int, writers: list[Writer], again: bool = True) -> None:
    global _signal_flush_running
    if again:
        leave_signals_to_the_main_thread()
    name = signal.Signals(signum).name
    try:
        for writer in writers:
            writer._flush_before_exit(name)
    finally:
        if again and _signal_flush_running == signum:  # else the exit hook passed it on
            _flushed_signals.add(signum)
            _signal_flush_running = 0
            _signal_main_thread(signum)


def _signal_main_thread(signum: int) -> None:
    """Deliver the signal to the main thread until its handler took it.

    A main thread in ``time.sleep()`` runs the handlers when a signal interrupts
    it, then sleeps again for the rest of the time without looking for signals
    that came meanwhile: one sent while the first handler still ran would be
    handled only when the sleep ends.  So it is sent once that handler returned,
    and again every second until the handler took it.
    """
    for _ in range(1000):
        if _handler_returned:
            break
        time.sleep(0.001)
    main = threading.main_thread()
    while signum in _flushed_signals and main.is_alive() and main.ident is not None:
        with contextlib.suppress(OSError):  # the main thread is gone: so is the process
            signal.pthread_kill(main.ident, signum)
        for _ in range(100):
            if signum not in _flushed_signals:
                return
            time.sleep(0.01)


def _pass_on(signum: int, frame: FrameType | None) -> None:
    """What the signal did before our handler: the previous handler, or the default."""
    previous = _previous_handlers.get(signum)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # the default action (end the process), as if we had never been here
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


class Writer:
    """Writes the journal's events onto a sink from one background thread.

    Args:
        store: Where batches go: a store, the remote sink, or anything with their ``write``.
        journal: The journal events wait in (a private one in a temporary folder when None).
        settings: Source of the defaults below (loaded from the environment when None).
        batch_size: Most events per transaction.
        flush_interval: Seconds to wait for a batch to fill before writing what is there.
        prepare: Called on each event in the background before it is written
            (pricing); returns the event to store.
        build: Makes the event of a captured call's plain values read back from
            the journal, before ``prepare``; without it such records are refused.
        strict: Re-raise internal errors from ``flush()`` (tests).
        retry_backoff: Pause before the first retry of a batch the sink could not
            take, in seconds; it quadruples up to ``max_backoff``.
        max_backoff: Longest pause between two tries.
        shutdown_timeout: Most seconds the exit hook and signal handlers flush.
        orphan_interval: Seconds between two looks for segments dead processes left.
        set_aside: Keeps events the sink refused for good (with the reason).

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
        journal: Journal | None = None,
        settings: Settings | None = None,
        batch_size: int | None = None,
        flush_interval: float | None = None,
        prepare: Callable[[UsageEvent], UsageEvent] | None = None,
        build: Callable[[Captured], UsageEvent] | None = None,
        strict: bool | None = None,
        retry_backoff: float = 0.05,
        max_backoff: float = 1.0,
        shutdown_timeout: float | None = None,
        orphan_interval: float = 10.0,
        set_aside: SetAside | None = None,
    ) -> None:
        if settings is None and None in (batch_size, flush_interval, strict, shutdown_timeout):
            settings = load_settings()
        defaults = settings or Settings()
        self.store = store
        self.prepare = prepare
        self.build = build
        self.batch_size = max(1, batch_size if batch_size is not None else defaults.batch_size)
        self.flush_interval = (
            flush_interval if flush_interval is not None else defaults.flush_interval
        )
        self.strict = strict if strict is not None else defaults.strict
        self.retry_backoff = retry_backoff
        self.max_backoff = max_backoff
        self.shutdown_timeout = (
            shutdown_timeout if shutdown_timeout is not None else defaults.shutdown_timeout
        )
        self.orphan_interval = orphan_interval
        self.set_aside = set_aside
        #: Where the text of events built here waits (a ledger's content store): each
        #: event's text is taken and written with the event's batch.
        self.texts: PendingContent | None = None
        self._private: str | None = None
        if journal is None:
            import tempfile

            self._private = tempfile.mkdtemp(prefix="llmledger-journal-")
            journal = Journal(self._private, limit_bytes=defaults.spool_limit)
        self.journal = journal
        self._written = 0
        self._failed = 0
        self._failed_seen = 0
        self._closed = False
        self._new_process_state()
        _install_process_hooks()
        _live_writers.add(self)

    def _new_process_state(self) -> None:
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._errors: list[BaseException] = []
        self._scan_wanted = 1  # look for dead processes' segments when the thread starts
        self._scan_done = 0
        self._down: str | None = None
        self._idle = True

    # -- the caller's side ---------------------------------------------------------

    def submit(self, item: Item) -> None:
        """Append an event (or the event a callable makes) to the journal; never blocks or raises.

        An event the journal cannot take (over its disk limit, a full disk, a
        closed writer) is dropped, counted in ``dropped`` and logged.

        Example:
            >>> from llmledger.store import open_store
            >>> writer = Writer(open_store("sqlite://"), strict=False)
            >>> writer.submit(lambda: 1 / 0)  # logged and counted, never raised
            >>> writer.failed
            1
        """
        try:
            kind = type(item)
            if kind is UsageEvent or kind is tuple:
                event = cast("UsageEvent | tuple[Any, ...]", item)
            else:
                event = self._resolve(item)
        except Exception as exc:
            self._fail(1, "llmledger skipped an event that could not be built", exc)
            return
        try:
            journal = self.journal
            if journal.append(event):
                if self._thread is None:
                    self._start()
                elif journal.appended % self.batch_size == 0:
                    self._wake.set()
        except Exception:  # pragma: no cover - the host app must never see our errors
            log.exception("llmledger could not journal an event")

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._closed:
                return
            thread = threading.Thread(target=self._run, name="llmledger-writer", daemon=True)
            thread.start()
            self._thread = thread

    def flush(
        self, timeout: float | None = None, *, progress: Callable[[], bool] | None = None
    ) -> bool:
        """Wait until every event submitted before this call, and every event dead
        processes left in the journal, is in the store.

        ``progress`` is called about once a second while it waits; when it returns
        False, the flush stops waiting (and returns False).

        Returns:
            True only when all of them reached the store (none failed, none left
            waiting when ``timeout`` seconds passed).

        Raises:
            Exception: with ``strict``, the first internal error since the last flush.

        Example:
            >>> from llmledger.store import open_store
            >>> Writer(open_store("sqlite://"), strict=False).flush(timeout=1)
            True
        """
        if self._thread is threading.current_thread():
            return False
        journal = self.journal
        target = journal.appended
        if not journal.pending and not journal.orphans_waiting and not journal.claim_orphans():
            # Everything of this process is stored and no dead process left anything.
            return self._report(True)
        with self._done:
            self._scan_wanted += 1
            wanted = self._scan_wanted
        if self._thread is None:
            self._start()
        if self._thread is None:  # closed: nothing will ever write
            return journal.committed >= target
        self._wake.set()

        # The dead processes' segments to wait for are the ones claimed by the scan
        # asked for here (orphans are stored in the order they were claimed): a
        # flush never chases segments left, or handed off, after it began.
        claimed: list[int] = []

        def finished() -> bool:
            if self._scan_done < wanted:
                return False
            if not claimed:
                claimed.append(journal.orphans_claimed)
            return journal.committed >= target and journal.orphans_finished >= claimed[0]

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = None if deadline is None else max(0.0, deadline - time.monotonic())
            if progress is not None:
                step = 1.0 if step is None else min(step, 1.0)
            with self._done:
                done = self._done.wait_for(finished, step)
            if done or progress is None or (deadline and time.monotonic() >= deadline):
                return self._report(done)
            if not progress():
                return self._report(False)

    def _report(self, done: bool) -> bool:
        """What flush returns: False when an event failed or was dropped since the last one."""
        lost = self.failed + self.journal.dropped
        failed, self._failed_seen = lost > self._failed_seen, lost
        self._raise_if_strict()
        return done and not failed

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the thread and release the journal; later submissions are dropped.

        Returns:
            False when the final flush did not finish within ``timeout`` (what
            is left waits in the journal for the next process).
        """
        try:
            done = self.flush(timeout)
        finally:
            self._stop(timeout)
        return done

    def _stop(self, timeout: float | None) -> None:
        self._closed = True
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self.journal.close()
        if self._private is not None and self.journal.pending == 0:
            import shutil

            shutil.rmtree(self._private, ignore_errors=True)
        _live_writers.discard(self)

    def _raise_if_strict(self) -> None:
        if self.strict and self._errors:
            first = self._errors[0]
            self._errors.clear()
            raise first

    def _has_work(self) -> bool:
        """Whether this writer has events to flush before the process ends."""
        return self._thread is not None or bool(self.journal.pending)

    def _flush_before_exit(self, why: str) -> None:
        """Flush for at most ``shutdown_timeout`` seconds and say what is left."""
        try:
            if not self._has_work():
                return
            before = self.written
            done = self.flush(self.shutdown_timeout)
            left = self.journal.pending
            if done and not left:
                # A signal is never silent; a normal exit with nothing left is.
                log.log(
                    logging.INFO if why == "exit" else logging.WARNING,
                    "llmledger: %s: %d events written, none left in the journal",
                    why,
                    self.written - before,
                )
            else:
                log.warning(
                    "llmledger: %s: %d events written; %d left in the journal %s for the "
                    "next process%s",
                    why,
                    self.written - before,
                    left,
                    self.journal.folder,
                    f" ({self._down})" if self._down else "",
                )
        except Exception:
            log.exception("llmledger could not flush events before %s", why)

    def _reset_after_fork(self) -> None:
        # The parent's thread does not exist here and its locks may be held:
        # start over; the parent writes what it had journaled.
        self._new_process_state()
        self._written = self._failed = self._failed_seen = 0
        self._private = None  # the parent's folder: the child never removes it

    # -- counters ------------------------------------------------------------------

    @property
    def written(self) -> int:
        """Rows committed (an event whose id was already stored is not counted)."""
        return self._written

    @property
    def failed(self) -> int:
        """Events lost to errors: events that could not be built, priced or read
        back, and events the sink refused for good (set aside when it can)."""
        return self._failed

    @property
    def dropped(self) -> int:
        """Events the journal could not take (disk limit, full disk, closed writer)."""
        return self.journal.dropped

    @property
    def pending(self) -> int:
        """Events of this process waiting in the journal."""
        return self.journal.pending

    @property
    def down(self) -> str | None:
        """Why the sink is not taking events right now, or None."""
        return self._down

    # -- the background thread -----------------------------------------------------

    def _run(self) -> None:
        leave_signals_to_the_main_thread()
        # Started by the caller's first event: let it go on before this thread runs.
        time.sleep(0.002)
        journal = self.journal
        next_scan = 0.0
        pause = self.retry_backoff
        while True:
            now = time.monotonic()
            wanted = self._scan_wanted
            if wanted > self._scan_done or now >= next_scan:
                try:
                    journal.claim_orphans()
                except OSError as exc:  # pragma: no cover - the folder went away
                    log.warning("llmledger: cannot look for left-over journal segments: %s", exc)
                next_scan = now + self.orphan_interval
                with self._done:
                    self._scan_done = max(self._scan_done, wanted)
                    self._done.notify_all()
            journal.prepare_spare()
            chunk = None if self._stopping and self._down else journal.read(self.batch_size)
            if chunk is None:
                with self._done:
                    self._scan_done = max(self._scan_done, wanted)
                    self._done.notify_all()
                if self._stopping:
                    return
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                continue
            if self._write_chunk(chunk):
                journal.commit(chunk)
                pause = self.retry_backoff
                with self._done:
                    self._done.notify_all()
                continue
            journal.rewind(chunk)
            if self._stopping:
                return
            self._wake.wait(pause)
            self._wake.clear()
            pause = min(pause * 4, self.max_backoff)

    def _write_chunk(self, chunk: Chunk) -> bool:
        """Write one chunk; False when the sink could not take it (it stays in the journal)."""
        if chunk.corrupt:
            self._failed += chunk.corrupt
        prepare, build = self.prepare, self.build
        batch: list[UsageEvent] = []
        for item in chunk.events:
            try:
                if isinstance(item, Captured):
                    if build is None:
                        raise TypeError("this writer cannot build the event of a captured call")
                    event = build(item)
                else:
                    event = item
                batch.append(event if prepare is None else prepare(event))
            except Exception as exc:
                self._fail(1, "llmledger skipped an event that could not be prepared", exc)
        if not batch:
            return True
        content = self._content(chunk, batch)
        try:
            self._written += self._write_isolating(batch, content)
        except Exception as exc:
            if content and self.texts is not None:
                for record in content.values():  # for the next try (rebuilt ones replace them)
                    self.texts.save(record)
            first = self._down is None
            self._down = f"{type(exc).__name__}: {exc}"
            if first:
                log.warning(
                    "llmledger could not write %d events (%s); they wait in the journal "
                    "and are tried again",
                    len(batch),
                    exc,
                )
            if self.strict and first and not hasattr(exc, "retryable"):
                self._errors.append(exc)  # a bug, not a store that is down: tests see it
            return False
        if self._down is not None:
            log.warning("llmledger: writing again after: %s", self._down)
            self._down = None
        return True

    def _content(self, chunk: Chunk, batch: Sequence[UsageEvent]) -> Content | None:
        """The text kept with the batch's events, by event id (None when there is none):
        from the journal's records, and from the events built here (``texts``)."""
        held = self.texts
        if not chunk.texts and (held is None or not len(held)):
            return None
        from llmledger.core.events import ContentRecord

        found = chunk.texts
        content: Content = {}
        for event in batch:
            record = None if held is None else held.take(event.id)
            if record is None and event.id in found:
                record = ContentRecord(event.id, event.ts, *found[event.id])
            if record is not None:
                content[event.id] = record
        return content or None

    @staticmethod
    def _resolve(item: Item) -> UsageEvent:
        event = item() if callable(item) else item
        if not isinstance(event, UsageEvent):
            raise TypeError(f"expected a UsageEvent, got {type(event).__name__}")
        return event

    def _write(self, batch: list[UsageEvent], content: Content | None) -> int:
        if content is None:
            return self.store.write(batch, on_error=self._reject).count
        write: Any = self.store.write  # a sink given kept text takes it as ``content``
        result: WriteResult = write(batch, on_error=self._reject, content=content)
        return result.count

    def _write_isolating(self, batch: list[UsageEvent], content: Content | None = None) -> int:
        """Write the batch; when it is refused, split it to find the events at fault.

        An error the sink calls retryable (locked, unreachable) raises at once.
        Otherwise the batch is split in halves: an event is set aside only when
        the sink took the other half (it is up, so the event is at fault); when
        nothing goes through, the error raises and the batch waits in the journal.
        """
        try:
            return self._write(batch, content)
        except Exception as exc:
            if getattr(exc, "retryable", True) or len(batch) == 1:
                raise
            first_error: Exception = exc
        middle = len(batch) // 2
        written = 0
        refused: list[tuple[list[UsageEvent], Exception]] = []
        went_through = False
        for half in (batch[:middle], batch[middle:]):
            try:
                written += self._write_isolating(half, content)
                went_through = True
            except Exception as exc:
                if getattr(exc, "retryable", True):
                    raise
                refused.append((half, exc))
        if not went_through:
            raise first_error
        for half, error in refused:
            written += self._set_aside_each(half, error, content)
        return written

    def _set_aside_each(
        self, batch: list[UsageEvent], exc: Exception, content: Content | None = None
    ) -> int:
        """Try the events of a refused part one by one; set aside each the sink refuses."""
        if len(batch) == 1:
            self._refuse(batch, exc, content)
            return 0
        written = 0
        for event in batch:
            try:
                written += self._write([event], content)
            except Exception as error:
                if getattr(error, "retryable", True):
                    raise
                self._refuse([event], error, content)
        return written

    def _refuse(
        self, events: list[UsageEvent], exc: Exception, content: Content | None = None
    ) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if self.set_aside is not None:
            texts = {e.id: content[e.id] for e in events if e.id in content} if content else None
            if texts:
                self.set_aside(events, reason, texts)
            else:
                self.set_aside(events, reason)
        for event in events:
            self._fail(1, f"llmledger could not store event {event.id}", exc)

    def _reject(self, event: UsageEvent, exc: Exception) -> None:
        self._fail(1, f"llmledger skipped event {getattr(event, 'id', '?')}", exc)

    def _fail(self, count: int, message: str, exc: BaseException) -> None:
        self._failed += count
        log.error("%s: %s", message, exc, exc_info=exc if self.strict else None)
        if self.strict:
            self._errors.append(exc)
