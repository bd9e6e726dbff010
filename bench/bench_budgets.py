"""Evaluating 1,000 budgets on a large ledger: the scheduled budget check's reads.

Reuses the ledger of ``bench/bench_report.py`` (N synthetic events over 60 days,
rollups built; filled once and cached: the schema ``llmledger_bench_report_<N>`` in the
database of ``--postgres-url``, default ``LLMLEDGER_BENCH_POSTGRES_URL`` else
``LLMLEDGER_TEST_POSTGRES_URL``, and ``<--cache-dir>/report-<N>.db`` on SQLite; see
``bench_report.py``), adds a ``project`` tag to one event in ten (50 projects of equal
size, once, kept with the ledger), then times ``Monitor.budget_statuses`` over 1,000 budgets: 80 %
scoped by tenant, feature, model or provider (alone or together), 20 % by a tag,
over calendar months, weeks and days and rolling windows.  The statuses are
checked against direct reports for a sample of the budgets.  Target
(DESIGN.md §8): ≤ 1 s.

    .venv/bin/python bench/bench_budgets.py --events 100000 --backend sqlite   # smoke run
    export LLMLEDGER_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/bench10m
    .venv/bin/python bench/bench_budgets.py --backend postgres --progress       # 10M events
    BENCH_BACKEND=postgres bench/run bench_budgets      # the same, its section in benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_report
from bench_report import MODELS, NOW, PROVIDERS, add_tags, open_ledger, prepare, say

from llmledger.alerts import Budget, plan_budgets
from llmledger.core.settings import load_settings
from llmledger.monitor import Monitor
from llmledger.pricing import PriceResolver
from llmledger.query import Query

PROJECTS = 50
PERIODS: tuple[tuple[str, int | None], ...] = (
    ("month", None),
    ("month", None),
    ("week", None),
    ("day", None),
    ("rolling", 7),
    ("rolling", 30),
)


def budgets(count: int = 1000) -> list[Budget]:
    """``count`` budgets: 80 % by tenant, feature, model or provider, 20 % by tag."""
    made = []
    for i in range(count):
        period, days = PERIODS[i % len(PERIODS)]
        if i % 5 == 4:
            where: tuple[str, ...] = (f"tag:project=p{i % PROJECTS}",)
            tenant = None
        else:
            shape = i % 4
            tenant = f"tenant{i % 20}" if shape in (0, 1) else None
            where = {
                0: (),
                1: (f"feature=feature{i % 12}",),
                2: (f"model={MODELS[i % len(MODELS)]}",),
                3: (f"provider={PROVIDERS[i % len(PROVIDERS)]}", "model!=o3"),
            }[shape]
        made.append(
            Budget(
                name=f"b{i}",
                amount=Decimal(100 + i),
                period=period,  # type: ignore[arg-type]
                rolling_days=days,
                where=where,
                tenant=tenant,
                thresholds=(50, 80, 100),
            )
        )
    return made


def run(backend: str, args: argparse.Namespace) -> tuple[str, str, list[float], int, int]:
    store, name, drop = open_ledger(backend, args)
    try:
        how = prepare(store, args.events, args.fresh)
        how += "; " + add_tags(store, "project", 10, PROJECTS, "p")
        monitor = Monitor(
            store, load_settings(), lambda: PriceResolver(catalog=False, supplement=False)
        )
        chosen = budgets(args.budgets)
        queries = len(plan_budgets(chosen, NOW).queries)
        found = monitor.budget_statuses(chosen, NOW)  # warm-up
        for status in found[:: max(1, len(found) // 25)]:
            direct = store.report(
                Query(
                    since=status.since,
                    until=status.until,
                    where=status.budget.filters(),
                    metrics=("cost",),
                )
            ).total["cost"] or Decimal(0)
            if direct != status.spent:
                raise SystemExit(f"{name}: {status.budget.name} spent {status.spent} != {direct}")
        timings = []
        for _ in range(args.runs):
            say(f"  timing {name}")
            began = time.perf_counter()
            monitor.budget_statuses(chosen, NOW)
            timings.append((time.perf_counter() - began) * 1000)
        crossed = sum(1 for s in found if s.crossed)
        return name, how, timings, queries, crossed
    finally:
        store.close()
        if args.drop:
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    bench_report.ledger_arguments(parser)
    parser.add_argument("--budgets", type=int, default=1000)
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgres", "all"),
        default=os.environ.get("BENCH_BACKEND", "all"),
        help="default: $BENCH_BACKEND, else all",
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    bench_report._progress = args.progress
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    if args.postgres_url is None:
        if args.backend == "postgres":
            parser.error("--backend postgres needs --postgres-url")
        backends = [b for b in backends if b != "postgres"]
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results = [run(backend, args) for backend in backends]
    print(
        f"Statuses of {args.budgets:,} budgets (80 % by tenant, feature, model or provider, "
        f"20 % by a tag; calendar months, weeks, days and rolling 7 and 30 days) on a ledger "
        f"of {args.events:,} events over 60 days, evaluated at its last day. One warm-up run, "
        f"then {args.runs} timed runs; a sample of statuses equals direct reports. "
        "Target (DESIGN.md §8): ≤ 1 s."
    )
    print()
    print(
        "| database | reports run | budgets crossing a threshold | median ms | best ms | worst ms |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, _, timings, queries, crossed in results:
        print(
            f"| {name} | {queries} | {crossed} | {statistics.median(timings):.0f} | "
            f"{min(timings):.0f} | {max(timings):.0f} |"
        )
    print()
    for name, how, *_ in results:
        print(f"- {name}: ledger {how}.")
    print(f"- started {started}, load {' '.join(f'{v:.2f}' for v in os.getloadavg())}.")


if __name__ == "__main__":
    main()
