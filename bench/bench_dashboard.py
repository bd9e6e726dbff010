"""Time to the data of each dashboard page on a large ledger (target: 300 ms on 10M events,
PostgreSQL).

Uses the ledger of ``bench/bench_report.py`` (N synthetic events over 60 days, rollups
built; filled once and kept: the schema ``llmledger_bench_report_<N>`` in the database of
``--postgres-url``, default ``LLMLEDGER_BENCH_POSTGRES_URL`` else
``LLMLEDGER_TEST_POSTGRES_URL``, or ``<--cache-dir>/report-<N>.db`` on SQLite; see
``bench_report.py``), adds a ``podcast_id`` tag to one event in a hundred (1,000 podcasts
of 100 calls each, for the entity page) and twenty budgets, both kept with the ledger,
then times the function behind each page
(``llmledger.server.dashboard.data``, which the pages render) as an admin and as a
reader scoped to one tenant: the queries a page makes, not the HTML or the browser.
Each figure is the median, best and worst of ``--runs`` runs after one warm-up run.
It prints a Markdown table, which ``bench/run`` copies into docs/benchmarks.md.

    export LLMLEDGER_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/bench10m
    .venv/bin/python bench/bench_dashboard.py --progress           # 10M events, PostgreSQL
    .venv/bin/python bench/bench_dashboard.py --events 20000 --runs 3   # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import bench_report  # the ledger builder

from llmledger.alerts import Budget
from llmledger.core.settings import load_settings
from llmledger.query import Query
from llmledger.server.auth import Principal
from llmledger.server.dashboard import data
from llmledger.server.keys import ApiKey
from llmledger.server.routers.reports import run_report
from llmledger.server.state import Service
from llmledger.store.sql import SqlStore

NOW = bench_report.NOW
TARGET_MS = 300.0
PODCASTS = 1000


def add_budgets(store: SqlStore) -> None:
    """Twenty budgets, one per tenant, half of them scoped by feature too (once per ledger)."""
    if store.list_budgets(tenant="*"):
        return
    for number in range(20):
        where = (f"feature=feature{number % 12}",) if number % 2 else ()
        budget = Budget(
            name=f"tenant{number}-month",
            amount=Decimal(1000),
            tenant=f"tenant{number}",
            where=where,
            created=NOW,
        )
        store.add_budget(budget, now=NOW)


def _principal(role: str, tenant: str | None) -> Principal:
    key = ApiKey(
        id="BENCH0000000",
        role=role,
        tenant=tenant,
        user=None,
        name="bench",
        created=NOW,
    )
    return Principal(key)


def pages(service: Service) -> list[tuple[str, Callable[[], Any]]]:
    """Each page's data, as the page asks for it."""
    admin = _principal("admin", None)
    reader = _principal("reader", "tenant3")
    first = data.calls_page(service, admin, NOW, data.CallFilters())
    cursor = first["next_cursor"]
    some_id = first["events"][0].id
    filtered = data.CallFilters(equals={"feature": "feature3", "status": "error"}, last="30d")
    by_model = Query(
        since=NOW - timedelta(days=30),
        until=NOW,
        by=("model",),
        every="day",
        metrics=("calls", "cost", "total_tokens"),
    )
    by_two = Query(
        since=NOW - timedelta(days=60),
        until=NOW,
        by=("tenant", "feature"),
        metrics=("calls", "cost", "total_tokens"),
        limit=10,
    )
    return [
        ("overview (admin)", lambda: data.overview(service, admin, NOW)),
        ("overview (reader of one tenant)", lambda: data.overview(service, reader, NOW)),
        (
            "calls, newest 50 of 7 days",
            lambda: data.calls_page(service, admin, NOW, data.CallFilters()),
        ),
        (
            "calls, second page",
            lambda: data.calls_page(service, admin, NOW, data.CallFilters(), cursor=cursor),
        ),
        (
            "calls, feature and status filters, 30 days",
            lambda: data.calls_page(service, admin, NOW, filtered),
        ),
        (
            "calls of one tenant (reader)",
            lambda: data.calls_page(service, reader, NOW, data.CallFilters()),
        ),
        # The synthetic ids are not ULIDs (which call_detail reads case-insensitively),
        # so the detail's two reads are timed as it makes them.
        ("call detail", lambda: (service.store.get(some_id), service.store.get_content(some_id))),
        ("breakdown by model per day, 30 days", lambda: run_report(service, admin, by_model)),
        ("breakdown by tenant and feature, 60 days", lambda: run_report(service, admin, by_two)),
        (
            "entity (podcast_id, 100 calls)",
            lambda: data.entity(service, admin, NOW, "podcast_id=rec7"),
        ),
        ("prices", lambda: data.prices_page(service, admin, NOW)),
        ("keys", lambda: data.keys_page(service)),
        # What /budgets reads through the /v1/budgets/check and /v1/alerts routes.
        ("budgets and alerts (20 budgets)", lambda: budgets_page(service, "*")),
        ("budgets and alerts (reader of one tenant)", lambda: budgets_page(service, "tenant3")),
    ]


def budgets_page(service: Service, tenant: str) -> Any:
    """The statuses, budgets and alert history of the budgets page (and the overview's bars)."""
    store = service.store
    budgets = store.list_budgets(tenant=tenant, active_only=True)
    return (
        service.monitor.budget_statuses(budgets, NOW),
        store.list_budgets(tenant=tenant),
        store.list_alerts(tenant=tenant, limit=100),
    )


def measure(action: Callable[[], Any], runs: int) -> list[float]:
    """Milliseconds of ``runs`` runs after one warm-up run."""
    action()
    timings = []
    for _ in range(runs):
        began = time.perf_counter()
        action()
        timings.append((time.perf_counter() - began) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    bench_report.ledger_arguments(parser)
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgres"),
        default=None,
        help="default: PostgreSQL when a URL is given or in the environment",
    )
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    bench_report._progress = args.progress
    backend = args.backend or ("postgres" if args.postgres_url else "sqlite")
    if backend == "postgres" and not args.postgres_url:
        parser.error("--backend postgres needs --postgres-url")
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    store, name, drop = bench_report.open_ledger(backend, args)
    try:
        how = bench_report.prepare(store, args.events, args.fresh)
        how += "; " + bench_report.add_tags(store, "podcast_id", 100, PODCASTS, "rec")
        add_budgets(store)
        with tempfile.TemporaryDirectory() as home:
            settings = load_settings(home=home, database_url=store.url)
            service = Service(settings, store=store)
            rows = []
            for label, action in pages(service):
                bench_report.say(f"  timing {label}")
                timings = measure(action, args.runs)
                rows.append((label, timings))
    finally:
        store.close()
        if args.drop:
            drop()
    print(
        f"Time to the data of each dashboard page on {name}, a ledger of {args.events:,} "
        f"events over {bench_report.DAYS} days ({how}), one podcast tag on 1 event in 100; "
        f"now = {NOW.isoformat()}. Each page's data function "
        f"(`llmledger.server.dashboard.data`) is timed {args.runs} times after a warm-up "
        f"run; target ≤ {TARGET_MS:.0f} ms. Run {started}."
    )
    print()
    print("| page | median ms | best | worst | within target |")
    print("|---|---:|---:|---:|---|")
    for label, timings in rows:
        median = statistics.median(timings)
        print(
            f"| {label} | {median:.1f} | {min(timings):.1f} | {max(timings):.1f} | "
            f"{'yes' if median <= TARGET_MS else 'no'} |"
        )


if __name__ == "__main__":
    main()
