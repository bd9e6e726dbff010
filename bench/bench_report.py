"""Report latency on a large ledger: ``report --by model`` over 30 days, rollups vs raw events.

Fills a ledger with N synthetic events spread over 60 days (generated in SQL, so
filling is quick), builds the rollups with ``SqlStore.rebuild_rollups``, then times
``SqlStore.report`` on the same query three ways in the same run:

* ``auto``: what ``llmledger report`` does: daily rollups for the whole UTC
  days, hourly rollups for the hours around them, raw events for the two
  partial edge hours;
* ``hourly``: hourly rollups and the edge events only (no daily rollups);
* ``events``: the raw events only.

The three reports must be equal (the run fails otherwise).  Each figure is the
median, best and worst of ``--runs`` runs after one warm-up run.  It prints a
Markdown table, which ``bench/run`` copies into docs/benchmarks.md.

This module is the one home of the large ledger: ``bench_dashboard.py`` and
``bench_budgets.py`` read the same cached ledger through :func:`open_ledger`,
:func:`prepare` and :func:`add_tags`.  Filled ledgers are kept and reused by
later runs: filling and rebuilding 10 million events takes minutes on SQLite and
about ten on PostgreSQL.  The cache is

* SQLite: the file ``<--cache-dir>/report-<N>.db`` (default
  ``$TMPDIR/llmledger-bench/report-10000000.db``);
* PostgreSQL: the schema ``llmledger_bench_report_<N>`` in the database of
  ``--postgres-url`` (default ``LLMLEDGER_BENCH_POSTGRES_URL``, else
  ``LLMLEDGER_TEST_POSTGRES_URL``).  Keep it in a database of its own (e.g.
  ``createdb bench10m``) so that nothing else drops it.

A ledger is reused when it holds N events and its rollups; tags a benchmark adds
are kept with it.  ``--fresh`` refills it, ``--drop`` removes it afterwards.

    .venv/bin/python bench/bench_report.py                     # SQLite, and PostgreSQL when
                                                               # a URL is in the environment
    export LLMLEDGER_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/bench10m
    .venv/bin/python bench/bench_report.py --backend postgres --progress
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from llmledger.query import Query, SourceMode, plan
from llmledger.query.periods import DAY_US, HOUR_US, to_us
from llmledger.query.plan import Piece
from llmledger.store import open_store
from llmledger.store.rollup_tables import rollup_table
from llmledger.store.schema import events
from llmledger.store.sql import SqlStore

DAYS = 60
NOW = datetime(2025, 6, 1, 12, 34, 56, tzinfo=UTC)
MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "o3",
    "o4-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "claude-opus-4-1",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "text-embedding-3-small",
    "mistral-large",
    "command-r",
    "llama-3.3-70b",
)
PROVIDERS = (
    "openai",
    "openai",
    "openai",
    "openai",
    "openai",
    "openai",
    "anthropic",
    "anthropic",
    "anthropic",
    "google",
    "google",
    "openai",
    "mistral",
    "cohere",
    "bedrock",
)
QUERY = Query(
    since=NOW - timedelta(days=30),
    until=NOW,
    by=("model",),
    metrics=(
        "calls",
        "errors",
        "input_tokens",
        "cache_read_tokens",
        "output_tokens",
        "cost",
        "unpriced_calls",
    ),
)
SOURCES: tuple[tuple[SourceMode, str], ...] = (
    ("auto", "daily + hourly rollups, edge events"),
    ("hourly", "hourly rollups, edge events"),
    ("events", "raw events"),
)
_progress = False


def say(text: str) -> None:
    """Progress on stderr, only with --progress (bench/run records stdout and stderr)."""
    if _progress:
        print(text, file=sys.stderr, flush=True)


def _fill(store: SqlStore, count: int) -> None:
    """Insert ``count`` events in SQL: a series of integers turned into varied rows."""
    start_us = to_us(NOW - timedelta(days=DAYS))
    step = DAYS * 86_400_000_000 // count
    models = " ".join(f"WHEN {i} THEN '{m}'" for i, m in enumerate(MODELS))
    providers = " ".join(f"WHEN {i} THEN '{p}'" for i, p in enumerate(PROVIDERS))
    n = len(MODELS)
    # A multiplicative hash of i gives well-spread pseudo-random columns in both dialects.
    h = "((i * 2654435761) % 1000003)"
    columns = (
        f"'e' || i, {start_us} + i * {step}, "
        f"CASE {h} % {n} {providers} END, CASE {h} % {n} {models} END, "
        f"CASE WHEN {h} % 7 = 0 THEN 'embeddings' ELSE 'chat' END, "
        f"CASE WHEN {h} % 50 = 0 THEN 'error' ELSE 'ok' END, 'provider', "
        f"{'false' if store.dialect == 'postgresql' else '0'}, "
        f"100 + {h} % 4000, 10 + {h} % 700, {h} % 1000, 0, 0, 0, 0, 0, {h} % 50, 0, 0, "
        f"50.0 + {h} % 3000, "
        f"'tenant' || ({h} % 20), 'user' || ({h} % 500), 'feature' || ({h} % 12), "
        f"CASE WHEN {h} % 97 = 0 THEN NULL ELSE 1000 + ({h} % 90000) END"
    )
    names = (
        "id, ts_us, provider, model, operation, status, usage_source, stream, input_tokens, "
        "output_tokens, cache_read_tokens, cache_write_tokens, cache_write_5m_tokens, "
        "cache_write_1h_tokens, input_audio_tokens, input_image_tokens, reasoning_tokens, "
        'output_audio_tokens, tool_use_prompt_tokens, duration_ms, tenant, "user", feature, '
        "cost_nanos"
    )
    chunk = 1_000_000
    with store.engine.begin() as conn:
        for low in range(0, count, chunk):
            high = min(low + chunk, count)
            if store.dialect == "postgresql":
                source = f"SELECT {columns} FROM generate_series({low}::bigint, {high - 1}) AS s(i)"
            else:
                source = (
                    f"WITH RECURSIVE s(i) AS (SELECT {low} UNION ALL SELECT i + 1 FROM s "
                    f"WHERE i < {high - 1}) SELECT {columns} FROM s"
                )
            statement = f"INSERT INTO events ({names}) {source}"
            if store.dialect == "postgresql":
                statement = statement.replace("%", "%%")  # psycopg placeholders
            conn.exec_driver_sql(statement)
            say(f"  {high:,} events")


def _analyze(store: SqlStore) -> None:
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    else:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def _counts(store: SqlStore) -> tuple[int, int]:
    """Events, and daily rollup rows (0 when the rollups were never built)."""
    with store.engine.connect() as conn:
        stored = int(conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one())
        daily = int(conn.exec_driver_sql("SELECT count(*) FROM rollups_daily").scalar_one())
    return stored, daily


def prepare(store: SqlStore, count: int, fresh: bool) -> str:
    """Fill the ledger and build its rollups unless an earlier run left them; say which."""
    stored, daily = _counts(store) if not fresh else (-1, 0)
    if stored == count and daily > 0:
        return "reused from an earlier run"
    with store.engine.begin() as conn:
        for table in ("rollups_daily", "rollups_hourly", "event_tags", "events"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    say(f"filling {store.dialect} with {count:,} events over {DAYS} days")
    began = time.perf_counter()
    _fill(store, count)
    filled = time.perf_counter() - began
    began = time.perf_counter()
    rows = store.rebuild_rollups()
    rebuilt = time.perf_counter() - began
    _analyze(store)
    say(f"  filled in {filled:.0f} s, rollups rebuilt in {rebuilt:.0f} s: {rows:,} rows")
    return f"filled in {filled:.0f} s, rollups ({rows:,} rows) rebuilt in {rebuilt:.0f} s"


def add_tags(store: SqlStore, key: str, one_in: int, values: int, prefix: str) -> str:
    """Tag one event in ``one_in`` with ``key``, spread evenly over ``values`` values
    (``prefix`` + a number), once per ledger; say how many tags there are.

    Event ``e<n>`` gets the tag when ``n`` is a multiple of ``one_in``, with the
    value numbered ``(n / one_in) % values``: every value has the same number of
    calls, spread over the whole ledger.
    """
    with store.engine.begin() as conn:
        count = int(
            conn.execute(
                sa.text("SELECT count(*) FROM event_tags WHERE key = :key"), {"key": key}
            ).scalar_one()
        )
        if count:
            return f"{count:,} {key} tags kept from an earlier run"
        began = time.perf_counter()
        number = "CAST(substr(id, 2) AS BIGINT)"
        statement = (
            "INSERT INTO event_tags (key, value, ts_us, event_id, cost_nanos) "
            f"SELECT '{key}', '{prefix}' || (({number} / {one_in}) % {values}), ts_us, id, "
            f"cost_nanos FROM events WHERE {number} % {one_in} = 0"
        )
        if store.dialect == "postgresql":
            statement = statement.replace("%", "%%")  # psycopg placeholders
        count = conn.exec_driver_sql(statement).rowcount
    _analyze(store)
    return f"{count:,} {key} tags added in {time.perf_counter() - began:.0f} s"


def rows_read(store: SqlStore, pieces: list[Piece]) -> int:
    """How many stored rows (rollup rows or events) the pieces of a plan read."""
    total = 0
    with store.engine.connect() as conn:
        for piece in pieces:
            table: Any
            if piece.grain is None:
                table, time_column, extra = events, events.c.ts_us, []
            else:
                table, time_column = rollup_table(piece.period_us)
                extra = [table.c.grain == piece.grain]
            if piece.start_us is not None:
                extra.append(time_column >= piece.start_us)
            if piece.end_us is not None:
                extra.append(time_column < piece.end_us)
            counted = sa.select(sa.func.count()).select_from(table).where(*extra)
            total += int(conn.execute(counted).scalar_one())
    return total


@dataclass
class Timing:
    """Milliseconds of each timed run of one source, and what it read."""

    mode: SourceMode
    label: str
    runs: list[float]
    pieces: int
    rows: int
    answer: dict[str, Any]

    @property
    def median(self) -> float:
        """Median of the runs."""
        return statistics.median(self.runs)


def measure(store: SqlStore, mode: SourceMode, label: str, runs: int) -> Timing:
    """One warm-up run, then ``runs`` timed runs of the query from one source."""
    pieces = plan(QUERY, None, mode)
    report = store.report(QUERY, mode=mode)
    timings = []
    for _ in range(runs):
        began = time.perf_counter()
        report = store.report(QUERY, mode=mode)
        timings.append((time.perf_counter() - began) * 1000)
    answer = report.to_dict()
    answer.pop("source")
    return Timing(mode, label, timings, len(pieces), rows_read(store, pieces), answer)


def open_ledger(backend: str, args: argparse.Namespace) -> tuple[SqlStore, str, Any]:
    """The store of a backend's cached ledger, its version, and how to drop it."""
    if backend == "postgres":
        schema = f"llmledger_bench_report_{args.events}"
        admin = sa.create_engine(args.postgres_url)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            version = str(conn.exec_driver_sql("SHOW server_version").scalar_one()).split()[0]
        url = (
            sa.engine.make_url(args.postgres_url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )

        def drop() -> None:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')

        return open_store(url), f"PostgreSQL {version}", drop
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    path = args.cache_dir / f"report-{args.events}.db"
    return open_store(f"sqlite:///{path}"), f"SQLite {sqlite3.sqlite_version}", path.unlink


def run_backend(backend: str, args: argparse.Namespace) -> tuple[str, str, list[Timing]]:
    """Prepare one backend's ledger and time every source on it."""
    store, name, drop = open_ledger(backend, args)
    try:
        how = prepare(store, args.events, args.fresh)
        timings = []
        for mode, label in SOURCES:
            say(f"  timing {name}: {label}")
            runs = args.raw_runs if mode == "events" else args.runs
            timings.append(measure(store, mode, label, runs))
        for timing in timings[:-1]:
            if timing.answer != timings[-1].answer:
                raise SystemExit(f"{name}: {timing.label} and raw events disagree")
        return name, how, timings
    finally:
        store.close()
        if args.drop:
            drop()


def ledger_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the cached ledger, shared by every benchmark that reads it."""
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("LLMLEDGER_BENCH_POSTGRES_URL")
        or os.environ.get("LLMLEDGER_TEST_POSTGRES_URL"),
        help="PostgreSQL server database holding the ledger's schema (default: "
        "LLMLEDGER_BENCH_POSTGRES_URL, else LLMLEDGER_TEST_POSTGRES_URL)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "llmledger-bench",
        help="Where the SQLite ledger is kept between runs.",
    )
    parser.add_argument("--fresh", action="store_true", help="Refill even if a ledger exists.")
    parser.add_argument("--drop", action="store_true", help="Remove the ledgers afterwards.")
    parser.add_argument("--progress", action="store_true", help="Progress on stderr.")


def main() -> None:
    global _progress
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ledger_arguments(parser)
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgres", "all"),
        default="all",
        help="all: SQLite, and PostgreSQL when a URL is given or in the environment",
    )
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--raw-runs", type=int, default=3)
    args = parser.parse_args()
    _progress = args.progress
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    if args.postgres_url is None:
        if args.backend == "postgres":
            parser.error("--backend postgres needs --postgres-url")
        backends = [b for b in backends if b != "postgres"]
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    results = [run_backend(backend, args) for backend in backends]

    calls = results[0][2][0].answer["total"]["calls"]
    print(
        f"`report --by model` over 30 days on a ledger of {args.events:,} events spread over "
        f"{DAYS} days ({calls:,} calls in range, {len(MODELS)} models). Each source is timed "
        "in the same run after one warm-up run: median, best and worst of the runs. The "
        "three sources gave equal reports. Target (DESIGN.md §8): ≤ 200 ms."
    )
    print()
    print(
        "| database | source | statements | rows read | median ms | best ms | worst ms | runs "
        "| speed-up |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, _, timings in results:
        raw = timings[-1].median
        for t in timings:
            print(
                f"| {name} | {t.label} | {t.pieces} | {t.rows:,} | {t.median:,.1f} "
                f"| {min(t.runs):,.1f} | {max(t.runs):,.1f} | {len(t.runs)} "
                f"| {raw / t.median:,.1f} x |"
            )
    print()
    for name, how, _ in results:
        print(f"- {name} ledger: {how}.")
    spans = [
        (p.grain, p.period_us, (p.end_us or 0) - (p.start_us or 0))
        for p in plan(QUERY, None, "auto")
    ]
    days = sum(length // DAY_US for grain, period, length in spans if period == DAY_US and grain)
    hours = sum(length // HOUR_US for grain, period, length in spans if period == HOUR_US and grain)
    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        or "unknown"
    )
    print(
        f"- Run started {started} at commit {commit}, load average {load} (other work on the "
        "machine slows every figure)."
    )
    print(
        f"- auto reads {days} whole UTC days from the daily rollups, {hours} hours around them "
        "from the hourly rollups and the two partial hours at the edges from the events."
    )


if __name__ == "__main__":
    main()
