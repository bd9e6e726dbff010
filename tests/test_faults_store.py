"""Fault tests: the SQLite ledger locked by another process from the very first write,
and the ledger read-only, then writable again."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from llmledger.store import open_store
from tests.fault_support import assert_exactly_once, child_env, run_flusher, start_recorder

COUNT = 3_000

#: Holds the database's write lock (BEGIN EXCLUSIVE) for argv[2] seconds.
LOCKER = r"""
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def migrated(tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "ledger.db"
    url = f"sqlite:///{path}"
    store = open_store(url)
    store.migrate()
    store.close()
    return url, path


def test_a_ledger_locked_for_10_s_from_the_first_write_loses_nothing(tmp_path: Path) -> None:
    url, path = migrated(tmp_path)
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(path), "10"], stdout=subprocess.PIPE, text=True
    )
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    started = time.monotonic()
    env = child_env(tmp_path / "app", database_url=url)
    child = start_recorder(env, COUNT, "flush:120")
    out, err = child.finish(240)
    assert locker.wait(60) == 0
    locker.stdout.close()
    assert time.monotonic() - started >= 10  # the lock was there for the first write
    assert out.strip() == "flushed", err[-3000:]
    assert_exactly_once(url, COUNT)


def test_a_read_only_ledger_keeps_events_in_the_journal_until_it_is_writable(
    tmp_path: Path,
) -> None:
    """Read-only the way root feels it: the file and its folder made immutable with
    ``chattr +i`` (chmod does not stop root, and CI runs as root). A real property of
    the file system, seen by SQLite as by any program: the ledger cannot be opened for
    writing (its write-ahead log cannot be created), and every write fails."""
    folder = tmp_path / "db"
    folder.mkdir()
    url, path = migrated(folder)
    for leftover in folder.glob("ledger.db-*"):
        leftover.unlink()
    immutable = [path, folder]
    subprocess.run(["chattr", "+i", *map(str, immutable)], check=True)
    try:
        env = child_env(tmp_path / "app", database_url=url, shutdown_timeout="1")
        child = start_recorder(env, COUNT, "flush:3")
        out, err = child.finish(240)
        assert out.strip() == "not flushed", err[-3000:]
        assert "3000 left in the journal" in err, err[-3000:]
    finally:
        subprocess.run(["chattr", "-i", *map(str, immutable)], check=True)
    assert run_flusher(env, 120).startswith("flushed")
    assert_exactly_once(url, COUNT)
