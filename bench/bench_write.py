"""Ledger write throughput into SQLite: record → committed, against raw sqlite3.

Four figures, from one run on one machine:

* ``pipeline``: events are built in the caller's thread as ``UsageEvent``s
  (provider, model, tenant/user/feature, tags, usage, Decimal cost) and each is
  handed to ``Writer.submit`` at once; the clock stops when ``flush()`` returns.
* ``writer``: the same with the events built beforehand (the store and writer alone).
* ``raw sqlite3``: ``executemany`` of the same rows (same columns, same values,
  same tags rows) into the same schema, in batches of the same size, on a plain
  ``sqlite3`` connection with the same pragmas.  Rows are built before the clock.
* ``construction``: building the events alone, and within it ``new_id()``.

Run: ``.venv/bin/python bench/bench_write.py [--events N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmledger.events import UsageEvent
from llmledger.ids import new_id
from llmledger.store import SqlStore, event_tags, events, open_store
from llmledger.store.codec import encode_batch
from llmledger.usage import Usage
from llmledger.writer import Writer

BATCH_SIZE = 5_000
MODELS = (("openai", "gpt-4o-mini"), ("openai", "gpt-4.1"), ("anthropic", "claude-sonnet-4-5"))
FEATURES = ("chat", "summarise", "search", "classify")


def make_event(i: int) -> UsageEvent:
    """One realistic event, built the way capture builds it."""
    provider, model = MODELS[i % 3]
    return UsageEvent(
        provider=provider,
        model=model,
        ts=datetime.now(UTC),
        duration_ms=812.5,
        response_model=model,
        finish_reason="stop",
        tenant=f"tenant-{i % 20}",
        user=f"user-{i % 500}",
        feature=FEATURES[i % 4],
        tags={"environment": "prod", "podcast_id": f"pod-{i % 200}"},
        usage=Usage(input_tokens=1200 + i % 100, output_tokens=300, cache_read_tokens=1024),
        cost=Decimal(1234 + i % 1000).scaleb(-9),
        cost_source="catalog",
        price_ref="genai-prices@0.2.3",
    )


def fresh_store(folder: Path, name: str) -> SqlStore:
    return open_store(f"sqlite:///{folder / name}")


def timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def bench_pipeline(folder: Path, n: int) -> dict[str, Any]:
    store = fresh_store(folder, "pipeline.db")
    writer = Writer(
        store, batch_size=BATCH_SIZE, flush_interval=0.05, queue_limit=n + 1, strict=True
    )
    submit = writer.submit

    def run() -> None:
        for i in range(n):
            submit(make_event(i))
        writer.flush()

    seconds = timed(run)
    assert writer.dropped == 0 and writer.failed == 0 and store.count() == n, "events were lost"
    writer.close()
    store.close()
    return {"seconds": seconds, "events_per_s": n / seconds}


def bench_writer_only(folder: Path, built: list[UsageEvent]) -> dict[str, Any]:
    store = fresh_store(folder, "writer.db")
    writer = Writer(
        store, batch_size=BATCH_SIZE, flush_interval=0.05, queue_limit=len(built) + 1, strict=True
    )
    submit = writer.submit

    def run() -> None:
        for event in built:
            submit(event)
        writer.flush()

    seconds = timed(run)
    assert store.count() == len(built), "events were lost"
    writer.close()
    store.close()
    return {"seconds": seconds, "events_per_s": len(built) / seconds}


def bench_raw_sqlite(folder: Path, built: list[UsageEvent]) -> dict[str, Any]:
    store = fresh_store(folder, "raw.db")  # the same schema, made by the migrations
    store.close()
    encoded = encode_batch(built, split_nulls=False, bool_as_int=True)
    [rows] = encoded.groups.values()
    tag_rows = encoded.tag_rows
    columns = ", ".join(f'"{c}"' for c in events.columns.keys())  # noqa: SIM118
    insert = (
        f"INSERT OR IGNORE INTO events ({columns}) VALUES ({', '.join('?' * len(events.columns))})"
    )
    insert_tags = (
        f"INSERT OR IGNORE INTO event_tags VALUES ({', '.join('?' * len(event_tags.columns))})"
    )
    conn = sqlite3.connect(folder / "raw.db", isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    tags_per_event = len(tag_rows) // len(rows)

    def run() -> None:
        for start in range(0, len(rows), BATCH_SIZE):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, rows[start : start + BATCH_SIZE])
            conn.executemany(
                insert_tags,
                tag_rows[start * tags_per_event : (start + BATCH_SIZE) * tags_per_event],
            )
            conn.execute("COMMIT")

    seconds = timed(run)
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == len(rows)
    conn.close()
    return {"seconds": seconds, "events_per_s": len(rows) / seconds}


def bench_construction(n: int) -> dict[str, Any]:
    seconds = timed(lambda: [make_event(i) for i in range(n)])
    id_seconds = timed(lambda: [new_id() for _ in range(n)])
    now_seconds = timed(lambda: [datetime.now(UTC) for _ in range(n)])
    return {
        "event_us": seconds / n * 1e6,
        "new_id_us": id_seconds / n * 1e6,
        "now_us": now_seconds / n * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        construction = bench_construction(n)
        built = [make_event(i) for i in range(n)]
        results = {
            "events": n,
            "batch_size": BATCH_SIZE,
            "pipeline": bench_pipeline(folder, n),
            "writer": bench_writer_only(folder, built),
            "raw_sqlite3": bench_raw_sqlite(folder, built),
            "construction": construction,
        }
    raw = results["raw_sqlite3"]["events_per_s"]
    results["pipeline"]["vs_raw"] = results["pipeline"]["events_per_s"] / raw
    results["writer"]["vs_raw"] = results["writer"]["events_per_s"] / raw
    if args.json:
        print(json.dumps(results))
        return
    print(f"events: {n:,}, batch size {BATCH_SIZE:,}")
    for name in ("pipeline", "writer", "raw_sqlite3"):
        r = results[name]
        ratio = f"  ({r['vs_raw']:.2f}x raw)" if "vs_raw" in r else ""
        print(f"{name:12s} {r['events_per_s']:>12,.0f} events/s  {r['seconds']:.2f}s{ratio}")
    c = construction
    print(
        f"constructing one event: {c['event_us']:.2f} µs (new_id {c['new_id_us']:.2f} µs, "
        f"datetime.now {c['now_us']:.2f} µs)"
    )


if __name__ == "__main__":
    main()
