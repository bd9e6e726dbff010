"""Fault test: 1,000,000 ``record()`` calls as fast as one thread can make them; the
journal, not the heap, holds the backlog, so memory stays flat and nothing is dropped."""

from __future__ import annotations

import re
from pathlib import Path

from tests.fault_support import assert_exactly_once, child_env, start_recorder

COUNT = 1_000_000
#: The budget for memory added under load (the price catalog's fixed cost is not counted:
#: the child measures from after its first 2,000 events).
MAX_GROWTH_MIB = 30


def test_a_million_records_keep_memory_flat_and_lose_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    env = child_env(tmp_path / "app", database_url=url)
    child = start_recorder(env, COUNT, "memory")
    out, err = child.finish(3600)
    assert child.returncode == 0, err[-3000:]
    grown = re.search(r"grown_kib=(\d+) stats=(.*)", out)
    after = re.search(r"grown_after_flush_kib=(\d+)", out)
    assert grown and after, out
    assert "'dropped': 0" in grown.group(2) and "'failed': 0" in grown.group(2), out
    assert "flushed" in out.splitlines(), out
    print(f"\nburst of {COUNT:,} record() calls: {out}")  # the figures, with -s
    assert int(grown.group(1)) <= MAX_GROWTH_MIB * 1024, out
    assert int(after.group(1)) <= MAX_GROWTH_MIB * 1024, out
    assert_exactly_once(url, COUNT)
