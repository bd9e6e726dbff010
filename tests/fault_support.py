"""What the fault tests share: a real child process that records events, and the check
that the ledger holds each of them exactly once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from llmledger.store import open_store

#: Records ``argv[1]`` events (``request_id`` = their number), says ``recorded`` on
#: stdout, then does what ``argv[2]`` names: ``wait`` (until killed), ``exit``,
#: ``flush:SECONDS`` (then exit), or ``memory`` (report RSS growth, then flush).
RECORDER = r"""
import os, resource, sys, time
import llmledger

def peak_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

n, then = int(sys.argv[1]), sys.argv[2]
record = llmledger.record
warm = min(n, 2000)
for i in range(warm):
    record(provider="openai", model="gpt-4o", input_tokens=100, output_tokens=i % 50,
           request_id=str(i))
before = peak_kib()
for i in range(warm, n):
    record(provider="openai", model="gpt-4o", input_tokens=100, output_tokens=i % 50,
           request_id=str(i))
grown = peak_kib() - before
print("recorded", flush=True)
if then == "wait":
    time.sleep(600)
elif then.startswith("flush:"):
    print("flushed" if llmledger.flush(float(then[6:])) else "not flushed", flush=True)
elif then == "memory":
    print(f"grown_kib={grown} stats={llmledger.get_ledger().stats()}", flush=True)
    print("flushed" if llmledger.flush(600) else "not flushed", flush=True)
    print(f"grown_after_flush_kib={peak_kib() - before}", flush=True)
"""

#: Only ``llmledger.flush()``: what a new process does to store what others left.
FLUSHER = r"""
import sys
import llmledger
print("flushed" if llmledger.flush(float(sys.argv[1])) else "not flushed", flush=True)
print(llmledger.get_ledger().stats(), flush=True)
"""


def child_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment of a child process using ``home``, not strict (like an application)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMLEDGER_")}
    env["LLMLEDGER_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.update({f"LLMLEDGER_{k.upper()}": v for k, v in settings.items()})
    return env


class Recorder:
    """A child process recording events (see :data:`RECORDER`); its stderr goes to a file,
    so a chatty log can never fill a pipe and stop it."""

    def __init__(
        self, env: Mapping[str, str], count: int, then: str, prefix: Sequence[str] = ()
    ) -> None:
        self._log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in finish()
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-c", RECORDER, str(count), then],
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "recorded":
            self.process.kill()
            _, err = self.finish(60)
            raise AssertionError(f"the recorder failed: {line!r} {err[-3000:]}")

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def kill(self) -> None:
        self.process.kill()

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def finish(self, timeout: float) -> tuple[str, str]:
        """Wait for the child to end: what it printed after ``recorded``, and its stderr."""
        assert self.process.stdout is not None
        out = self.process.stdout.read()
        self.process.stdout.close()
        self.process.wait(timeout)
        self._log.seek(0)
        err = self._log.read()
        self._log.close()
        return out, err


def start_recorder(
    env: Mapping[str, str], count: int, then: str, prefix: Sequence[str] = ()
) -> Recorder:
    """A child recording ``count`` events; returns once it said ``recorded``."""
    return Recorder(env, count, then, prefix)


def run_flusher(env: Mapping[str, str], timeout: float, prefix: Sequence[str] = ()) -> str:
    """Run a new process that only calls ``llmledger.flush()``; its output."""
    done = subprocess.run(
        [*prefix, sys.executable, "-c", FLUSHER, str(timeout)],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout + 120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def assert_exactly_once(database_url: str, count: int) -> None:
    """Every event 0..count-1 is in the ledger once, and the rollups count each once."""
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            ids = [row[0] for row in conn.execute("SELECT request_id FROM events")]
            (calls,) = conn.execute(
                "SELECT coalesce(sum(calls), 0) FROM rollups_hourly WHERE grain = 1"
            ).fetchone()
    else:
        store = open_store(database_url)
        try:
            ids = [event.request_id for event in store.events()]
            calls = len(ids)
        finally:
            store.close()
    assert len(ids) == count, f"{len(ids)} events stored, {count} recorded"
    missing = {str(i) for i in range(count)} - set(ids)
    assert not missing, f"{len(missing)} events missing, e.g. {sorted(missing)[:5]}"
    assert len(set(ids)) == count, "an event was stored twice"
    assert calls == count, f"the rollups count {calls} calls for {count} events"


def journal_segments(home: Path) -> list[Path]:
    """Segment files in the journal folders under ``home``."""
    return sorted((home / "spool").glob("j-*/*.seg"))
