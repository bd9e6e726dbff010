"""Guarded calls: the time a limit check adds before an instrumented call is sent.

A guarded call reserves its estimate before the request leaves (on the caller's
thread) and settles its real spend after (off the caller's thread: in the
background writer, or the guard's settling thread for ``check().settle()``).
This measures both, one at a time, against one ``cost`` limit per tenant that
every call counts for: on a SQLite file, on PostgreSQL (``--postgres URL`` or
``LLMLEDGER_TEST_POSTGRES_URL``) and through a real ``llmledger serve`` (on a
SQLite file) over loopback.  The reserve is the whole pre-call check of
:meth:`llmledger.runtime.limits.LimitGuard.guard_request`: the request body's
size, the priced estimate, and the atomic reserve.  The settle is timed twice:
applied in the store (what the settling thread waits for) and on the caller
(handing it over).  Figures are medians (and the reserve's 95th percentile) of
``--calls`` calls after a warm-up.

So that runs on a loaded machine compare, each backend's figures come with bare
calls to the same database in the same run: one round trip (``SELECT 1`` on the
driver's connection; ``GET /healthz`` for the service) and one committed one-row
write (the floor of a durable reserve), and the reserve as a multiple of that
write.  Target (DESIGN.md §8): ≤ 1 ms per check against a local database.

Run: ``.venv/bin/python bench/bench_limits.py [--calls N] [--postgres URL] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from llmledger.core.limits import Amounts, Limit, Subject
from llmledger.core.settings import load_settings
from llmledger.runtime.ledger import Ledger
from llmledger.runtime.limits import LimitGuard, RemoteLimits
from llmledger.store import open_store

TARGET_MS = 1.0
BODY: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "What is the capital of France? " * 20}],
    "max_tokens": 200,
}


def _median_ms(run: Callable[[], object], calls: int) -> float:
    times = []
    for i in range(calls + 50):
        started = time.perf_counter()
        run()
        if i >= 50:
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _measure(guard: LimitGuard, calls: int) -> dict[str, float]:
    subject = Subject(tenant="acme", user="ana")
    spent = Amounts.of_call(cost=Decimal("0.0001"), tokens=300)
    reserve: list[float] = []
    in_store: list[float] = []
    on_caller: list[float] = []
    for i in range(2 * (calls + 50)):
        started = time.perf_counter()
        check = guard.guard_request(subject, "openai", "gpt-4o", BODY)
        middle = time.perf_counter()
        assert check.allowed and check.reservation is not None, check
        if i % 2:
            check.settle(cost=Decimal("0.0001"), tokens=300)
        else:
            guard.settle(check.reservation, spent)
        ended = time.perf_counter()
        if i >= 100:
            reserve.append((middle - started) * 1000)
            (on_caller if i % 2 else in_store).append((ended - middle) * 1000)
    assert guard.ledger.flush(60)
    return {
        "reserve_median_ms": statistics.median(reserve),
        "reserve_p95_ms": statistics.quantiles(reserve, n=20)[-1],
        "settle_store_median_ms": statistics.median(in_store),
        "settle_caller_median_ms": statistics.median(on_caller),
    }


def _bare(url: str, calls: int) -> dict[str, float]:
    """A round trip and a committed one-row write on the driver's own connection."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    raw = engine.raw_connection()
    driver: Any = raw.driver_connection
    sqlite = url.startswith("sqlite")
    if sqlite:
        driver.isolation_level = None
        driver.execute("PRAGMA synchronous=NORMAL")  # as the ledger's connections
    else:
        driver.autocommit = True
    driver.execute("CREATE TABLE bench_bare (id INTEGER PRIMARY KEY, v INTEGER)")
    row = iter(range(10**9))

    def write() -> None:
        if sqlite:
            driver.execute("BEGIN IMMEDIATE")
        driver.execute(f"INSERT INTO bench_bare (id, v) VALUES ({next(row)}, 1)")
        if sqlite:
            driver.execute("COMMIT")

    try:
        return {
            "bare_round_trip_ms": _median_ms(lambda: driver.execute("SELECT 1").fetchall(), calls),
            "bare_write_ms": _median_ms(write, calls),
        }
    finally:
        driver.execute("DROP TABLE bench_bare")
        raw.close()
        engine.dispose()


def _local(url: str, home: Path, calls: int) -> dict[str, float]:
    store = open_store(url)
    store.add_limit(Limit("tenant", "acme", "cost", Decimal(10**6), "day"))
    store.close()
    ledger = Ledger(load_settings(home=home, database_url=url, limits=True))
    ledger.pricer  # noqa: B018 - the catalog loads once, before the clock
    try:
        return {**_bare(url, calls), **_measure(ledger.limits, calls)}
    finally:
        ledger.close()


def _service(home: Path, calls: int) -> dict[str, float]:
    url = f"sqlite:///{home / 'service.db'}"
    store = open_store(url)
    store.add_limit(Limit("tenant", "acme", "cost", Decimal(10**6), "day"))
    store.close()
    llmledger = str(Path(sys.executable).with_name("llmledger"))
    key = json.loads(
        subprocess.run(
            [
                llmledger,
                "--database-url",
                url,
                "keys",
                "create",
                "--role",
                "ingest",
                "--tenant",
                "acme",
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["secret"]
    port = 18000 + os.getpid() % 1000
    process = subprocess.Popen(
        [llmledger, "--database-url", url, "serve", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=None,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the service did not start")
            time.sleep(0.1)
        ledger = Ledger(load_settings(home=home, url=base, api_key=key, limits=True))
        ledger.pricer  # noqa: B018
        guard = LimitGuard(ledger, RemoteLimits(base, key))
        with httpx.Client(base_url=base) as client:
            bare = _median_ms(lambda: client.get("/healthz"), calls)
        return {"bare_round_trip_ms": bare, **_measure(guard, calls)}
    finally:
        process.terminate()
        process.wait(timeout=20)


@contextmanager
def _schema(base: str) -> Iterator[str]:
    """A schema of its own in the PostgreSQL database, dropped afterwards."""
    import sqlalchemy as sa

    name = f"llmledger_bench_limits_{os.getpid()}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{name}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="Guarded calls per backend.")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("LLMLEDGER_TEST_POSTGRES_URL"),
        help="A PostgreSQL URL to measure too.",
    )
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        results["SQLite file"] = _local(f"sqlite:///{home / 'ledger.db'}", home, args.calls)
        if args.postgres:
            with _schema(args.postgres) as url:
                results["PostgreSQL"] = _local(url, home, args.calls)
        results["service (llmledger serve, SQLite)"] = _service(home, args.calls)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"Guarded call: pre-call check (reserve) and settle, {args.calls} calls each; "
        f"target ≤ {TARGET_MS} ms per local check.\n"
    )
    print(
        "| limit store | bare round trip (ms) | bare committed write (ms) | reserve median (ms) "
        "| reserve p95 (ms) | reserve ÷ bare write | settle in store (ms) "
        "| settle on caller (ms) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in results.items():
        write = row.get("bare_write_ms")
        ratio = "" if write is None else f"{row['reserve_median_ms'] / write:.1f}"
        print(
            f"| {name} | {row['bare_round_trip_ms']:.3f} | "
            f"{'' if write is None else f'{write:.3f}'} | {row['reserve_median_ms']:.3f} | "
            f"{row['reserve_p95_ms']:.3f} | {ratio} | {row['settle_store_median_ms']:.3f} | "
            f"{row['settle_caller_median_ms']:.3f} |"
        )


if __name__ == "__main__":
    main()
