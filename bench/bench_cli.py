"""CLI start-up: ``llmledger --help`` and ``llmledger logs`` as real processes, against
``python -c pass`` in the same run.

Each command runs ``--runs`` times as a new process (``python -m llmledger …``,
the same code as the ``llmledger`` script), interleaved with the bare
interpreter so a change in the machine's load touches all of them alike.  The
figures are the median, best and worst wall time; "added" is the median minus
the bare interpreter's median; CPU time (user + system) moves less than wall
time when other work shares the machine.  ``logs`` reads a SQLite ledger of
``--events`` events in a temporary ``LLMLEDGER_HOME``, made before the clock
starts.  Byte code is compiled in a warm-up run and cached, as for an installed
package.  Target (DESIGN.md §8): ≤ 300 ms for each.

Run: ``.venv/bin/python bench/bench_cli.py [--runs N] [--events N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from llmledger.core.events import UsageEvent
from llmledger.core.usage import Usage
from llmledger.store import open_store

TARGET_MS = 300.0


def make_ledger(home: Path, count: int) -> None:
    """A migrated SQLite ledger in ``home`` holding ``count`` recent events."""
    now = datetime.now(UTC)
    events = [
        UsageEvent(
            provider="openai",
            model="gpt-4o-mini",
            ts=now - timedelta(minutes=i),
            usage=Usage(input_tokens=1000 + i, output_tokens=100),
            cost=Decimal("0.000210"),
            tenant="acme",
            user=f"user-{i % 7}",
            feature="chat",
            tags={"env": "bench"},
        )
        for i in range(count)
    ]
    home.mkdir(parents=True, exist_ok=True)
    with open_store(f"sqlite:///{home / 'ledger.db'}") as store:
        store.write(events)


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) milliseconds of one process, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


def run(runs: int, events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "home"
        make_ledger(home, events)
        # Byte code is cached, as it is for an installed package: in a folder of
        # the run's own, so the source tree stays clean.
        env = {
            **os.environ,
            "LLMLEDGER_HOME": str(home),
            "PYTHONPYCACHEPREFIX": str(Path(folder) / "pycache"),
        }
        for name in ("LLMLEDGER_DATABASE_URL", "LLMLEDGER_URL", "PYTHONDONTWRITEBYTECODE"):
            env.pop(name, None)
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "llmledger --help": [sys.executable, "-m", "llmledger", "--help"],
            "llmledger logs": [sys.executable, "-m", "llmledger", "logs"],
        }
        for argv in cases.values():  # warm the file system cache and byte code
            timed(argv, env)
        times: dict[str, list[float]] = {name: [] for name in cases}
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(runs):
            for name, argv in cases.items():
                wall_ms, cpu_ms = timed(argv, env)
                times[name].append(wall_ms)
                cpu[name].append(cpu_ms)
    bare = statistics.median(times["python -c pass"])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(
            {
                "command": name,
                "median_ms": round(median, 1),
                "best_ms": round(min(values), 1),
                "worst_ms": round(max(values), 1),
                "added_ms": round(median - bare, 1),
                "cpu_median_ms": round(statistics.median(cpu[name]), 1),
            }
        )
    return {
        "runs": runs,
        "events": events,
        "load": os.getloadavg(),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="processes per command")
    parser.add_argument("--events", type=int, default=1000, help="events in the ledger")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    result = run(args.runs, args.events)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"Start-up of a new process, {result['runs']} runs each, interleaved; `logs` on a "
        f"SQLite ledger of {result['events']:,} events. Target (DESIGN.md §8): "
        f"≤ {TARGET_MS:.0f} ms."
    )
    print()
    print(
        "| command | median ms | best ms | worst ms | added to `python -c pass`, ms "
        "| CPU median ms |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for row in result["rows"]:
        print(
            f"| `{row['command']}` | {row['median_ms']:,.1f} | {row['best_ms']:,.1f} | "
            f"{row['worst_ms']:,.1f} | {row['added_ms']:,.1f} | {row['cpu_median_ms']:,.1f} |"
        )
    load = ", ".join(f"{value:.2f}" for value in result["load"])
    print()
    print(f"- load average at the end: {load} (other work on the machine slows every figure).")


if __name__ == "__main__":
    main()
