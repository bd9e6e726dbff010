"""The writer process: events committed by a second process, fed by the journal.

With the ``writer_process`` setting on, the application's process only journals
its events (:mod:`llmledger.runtime.journal`); building, pricing and writing
them happens in a child process (``python -m llmledger.runtime.drain``), with
its own interpreter and its own core.  An application thread busy in Python
holds its own process's GIL, not the child's: the writer keeps up however busy
the caller is, and the caller never pays for the writer's work.

How the two share the journal: every ``flush_interval`` (and at once on
``flush()``) the application's thread of :class:`ProcessWriter` hands its
segments off (:meth:`Journal.hand_off`): it unmaps each, cuts it to its records
and releases its lock, so it is a complete segment with no live owner, which
the child claims and writes like any segment a dead process left, then removes.
The application counts an event committed when its segment is gone.  The child
is told through its standard input: the pickled settings first, then one line
per hand-off (a sequence number); it answers on its standard output with one
JSON line per batch of work, which carries its counters and the last sequence
number it finished.

Nothing is lost when either process dies: the application's segments are
released by the kernel when it dies (the child, seeing its standard input end,
claims and writes them, then exits); segments the child was writing are claimed
by the next writer of the destination (the application starts a new child).
The child ignores SIGINT and SIGTERM (a terminal's Ctrl-C or a service manager
stopping the group): it stops when the application closes its standard input
or dies, once everything handed to it is stored, or once nothing could be stored
for ``shutdown_timeout`` seconds after that (a store that stays down): the rest
waits in the journal for the next process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import IO, TYPE_CHECKING, Any

from llmledger.runtime.threads import leave_signals_to_the_main_thread
from llmledger.runtime.writer import Writer

if TYPE_CHECKING:
    from llmledger.core.settings import Settings

__all__ = ["ProcessWriter", "main"]

log = logging.getLogger("llmledger.runtime.drain")

_LENGTH = 8  # bytes of the settings' length, before the pickled settings
_POLL = 0.005  # seconds between two looks at the handed-off segments while flushing
_SEGMENT_BYTES = 2 << 20
_MOST_RESTARTS = 5  # children started in a row that died before they stored anything


class ProcessWriter(Writer):
    """A :class:`Writer` whose writing is done by a child process (``writer_process``).

    The caller's side is the same (``submit`` journals the event); the background
    thread of this process only makes journal segments ready, hands them off and
    reads the child's reports.  Should the child fail to start or keep dying, the
    writer falls back to writing from this process's thread, and says so in the log.

    Args:
        settings: The settings the child builds its ledger with (the ledger's own).
        **kwargs: As for :class:`Writer`; ``store`` is where the fallback writes.
    """

    def __init__(self, store: Any, *, settings: Settings, **kwargs: Any) -> None:
        super().__init__(store, settings=settings, **kwargs)
        self.settings = settings
        # A segment is handed off every flush_interval however full: smaller ones
        # waste less of the blocks each allocates.
        self.journal.segment_bytes = min(self.journal.segment_bytes, _SEGMENT_BYTES)
        self._child_written = 0
        self._child_failed = 0
        self._child_down: str | None = None
        self._new_child_state()

    def _new_child_state(self) -> None:
        self._child: subprocess.Popen[bytes] | None = None
        self._sent = 0  # the last sequence number sent
        self._finished = 0  # the last sequence number the child finished
        self._restarts = 0
        self._fallback = False
        self._hand_off_lock = threading.Lock()

    # -- the caller's side ---------------------------------------------------------

    def flush(
        self, timeout: float | None = None, *, progress: Callable[[], bool] | None = None
    ) -> bool:
        """Hand everything off and wait until the child stored it, with every event dead
        processes left in the journal."""
        if self._fallback:
            return super().flush(timeout, progress=progress)
        journal = self.journal
        target = journal.appended
        if self._thread is None:
            self._start()
        if self._thread is None:  # closed: nothing will ever write
            return journal.committed >= target
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        next_progress = now + 1.0
        wanted = self._hand_off(force=True)
        while True:
            journal.settle_handed()
            if self._fallback:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                return super().flush(remaining, progress=progress)
            if journal.committed >= target and self._finished >= wanted:
                return self._report(True)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return self._report(False)
            if progress is not None and now >= next_progress:
                if not progress():
                    return self._report(False)
                next_progress = now + 1.0
            self._wake.set()
            time.sleep(_POLL)

    # -- counters ------------------------------------------------------------------

    @property
    def written(self) -> int:
        """Rows committed (by the child, and by this process's fallback)."""
        return self._written + self._child_written

    @property
    def failed(self) -> int:
        """Events lost to errors (in the child, and in this process)."""
        return self._failed + self._child_failed

    @property
    def down(self) -> str | None:
        """Why the sink is not taking events right now, or None."""
        return self._down or self._child_down

    @property
    def child_pid(self) -> int | None:
        """The pid of the writer process, while it runs."""
        child = self._child
        return None if child is None or child.poll() is not None else child.pid

    # -- this process's thread ---------------------------------------------------------

    def _run(self) -> None:
        leave_signals_to_the_main_thread()
        time.sleep(0.002)  # started by the caller's first event: let it go on first
        journal = self.journal
        next_hand_off = 0.0
        while not self._fallback:
            # Woken every batch_size events too: the next segment is always ready.
            journal.prepare_spare()
            if self._stopping:
                self._hand_off(force=True)
                self._end_child()
                return
            waiting = journal.settle_handed()
            child = self._child
            # Segments handed to a child that died: a new one is started and told.
            orphaned = bool(waiting) and (child is None or child.poll() is not None)
            now = time.monotonic()
            if orphaned or now >= next_hand_off:
                self._hand_off(force=orphaned)
                next_hand_off = now + self.flush_interval
            self._wake.wait(max(0.001, next_hand_off - time.monotonic()))
            self._wake.clear()
        super()._run()  # the child could not be kept running: write from here

    def _hand_off(self, *, force: bool) -> int:
        """Hand the journal's segments to the child and tell it; the sequence number
        to wait for (what the child has finished, when nothing was handed)."""
        with self._hand_off_lock:
            handed = self.journal.hand_off()
            if not handed and not force:
                return self._finished
            if not self._child_alive():
                return self._sent + 1  # never finished: flush waits, or falls back
            self._sent += 1
            sequence = self._sent
            child = self._child
            assert child is not None and child.stdin is not None
            try:
                child.stdin.write(b"%d\n" % sequence)
                child.stdin.flush()
            except (OSError, ValueError):  # it died: the reader restarts it
                pass
            return sequence

    def _child_alive(self) -> bool:
        child = self._child
        if child is not None and child.poll() is None:
            return True
        if self._stopping:
            return False
        if self._restarts >= _MOST_RESTARTS:
            self._fall_back("the writer process keeps dying")
            return False
        self._restarts += 1
        try:
            self._child = self._spawn()
        except Exception as exc:
            self._fall_back(f"cannot start the writer process: {exc}")
            return False
        return True

    def _spawn(self) -> subprocess.Popen[bytes]:
        # Strict or not, an error in the child is counted in ``failed``, which flush() reports.
        child_settings = replace(
            self.settings, writer_process=False, handle_signals=False, strict=False
        )
        data = pickle.dumps(child_settings, protocol=pickle.HIGHEST_PROTOCOL)
        child = subprocess.Popen(
            [sys.executable, "-m", "llmledger.runtime.drain"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=False,
        )
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(len(data).to_bytes(_LENGTH, "big") + data)
        child.stdin.flush()
        reader = threading.Thread(
            target=self._read_reports,
            args=(child, child.stdout),
            name="llmledger-writer-reports",
            daemon=True,
        )
        reader.start()
        log.debug("llmledger: writer process %d started", child.pid)
        return child

    def _read_reports(self, child: subprocess.Popen[bytes], stdout: IO[bytes]) -> None:
        leave_signals_to_the_main_thread()
        base_written, base_failed = self._child_written, self._child_failed
        for line in stdout:
            try:
                report = json.loads(line)
            except ValueError:
                continue
            self._child_written = base_written + int(report["written"])
            self._child_failed = base_failed + int(report["failed"])
            self._child_down = report.get("down")
            if report["written"]:
                self._restarts = 0
            self._finished = max(self._finished, int(report["finished"]))
        code = child.wait()
        for stream in (stdout, child.stdin):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if not self._stopping:
            # What it held is claimed by the next child, started by the next hand-off.
            log.warning("llmledger: the writer process %d ended (%s)", child.pid, code)
            self._wake.set()

    def _end_child(self) -> None:
        """Close the child's input: it stores what it was handed, then exits by itself."""
        child = self._child
        if child is not None and child.stdin is not None:
            with contextlib.suppress(OSError):  # already gone
                child.stdin.close()

    def _fall_back(self, why: str) -> None:
        log.error("llmledger: %s; events are written from this process", why)
        self._fallback = True
        self._wake.set()

    def _reset_after_fork(self) -> None:
        # The parent's child is the parent's: drop our copies of its pipes so that it
        # sees its input end when the parent closes it, and start our own when used.
        child = self._child
        if child is not None:
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError, ValueError):
                        os.close(stream.fileno())
        super()._reset_after_fork()
        self._child_written = self._child_failed = 0
        self._child_down = None
        self._new_child_state()


# -- the child ------------------------------------------------------------------------------


def main() -> None:
    """The writer process: read the settings, then store what each hand-off names."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    source = sys.stdin.buffer
    size = int.from_bytes(source.read(_LENGTH), "big")
    settings: Settings = pickle.loads(source.read(size))
    logging.basicConfig(format="%(message)s")
    from llmledger.runtime.ledger import Ledger

    ledger = Ledger(settings)
    writer = ledger.writer
    out = sys.stdout
    sequence = 0
    requests = _Requests(source)
    stored = [writer.written, time.monotonic()]

    def keep_trying() -> bool:
        _report(out, writer, 0)  # the store is down or slow: say so
        if writer.written != stored[0]:
            stored[:] = [writer.written, time.monotonic()]
        # With the application gone and nothing stored for shutdown_timeout seconds
        # (the store is down), what is left waits in the journal for the next
        # process: a store that stays down never keeps this process alive.
        return not requests.ended or time.monotonic() - stored[1] < settings.shutdown_timeout

    while True:
        wanted, ended = requests.latest()
        sequence = max(sequence, wanted)
        writer.flush(None, progress=keep_trying)
        _report(out, writer, sequence)
        if ended:
            break
        requests.wait()
    ledger.close()


def _report(out: IO[str], writer: Writer, finished: int) -> None:
    line = {
        "finished": finished,
        "written": writer.written,
        "failed": writer.failed,
        "down": writer.down,
    }
    try:
        out.write(json.dumps(line) + "\n")
        out.flush()
    except (BrokenPipeError, ValueError):  # the application is gone: nobody to tell
        pass


class _Requests:
    """The hand-off lines on the child's standard input, read by a thread."""

    def __init__(self, source: IO[bytes]) -> None:
        self._latest = 0
        self._ended = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(source,), daemon=True)
        self._thread.start()

    def _read(self, source: IO[bytes]) -> None:
        for line in source:
            try:
                self._latest = max(self._latest, int(line))
            except ValueError:
                continue
            self._ready.set()
        self._ended = True
        self._ready.set()

    def wait(self) -> None:
        self._ready.wait()

    @property
    def ended(self) -> bool:
        """Whether the input ended: the application closed it, or died."""
        return self._ended

    def latest(self) -> tuple[int, bool]:
        """The last sequence number read, and whether the input ended."""
        self._ready.clear()
        return self._latest, self._ended


if __name__ == "__main__":
    main()
