"""Test-suite wall time: a given commit against the current tree, in the same run.

Exports the base commit into a temporary folder (``git archive``), then runs the whole test
suite there and in this tree the same way (``python -m pytest -q -p no:cacheprovider``,
the same interpreter and environment, ``PYTHONPATH`` pointing at each tree's ``src``),
one after the other, alternating when ``--runs`` is more than one, so both meet the
same machine.  Reports each run's wall time, the CPU time of the run and everything it
started, and pytest's final line.  It prints a Markdown table, which ``bench/run``
copies into docs/benchmarks.md.

PostgreSQL is used when ``LLMLEDGER_TEST_POSTGRES_URL`` is set, as in the suite itself.

    .venv/bin/python bench/bench_suite.py                 # HEAD's parent vs this tree
    BENCH_SUITE_BASE=7edbaff BENCH_SUITE_RUNS=2 bench/run bench/bench_suite.py
    .venv/bin/python bench/bench_suite.py --base 7edbaff --runs 2
    .venv/bin/python bench/bench_suite.py -- tests/test_store_contract.py   # part of it
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTEST = ("-m", "pytest", "-q", "-p", "no:cacheprovider")


@dataclass
class Run:
    """One run of the suite in one tree."""

    tree: str
    wall_s: float
    cpu_s: float
    summary: str
    load: str
    returncode: int


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def run_suite(tree: Path, label: str, extra: list[str], log: Path) -> Run:
    """Run the suite in ``tree`` with its own ``src`` first on the path; output to ``log``."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    load = load_average()
    cpu = children_cpu()
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, *PYTEST, *extra], cwd=tree, env=env, stdout=out, stderr=out
        )
    wall = time.perf_counter() - started
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else "no output"
    return Run(label, wall, children_cpu() - cpu, summary, load, done.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base",
        default=os.environ.get("BENCH_SUITE_BASE", "HEAD~1"),
        help="Commit to compare with (default: $BENCH_SUITE_BASE, else HEAD's parent).",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=int(os.environ.get("BENCH_SUITE_RUNS", "1")),
        help="Runs of each tree, alternated (default: $BENCH_SUITE_RUNS, else 1).",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="Keep pytest's output of each run and say where."
    )
    parser.add_argument("--progress", action="store_true", help="Say when each run ends.")
    parser.add_argument("pytest_args", nargs="*", help="Passed on to pytest (after --).")
    args = parser.parse_args()

    base = git("rev-parse", "--short", args.base)
    head = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain"))
    current = f"this tree ({head}{', with uncommitted changes' if dirty else ''})"
    logs = Path(tempfile.mkdtemp(prefix="llmledger-bench-suite-"))
    base_tree = logs / f"base-{base}"
    base_tree.mkdir()
    archive = subprocess.run(["git", "archive", base], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(base_tree)], input=archive.stdout, check=True)
    runs: list[Run] = []
    try:
        for i in range(args.runs):
            for label, tree in ((f"base ({base})", base_tree), (current, ROOT)):
                log = logs / f"{'base' if tree == base_tree else 'current'}-{i + 1}.log"
                run = run_suite(tree, label, args.pytest_args, log)
                runs.append(run)
                if args.progress:
                    print(f"  {label}: {run.wall_s:.1f} s, {run.summary}", file=sys.stderr)
    finally:
        shutil.rmtree(base_tree)
        if not args.keep_logs:
            shutil.rmtree(logs)

    command = " ".join(["python", *PYTEST, *args.pytest_args])
    postgres = (
        "SQLite and PostgreSQL" if os.environ.get("LLMLEDGER_TEST_POSTGRES_URL") else "SQLite"
    )
    print(
        f"The test suite (`{command}`, on {postgres}) run in a copy of commit {base} "
        f"and in {current}, one after the other with the same interpreter "
        f"(Python {platform.python_version()}), {args.runs} run(s) each, alternated. "
        "CPU is the user and system time of pytest and every process it started."
    )
    print()
    print("| tree | run | wall s | CPU s | load at start | pytest said |")
    print("|---|---:|---:|---:|---|---|")
    for i, run in enumerate(runs):
        print(
            f"| {run.tree} | {i // 2 + 1} | {run.wall_s:.1f} | {run.cpu_s:.1f} | {run.load} "
            f"| {run.summary} |"
        )
    by_tree: dict[str, list[Run]] = {}
    for run in runs:
        by_tree.setdefault(run.tree, []).append(run)
    (base_runs, current_runs) = by_tree.values()
    base_wall = statistics.median(r.wall_s for r in base_runs)
    current_wall = statistics.median(r.wall_s for r in current_runs)
    base_cpu = statistics.median(r.cpu_s for r in base_runs)
    current_cpu = statistics.median(r.cpu_s for r in current_runs)
    print()
    print(
        f"Median wall time {base_wall:.1f} s -> {current_wall:.1f} s "
        f"({base_wall / current_wall:.2f}x); CPU {base_cpu:.1f} s -> {current_cpu:.1f} s "
        f"({base_cpu / current_cpu:.2f}x). Other work on the machine slows every figure."
    )
    if args.keep_logs:
        print(f"\npytest's output: {logs}", file=sys.stderr)
    if any(r.returncode != 0 for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
