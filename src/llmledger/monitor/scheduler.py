"""The scheduled jobs: one loop per process, one leader per database.

Every ``tick`` the loop takes (or keeps) the lease row ``leader`` of the
``jobs`` table; only the instance holding it works, so any number of
``llmledger serve`` instances and ``llmledger worker`` processes can run over one
database.  A leader that dies loses the lease after ``lease`` seconds and another
takes over.  The leader:

* runs the budget and alert check every ``check_interval`` (and sooner after
  writes: :meth:`Scheduler.poke`);
* delivers the outbox's due messages every tick;
* queues the weekly price check's digest when a week has passed since the last.

When each job last ran is kept in the database, so a restart neither runs a job
early nor skips one; alerts are state (what holds now against what is open), so
a crossing that happened while no instance ran is found by the next check.

The loop is a thread waiting on an event: the jobs are few and their times are
kept in the database (the lease, the last runs), which a scheduling library
would not do for us.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from llmledger.core.ids import new_id
from llmledger.monitor.checks import Monitor

__all__ = ["PRICE_CHECK_EVERY", "Scheduler"]

log = logging.getLogger("llmledger.monitor")

#: How often the price check's digest is sent.
PRICE_CHECK_EVERY = timedelta(days=7)
#: Longest wait between two ticks (deliveries and retries are looked at each tick).
MAX_TICK = 5.0
#: Shortest time between two checks that writes asked for.
POKE_GAP = timedelta(seconds=5)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Runs a :class:`Monitor`'s jobs on a schedule while this process leads.

    Args:
        monitor: The checks to run.
        interval: Seconds between two checks (the ``check_interval`` setting).
        clock: The time (tests may pass their own).
    """

    def __init__(
        self,
        monitor: Monitor,
        *,
        interval: float | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.monitor = monitor
        self.interval = timedelta(
            seconds=interval if interval is not None else monitor.settings.check_interval
        )
        self.tick = min(MAX_TICK, self.interval.total_seconds())
        self.lease = timedelta(seconds=max(30.0, 6 * self.tick))
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{new_id()}"
        self.clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._poked = False
        # When a poke last woke the loop (monotonic seconds): writes come in
        # bursts, and one wake per POKE_GAP serves them all.
        self._woken_at = float("-inf")
        self._thread: threading.Thread | None = None

    def run_once(self) -> bool:
        """One tick: lead or not, then run what is due; whether this process leads."""
        store = self.monitor.store
        now = self.clock()
        if not store.lead(self.holder, now=now, ttl=self.lease):
            return False
        last = store.job_last_run("check")
        poked, self._poked = self._poked, False
        if (
            last is None
            or now - last >= self.interval
            or (poked and now - last >= min(POKE_GAP, self.interval))
        ):
            result = self.monitor.check(now)
            store.job_ran("check", now=now)
            if result.fired or result.resolved:
                log.info(
                    "llmledger: %d alert(s) fired, %d resolved",
                    len(result.fired),
                    len(result.resolved),
                )
        priced = store.job_last_run("price_check")
        if priced is None or now - priced >= PRICE_CHECK_EVERY:
            self.monitor.price_check(now)
        self.monitor.deliver(self.clock())
        return True

    def poke(self) -> None:
        """Ask for a check soon (events were written); cheap, never blocks.

        The loop is woken at most once per :data:`POKE_GAP`: a check cannot run
        more often than that after writes anyway, and a tick per ingested batch
        would cost the database a lease renewal and the outbox look-up each time.
        """
        self._poked = True
        now = time.monotonic()
        if now - self._woken_at >= POKE_GAP.total_seconds():
            self._woken_at = now
            self._wake.set()

    def run(self) -> None:
        """Tick until :meth:`stop` (the body of the thread, or of ``llmledger worker``)."""
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:
                # A job's failure (the database down, a mail server refusing) must not
                # end the loop: the next tick tries again.
                log.exception("llmledger: a scheduled job failed")
            self._wake.wait(self.tick)
            self._wake.clear()

    def start(self) -> None:
        """Run the loop in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="llmledger-jobs", daemon=True)
            self._thread.start()

    def request_stop(self) -> None:
        """Ask the loop to end after the tick in progress (safe in a signal handler)."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """End the loop, wait for the tick in progress, and give the lease up."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        try:
            self.monitor.store.release(self.holder)
        except Exception:
            log.warning("llmledger: could not release the jobs' lease", exc_info=True)
