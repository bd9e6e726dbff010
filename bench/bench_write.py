"""Ledger write throughput into SQLite: record → committed, against raw sqlite3.

Figures from one run on one machine (best of ``--repeat`` runs each):

* ``record_busy``: ``llmledger.record()`` called ``--events`` times in a loop, then
  the caller's thread stays busy in a pure Python loop (it never sleeps, never
  waits on a lock) until the writer has committed everything; the clock stops
  when ``flush()`` returns.  Nothing may be dropped.  This is what a user pays:
  journal append on the caller's thread, a writer competing for the GIL.
* ``record_busy_process``: the same with ``writer_process`` on: a child process,
  fed by the journal, writes (its CPU time is not in the CPU column).
* ``pipeline``: events are built in the caller's thread as ``UsageEvent``s
  (provider, model, tenant/user/feature, two tags, usage, Decimal cost) and each
  is handed to ``Writer.submit`` (the journal) at once; the clock stops when
  ``flush()`` returns.
* ``writer``: the same with the events built beforehand (journal, store and writer alone).
* ``store.write``: ``SqlStore.write`` of the prebuilt events in batches, no thread.
* ``raw sqlite3``: ``executemany`` of the same rows (same columns, same values,
  the same tag rows sorted in key order) into the same schema, in batches of the
  same size, on a plain ``sqlite3`` connection with the same pragmas; the rows are
  built before the clock starts.
* per-event costs: building an event, and within it ``new_id()``; encoding an
  event into a row (``llmledger.store.codec``).
* ``burst``: a child process calls ``record()`` 1,000,000 times (``--burst``) as
  fast as it can; the growth of its peak RSS from after the first 2,000 events
  (the price catalog's fixed cost left out) to the end of the loop and to the end
  of ``flush()``.

CPU seconds are given besides wall seconds: on a shared machine they move less.
With ``--postgres URL`` (or ``LLMLEDGER_TEST_POSTGRES_URL``) it also compares the
PostgreSQL write path (COPY) with psycopg's pipelined ``executemany``.

The ratio to raw sqlite3 is the goal of ``docs/benchmarks.md`` (≥ 0.6 end to end
is the moonshot; the floor is ≥ 20,000 events/s committed with the caller busy).

Run: ``.venv/bin/python bench/bench_write.py [--events N] [--repeat R] [--burst N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import llmledger
from llmledger.core.events import UsageEvent
from llmledger.core.ids import new_id
from llmledger.core.usage import Usage
from llmledger.runtime.journal import Journal
from llmledger.runtime.ledger import shutdown
from llmledger.runtime.writer import Writer
from llmledger.store import SqlStore, event_tags, events, open_store
from llmledger.store.codec import FIXED_COLUMNS, OPTIONAL_COLUMNS, encode_batch

BATCH_SIZE = 5_000
#: Where the tags are in a row encoded whole (every column, in the codec's order).
TAGS_AT = (*FIXED_COLUMNS, *OPTIONAL_COLUMNS).index("tags")
COST_AT = (*FIXED_COLUMNS, *OPTIONAL_COLUMNS).index("cost_nanos")
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


class Timing:
    """Wall and CPU seconds of the best of several runs."""

    def __init__(self) -> None:
        self.wall = float("inf")
        self.cpu = float("inf")

    def measure(self, action: Callable[[], None]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        self.wall = min(self.wall, time.perf_counter() - wall)
        self.cpu = min(self.cpu, time.process_time() - cpu)

    def result(self, n: int) -> dict[str, float]:
        return {
            "events_per_s": n / self.wall,
            "wall_s": self.wall,
            "cpu_us_per_event": self.cpu / n * 1e6,
        }


def new_sqlite(folder: Path) -> tuple[str, SqlStore]:
    url = f"sqlite:///{folder / (uuid.uuid4().hex + '.db')}"
    return url, open_store(url)


def bench_pipeline(
    folder: Path, n: int, repeat: int, prebuilt: list[UsageEvent] | None
) -> dict[str, float]:
    timing = Timing()
    for _ in range(repeat):
        _, store = new_sqlite(folder)
        writer = Writer(
            store,
            journal=Journal(folder / uuid.uuid4().hex),
            batch_size=BATCH_SIZE,
            flush_interval=0.05,
            strict=True,
        )
        submit = writer.submit

        def run(writer: Writer = writer, submit: Callable[[UsageEvent], None] = submit) -> None:
            if prebuilt is None:
                for i in range(n):
                    submit(make_event(i))
            else:
                for event in prebuilt:
                    submit(event)
            writer.flush()

        timing.measure(run)
        assert writer.dropped == writer.failed == 0 and store.count() == n, "events were lost"
        writer.close()
        store.close()
    return timing.result(n)


def busy_until(done: Callable[[], bool]) -> int:
    """Keep this thread busy in pure Python until ``done()``; the loops made."""
    spins = 0
    while True:
        total = 0
        for i in range(2_000):
            total += i * i
        spins += 1
        if done():
            return spins


def bench_record_busy(
    folder: Path, n: int, repeat: int, *, process: bool = False
) -> dict[str, float]:
    """``record()`` n times, then a busy caller until everything is committed; with
    ``process``, by the writer process (``writer_process``), whose CPU time is not
    the application's and is not counted."""
    timing = Timing()
    for _ in range(repeat):
        url = f"sqlite:///{folder / (uuid.uuid4().hex + '.db')}"
        ledger = llmledger.configure(
            home=folder / uuid.uuid4().hex,
            database_url=url,
            strict=True,
            handle_signals=False,
            writer_process=process,
        )
        record = llmledger.record
        # Warm: the price catalog loaded and the store migrated before the clock starts.
        record(provider="openai", model="gpt-4o-mini", input_tokens=1, output_tokens=1)
        record_one = record
        assert ledger.flush(60)

        def run(ledger: llmledger.Ledger = ledger, record: Any = record_one) -> None:
            for i in range(n):
                record(
                    provider="openai",
                    model=MODELS[i % 2][1],
                    input_tokens=1200 + i % 100,
                    output_tokens=300,
                    cache_read_tokens=1024,
                    feature=FEATURES[i % 4],
                    tenant=f"tenant-{i % 20}",
                    user=f"user-{i % 500}",
                    tags={"environment": "prod", "podcast_id": f"pod-{i % 200}"},
                )
            writer = ledger.writer
            busy_until(lambda: writer.pending == 0)
            assert ledger.flush(600)

        timing.measure(run)
        stats = ledger.stats()
        assert stats["dropped"] == stats["failed"] == 0, stats
        assert ledger.store.count() == n + 1, "events were lost"
        shutdown()
    return timing.result(n)


BURST = r"""
import resource, sys, time
import llmledger
n = int(sys.argv[1])
record = llmledger.record
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for i in range(2000):
    record(provider="openai", model="gpt-4o-mini", input_tokens=100, output_tokens=i % 50)
before = peak()
started = time.perf_counter()
for i in range(2000, n):
    record(provider="openai", model="gpt-4o-mini", input_tokens=100, output_tokens=i % 50)
looped = time.perf_counter() - started
grown = peak() - before
ok = llmledger.flush(3600)
total = time.perf_counter() - started
stats = llmledger.get_ledger().stats()
print(f"loop_s={looped} total_s={total} grown_kib={grown} "
      f"grown_flushed_kib={peak() - before} flushed={ok} dropped={stats['dropped']} "
      f"failed={stats['failed']}")
"""


def bench_burst(folder: Path, n: int) -> dict[str, float]:
    """Peak memory of a child process under a burst of ``n`` ``record()`` calls."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMLEDGER_")}
    env["LLMLEDGER_HOME"] = str(folder / "burst")
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    done = subprocess.run(
        [sys.executable, "-c", BURST, str(n)], env=env, capture_output=True, text=True, check=True
    )
    figures = dict(re.findall(r"(\w+)=(\S+)", done.stdout))
    assert figures["flushed"] == "True" and figures["dropped"] == "0", done.stdout
    return {
        "events": n,
        "record_loop_s": float(figures["loop_s"]),
        "committed_s": float(figures["total_s"]),
        "growth_mib": int(figures["grown_kib"]) / 1024,
        "growth_after_flush_mib": int(figures["grown_flushed_kib"]) / 1024,
    }


def bench_store_write(folder: Path, built: list[UsageEvent], repeat: int) -> dict[str, float]:
    timing = Timing()
    for _ in range(repeat):
        _, store = new_sqlite(folder)

        def run(store: SqlStore = store) -> None:
            for start in range(0, len(built), BATCH_SIZE):
                store.write(built[start : start + BATCH_SIZE])

        timing.measure(run)
        store.close()
    return timing.result(len(built))


def same_rows(built: list[UsageEvent]) -> tuple[list[tuple[Any, ...]], list[list[tuple[Any, ...]]]]:
    """Every column of every event, and each batch's tag rows sorted in key order."""
    [rows] = encode_batch(built, split_nulls=False, bool_as_int=True).groups.values()
    tag_batches = []
    for start in range(0, len(rows), BATCH_SIZE):
        batch = rows[start : start + BATCH_SIZE]
        tags = [
            (k, v, row[1], row[0], row[COST_AT])
            for row in batch
            for k, v in json.loads(row[TAGS_AT] or "{}").items()
        ]
        tag_batches.append(sorted(tags))
    return rows, tag_batches


def bench_raw_sqlite(folder: Path, built: list[UsageEvent], repeat: int) -> dict[str, float]:
    rows, tag_batches = same_rows(built)
    columns = ", ".join(f'"{column.name}"' for column in events.columns)
    insert = (
        f"INSERT OR IGNORE INTO events ({columns}) VALUES ({', '.join('?' * len(events.columns))})"
    )
    insert_tags = (
        f"INSERT OR IGNORE INTO event_tags VALUES ({', '.join('?' * len(event_tags.columns))})"
    )
    timing = Timing()
    for _ in range(repeat):
        url, store = new_sqlite(folder)  # the same schema, made by the migrations
        store.close()
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            conn.execute(f"PRAGMA {pragma}")

        def run(conn: sqlite3.Connection = conn) -> None:
            for number, start in enumerate(range(0, len(rows), BATCH_SIZE)):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(insert, rows[start : start + BATCH_SIZE])
                conn.executemany(insert_tags, tag_batches[number])
                conn.execute("COMMIT")

        timing.measure(run)
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == len(rows)
        conn.close()
    return timing.result(len(rows))


def per_event_costs(n: int, built: list[UsageEvent]) -> dict[str, float]:
    def best(action: Callable[[], object]) -> float:
        seconds = []
        for _ in range(3):
            start = time.process_time()
            action()
            seconds.append(time.process_time() - start)
        return min(seconds) / n * 1e6

    return {
        "build_event_us": best(lambda: [make_event(i) for i in range(n)]),
        "new_id_us": best(lambda: [new_id() for _ in range(n)]),
        "datetime_now_us": best(lambda: [datetime.now(UTC) for _ in range(n)]),
        "encode_row_us": best(lambda: encode_batch(built, split_nulls=True, bool_as_int=True)),
    }


def bench_postgres(url: str, built: list[UsageEvent]) -> dict[str, Any]:
    """COPY (the store's path) against psycopg's pipelined executemany, same prebuilt rows.

    Both sides get rows encoded before the clock starts and insert events and
    their tags, batch by batch, one transaction each; rollups are left out of both.
    """
    import psycopg
    import sqlalchemy as sa

    from llmledger.store import pgcopy

    schema = f"llmledger_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    scoped = sa.engine.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        with open_store(scoped.render_as_string(hide_password=False)) as store:
            copy = Timing()
            encoded = [
                encode_batch(
                    built[start : start + BATCH_SIZE], split_nulls=False, bool_as_int=False
                )
                for start in range(0, len(built), BATCH_SIZE)
            ]

            def write_all() -> None:
                for batch in encoded:
                    with store.engine.connect() as conn:
                        conn.begin()
                        pooled = conn.connection
                        pgcopy.copy_batch(pooled.driver_connection, pooled.info, batch)
                        conn.commit()
                        pgcopy.mark_tables_created(pooled.info)

            copy.measure(write_all)
            with store.engine.begin() as conn:
                conn.exec_driver_sql("TRUNCATE events, event_tags")
        [rows] = encode_batch(built, split_nulls=False, bool_as_int=False).groups.values()
        columns = ", ".join(f'"{column.name}"' for column in events.columns)
        insert = (
            f"INSERT INTO events ({columns}) VALUES ({', '.join(['%s'] * len(events.columns))}) "
            "ON CONFLICT (id) DO NOTHING"
        )
        tags = [
            (k, v, row[1], row[0], row[COST_AT])
            for row in rows
            for k, v in json.loads(row[TAGS_AT] or "{}").items()
        ]
        insert_tags = "INSERT INTO event_tags VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
        libpq = (
            sa.engine.make_url(url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        executemany = Timing()
        with psycopg.connect(libpq, options=f"-csearch_path={schema}") as raw:

            def run() -> None:
                per_batch = len(tags) // len(rows)
                for start in range(0, len(rows), BATCH_SIZE):
                    with raw.cursor() as cursor:
                        cursor.executemany(insert, rows[start : start + BATCH_SIZE])
                        cursor.executemany(
                            insert_tags, tags[start * per_batch : (start + BATCH_SIZE) * per_batch]
                        )
                    raw.commit()

            executemany.measure(run)
        return {"copy": copy.result(len(built)), "executemany": executemany.result(len(built))}
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per run")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each measurement; the best counts"
    )
    parser.add_argument(
        "--postgres", default=os.environ.get("LLMLEDGER_TEST_POSTGRES_URL"), help="PostgreSQL URL"
    )
    parser.add_argument(
        "--burst", type=int, default=1_000_000, help="record() calls of the memory burst (0: none)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    n = args.events
    built = [make_event(i) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results: dict[str, Any] = {
            "events": n,
            "batch_size": BATCH_SIZE,
            "record_busy": bench_record_busy(folder, n, args.repeat),
            "record_busy_process": bench_record_busy(folder, n, args.repeat, process=True),
            "pipeline": bench_pipeline(folder, n, args.repeat, None),
            "writer": bench_pipeline(folder, n, args.repeat, built),
            "store_write": bench_store_write(folder, built, args.repeat),
            "raw_sqlite3": bench_raw_sqlite(folder, built, args.repeat),
            "per_event": per_event_costs(n, built),
        }
        if args.burst:
            results["burst"] = bench_burst(folder, args.burst)
    if args.postgres:
        results["postgres"] = bench_postgres(args.postgres, built[: min(n, 50_000)])
    raw = results["raw_sqlite3"]["events_per_s"]
    for name in ("record_busy", "record_busy_process", "pipeline", "writer", "store_write"):
        results[name]["vs_raw"] = results[name]["events_per_s"] / raw
    if args.json:
        print(json.dumps(results))
        return
    print(f"{n:,} events per run, batches of {BATCH_SIZE:,}, best of {args.repeat} runs\n")
    print("| path | events/s | wall s | CPU µs/event | vs raw sqlite3 |")
    print("|---|---:|---:|---:|---:|")
    labels = {
        "record_busy": "record() → committed, caller busy (none dropped)",
        "record_busy_process": "the same, writer process (`writer_process`; CPU: the app's only)",
        "pipeline": "events built → committed (build + submit + flush)",
        "writer": "writer, events prebuilt (submit + flush)",
        "store_write": "SqlStore.write, no thread",
        "raw_sqlite3": "raw sqlite3 executemany, rows prebuilt",
    }
    for name, label in labels.items():
        r = results[name]
        ratio = f"{r['vs_raw']:.2f}x" if "vs_raw" in r else "1.00x"
        print(
            f"| {label} | {r['events_per_s']:,.0f} | {r['wall_s']:.2f} "
            f"| {r['cpu_us_per_event']:.1f} | {ratio} |"
        )
    c = results["per_event"]
    print("\nPer event (CPU µs, best of 3): ")
    print(
        f"building a UsageEvent {c['build_event_us']:.2f} (of which new_id() {c['new_id_us']:.2f}, "
        f"datetime.now() {c['datetime_now_us']:.2f}); "
        f"encoding it into a row {c['encode_row_us']:.2f}"
    )
    if "burst" in results:
        b = results["burst"]
        print(
            f"\nBurst of {b['events']:,} record() calls in a child process: loop "
            f"{b['record_loop_s']:.1f} s, all committed after {b['committed_s']:.1f} s; "
            f"peak memory +{b['growth_mib']:.1f} MiB during the loop, "
            f"+{b['growth_after_flush_mib']:.1f} MiB to the end of flush() (budget 30 MB)"
        )
    if "postgres" in results:
        pg = results["postgres"]
        print(
            f"\nPostgreSQL, {min(n, 50_000):,} events: COPY + INSERT … SELECT "
            f"{pg['copy']['events_per_s']:,.0f} events/s; psycopg executemany "
            f"{pg['executemany']['events_per_s']:,.0f} events/s"
        )


if __name__ == "__main__":
    main()
