"""What every thread llmledger starts in the application's process does first."""

from __future__ import annotations

import contextlib
import signal

__all__ = ["HANDLED_SIGNALS", "leave_signals_to_the_main_thread"]

#: The signals llmledger flushes on (``handle_signals``).
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def leave_signals_to_the_main_thread() -> None:
    """Block SIGTERM and SIGINT in the calling (background) thread.

    Python runs signal handlers on the main thread only, and the kernel hands a
    process's signal to any thread that does not block it.  One that lands on a
    background thread leaves a main thread blocked in ``time.sleep()`` (or any
    other wait) asleep: the handlers run only once it wakes, which may be never.
    Blocked here, the signal goes to the main thread and interrupts its wait.
    """
    with contextlib.suppress(ValueError, OSError, AttributeError):  # no pthreads here
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
