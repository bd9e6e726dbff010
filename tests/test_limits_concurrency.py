"""Many processes and threads spending against one limit, through the database (SQLite,
PostgreSQL) and through a real ``llmledger serve``: the spend committed plus what calls
in flight reserved never passes the limit, no refused call reaches the provider, and
every call is recorded (``ok`` or ``blocked``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmledger.core.limits import Limit
from llmledger.query import build_query
from llmledger.store import SqlStore, open_store
from tests.test_server_e2e import cli, free_port, serve

ROOT = Path(__file__).resolve().parent.parent
PROCESSES, THREADS, CALLS = 8, 3, 4
#: Room for 12 to 26 calls: each reserves about 0.00048 USD and spends 0.000225 USD.
LIMIT_USD = Decimal("0.006")
#: gpt-4o: 10 input tokens at 2.50 USD and 20 output tokens at 10 USD per million.
CALL_NANOS = 225_000


def _spend(tmp_path: Path, env: Mapping[str, str], store: SqlStore, limit: Limit) -> dict[str, int]:
    """Run the workers while a watcher checks the counters; the workers' summed counts."""
    seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            _, used, reserved = store.limit_states([limit], now=datetime.now(UTC))[limit.id]
            seen.append((used, reserved))
            stop.wait(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.limits_worker", str(THREADS), str(CALLS)],
                cwd=ROOT,
                env={**os.environ, **env, "LLMLEDGER_HOME": str(tmp_path / f"home{i}")},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(PROCESSES)
        ]
        results = []
        for worker in workers:
            out, err = worker.communicate(timeout=300)
            assert worker.returncode == 0, err
            results.append(json.loads(out))
    finally:
        stop.set()
        watcher.join()
    assert seen and all(used + reserved <= limit.units for used, reserved in seen), max(seen)
    return {name: sum(r[name] for r in results) for name in ("requests", "allowed", "blocked")}


def _check(store: SqlStore, limit: Limit, counts: dict[str, int]) -> None:
    assert counts["allowed"] + counts["blocked"] == PROCESSES * THREADS * CALLS
    assert counts["requests"] == counts["allowed"], "a refused call reached the provider"
    assert counts["blocked"] > 0 and counts["allowed"] > 0
    _, used, reserved = store.limit_states([limit], now=datetime.now(UTC))[limit.id]
    assert reserved == 0 and used == counts["allowed"] * CALL_NANOS <= limit.units
    query = build_query(by=["status"], metrics=["calls", "cost"], last="1d", now=datetime.now(UTC))
    rows = {row["status"]: row for row in store.report(query).rows}
    assert (
        rows["ok"]["calls"] == counts["allowed"] and rows["blocked"]["calls"] == counts["blocked"]
    )
    assert rows["ok"]["cost"] == Decimal(used) / 10**9


def _limit(store: SqlStore) -> Limit:
    limit = Limit("tenant", "acme", "cost", LIMIT_USD, "day", id="L-acme").validate()
    store.add_limit(limit)
    return limit


def test_processes_spending_through_the_database(tmp_path: Path, db_url: str) -> None:
    store = open_store(db_url)
    limit = _limit(store)
    counts = _spend(tmp_path, {"LLMLEDGER_DATABASE_URL": db_url}, store, limit)
    _check(store, limit, counts)
    store.close()


def test_processes_spending_through_the_service(tmp_path: Path, db_url: str) -> None:
    store = open_store(db_url)
    limit = _limit(store)
    key: Any = json.loads(
        cli(db_url, "keys", "create", "--role", "ingest", "--tenant", "acme", "--json")
    )
    with serve(db_url, free_port()) as url:
        env = {"LLMLEDGER_URL": url, "LLMLEDGER_API_KEY": key["secret"]}
        counts = _spend(tmp_path, env, store, limit)
    _check(store, limit, counts)
    store.close()
