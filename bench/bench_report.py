"""Report latency on a large ledger: ``report --by model`` over 30 days, rollups vs raw events.

Fills a ledger with N synthetic events spread over 60 days (generated in SQL, so
filling is quick), builds the hourly rollups with ``rebuild_rollups``, then times
the query engine on the same query twice: planned (hourly rollups plus the raw
events of the two partial edge hours) and from the raw events only.

    .venv/bin/python bench/bench_report.py --events 10000000 --backend sqlite
    .venv/bin/python bench/bench_report.py --events 10000000 --backend postgres \
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/test

The PostgreSQL run uses a schema of its own and drops it afterwards (unless --keep).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from llmledger.query import Query, rebuild_rollups, run_query
from llmledger.query.periods import to_us
from llmledger.store import open_store
from llmledger.store.sql import SqlStore

DAYS = 60
NOW = datetime(2025, 6, 1, 12, 34, 56, tzinfo=UTC)
MODELS = ("gpt-4o", "gpt-4o-mini", "o3", "o4-mini", "gpt-4.1", "gpt-4.1-mini", "claude-sonnet-4-5",
          "claude-haiku-4-5", "claude-opus-4-1", "gemini-2.5-pro", "gemini-2.5-flash",
          "text-embedding-3-small", "mistral-large", "command-r", "llama-3.3-70b")
PROVIDERS = ("openai", "openai", "openai", "openai", "openai", "openai", "anthropic", "anthropic",
             "anthropic", "google", "google", "openai", "mistral", "cohere", "bedrock")


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
        "output_audio_tokens, tool_use_prompt_tokens, duration_ms, tenant, \"user\", feature, "
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
            print(f"  {high:,} events", flush=True)
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    else:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def _time(store: SqlStore, query: Query, mode: str, runs: int) -> tuple[float, float, int]:
    timings = []
    calls = 0
    for _ in range(runs):
        began = time.perf_counter()
        report = run_query(store, query, mode=mode)  # type: ignore[arg-type]
        timings.append((time.perf_counter() - began) * 1000)
        calls = int(report.total["calls"])
    return statistics.median(timings), min(timings), calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--sqlite-path", type=Path, help="Reuse or create this SQLite file.")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--raw-runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="Keep the PostgreSQL schema.")
    args = parser.parse_args()

    schema = None
    if args.backend == "postgres":
        schema = f"llmledger_bench_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(args.postgres_url)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = sa.engine.make_url(args.postgres_url).update_query_dict(
            {"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    else:
        path = args.sqlite_path or Path(tempfile.mkdtemp()) / "bench.db"
        url = f"sqlite:///{path}"
    try:
        store = open_store(url)
        with store.engine.connect() as conn:
            existing = int(conn.exec_driver_sql("SELECT count(*) FROM events").scalar_one())
        if existing != args.events:
            print(f"filling {args.backend} with {args.events:,} events over {DAYS} days")
            began = time.perf_counter()
            _fill(store, args.events)
            print(f"  filled in {time.perf_counter() - began:.0f}s")
            began = time.perf_counter()
            rows = rebuild_rollups(store)
            print(f"  rollups rebuilt in {time.perf_counter() - began:.0f}s: {rows:,} rows")
        query = Query(since=NOW - timedelta(days=30), until=NOW, by=("model",),
                      metrics=("calls", "errors", "input_tokens", "cache_read_tokens",
                               "output_tokens", "cost", "unpriced_calls"))
        planned = _time(store, query, "auto", args.runs)
        raw = _time(store, query, "events", args.raw_runs)
        assert planned[2] == raw[2], "rollups and events disagree"
        print(f"{args.backend}, {args.events:,} events, report --by model over 30 days "
              f"({planned[2]:,} calls):")
        print(f"  rollups + edge events: median {planned[0]:.1f} ms, best {planned[1]:.1f} ms "
              f"({args.runs} runs)")
        print(f"  raw events only:       median {raw[0]:.1f} ms, best {raw[1]:.1f} ms "
              f"({args.raw_runs} runs)")
        store.close()
    finally:
        if schema is not None and not args.keep:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()


if __name__ == "__main__":
    main()
