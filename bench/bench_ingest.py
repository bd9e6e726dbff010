"""HTTP batch ingest into PostgreSQL: one ``llmledger serve``, a load generator on loopback.

The service runs as its own process (one uvicorn worker) over a fresh schema of
the PostgreSQL database; the load generator (httpx, asyncio, ``--concurrency``
connections) posts ``--requests`` batches of ``--batch`` events, prebuilt
before the clock starts (the way the SDK's remote sink sends them: priced,
JSON, gzip unless ``--no-gzip``), and records each request's latency.  The
clock stops when the last answer arrives; every event must come back
``accepted`` and be in the database.

Reported: events/s over the whole run, the latency distribution per request,
and the server's CPU time per event (from /proc; steadier than wall time on a
shared machine).  Target (DESIGN.md §8): ≥ 20,000 events/s on 2 cores.  The
rollups are keyed by tenant at every grain (events come from five tenants).

Then, unless ``--heavy-reports 0``: ingest latency while reads compete.  One
connection posts ``--latency-requests`` batches one after the other, first on an
idle service, then while ``--report-clients`` readers keep posting
``/v1/report/batch`` requests of ``--heavy-reports`` heavy queries each (by
user and feature, per hour, latency percentiles, read from the raw events).
Reported: the latency distribution of each phase and how many report batches
were answered (and how many were refused as over their budget).

Run: ``.venv/bin/python bench/bench_ingest.py [--postgres URL] [--requests 300]
[--batch 1000] [--concurrency 4] [--workers 1] [--time-limit 120] [--unpriced]
[--heavy-reports 20] [--report-clients 2] [--latency-requests 50] [--json]``
(URL defaults to ``LLMLEDGER_TEST_POSTGRES_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from llmledger.core.events import UsageEvent
from llmledger.core.usage import Usage
from llmledger.pricing import PriceResolver
from llmledger.server.keys import KeyStore
from llmledger.store import open_store
from llmledger.wire.serialize import event_to_json

MODELS = (
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4.1"),
    ("anthropic", "claude-sonnet-4-5-20250929"),
)
FEATURES = ("chat", "summarise", "search", "classify")


def make_events(count: int, start: int, priced: bool, pricer: PriceResolver) -> list[UsageEvent]:
    """Realistic events: three models, attribution, two tags, a cost when ``priced``."""
    now = datetime.now(UTC) - timedelta(minutes=1)
    out = []
    for i in range(start, start + count):
        provider, model = MODELS[i % 3]
        event = UsageEvent(
            provider=provider,
            model=model,
            ts=now - timedelta(milliseconds=i),
            duration_ms=812.5,
            response_model=model,
            finish_reason="stop",
            usage=Usage(input_tokens=1200 + i % 500, output_tokens=300, cache_read_tokens=1024),
            tenant=f"tenant-{i % 5}",
            user=f"user-{i % 50}",
            feature=FEATURES[i % 4],
            tags={"env": "prod", "ticket": f"T-{i % 1000}"},
        )
        if priced:
            event = pricer.priced(event)
        out.append(event)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(pid: int) -> float:
    """CPU seconds of the server and its worker processes."""
    total = cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task").iterdir():
        children = child / "children"
        if children.exists():
            for kid in children.read_text().split():
                with contextlib.suppress(FileNotFoundError):  # a worker that exited
                    total += cpu_seconds(int(kid))
    return total


def postgres_cpu_seconds() -> float | None:
    """CPU seconds of every local PostgreSQL process (None when none is visible)."""
    total, seen = 0.0, False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() == "postgres":
                total += cpu_seconds(int(entry.name))
                seen = True
    return total if seen else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def load(
    url: str, token: str, bodies: list[bytes], concurrency: int, compressed: bool, time_limit: float
) -> tuple[list[float], float, int]:
    """Post every body with ``concurrency`` connections; latencies (s), wall seconds, sent."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if compressed:
        headers["Content-Encoding"] = "gzip"
    latencies: list[float] = []
    queue = list(reversed(bodies))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=120
    ) as client:
        started = time.perf_counter()
        deadline = started + time_limit

        async def worker() -> None:
            while queue and time.perf_counter() < deadline:
                body = queue.pop()
                sent = time.perf_counter()
                answer = await client.post("/v1/events", content=body)
                latencies.append(time.perf_counter() - sent)
                if answer.status_code != 200:
                    raise RuntimeError(f"HTTP {answer.status_code}: {answer.text[:300]}")
                statuses = {r["status"] for r in answer.json()["results"]}
                if statuses != {"accepted"}:
                    raise RuntimeError(f"not all accepted: {statuses}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, wall, len(bodies) - len(queue)


HEAVY_QUERY = {
    "by": ["user", "feature"],
    "every": "hour",
    "metrics": ["calls", "cost", "latency_p50", "latency_p99"],
    "source": "events",
}


def _latency_summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "p50": round(percentile(ms, 0.50), 1),
        "p90": round(percentile(ms, 0.90), 1),
        "max": round(max(ms), 1),
    }


async def contended(
    url: str,
    ingest_token: str,
    reader_token: str,
    bodies: list[bytes],
    compressed: bool,
    heavy: int,
    readers: int,
) -> dict[str, Any]:
    """Ingest latency (one connection, one batch after another) alone, then under reads."""
    alone, _, _ = await load(url, ingest_token, bodies[: len(bodies) // 2], 1, compressed, 600)
    answered = refused = 0
    stop = asyncio.Event()
    headers = {"Authorization": f"Bearer {reader_token}"}
    body = {"queries": [HEAVY_QUERY] * heavy}

    async def reader() -> None:
        nonlocal answered, refused
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as client:
            while not stop.is_set():
                answer = await client.post("/v1/report/batch", json=body)
                if answer.status_code == 200:
                    answered += 1
                elif answer.status_code == 503:
                    refused += 1
                else:
                    raise RuntimeError(f"report HTTP {answer.status_code}: {answer.text[:300]}")

    tasks = [asyncio.create_task(reader()) for _ in range(readers)]
    await asyncio.sleep(1.0)  # the reports are running before ingest is timed
    try:
        during, _, _ = await load(url, ingest_token, bodies[len(bodies) // 2 :], 1, compressed, 600)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return {
        "heavy_queries_per_batch": heavy,
        "report_clients": readers,
        "ingest_latency_ms_idle": _latency_summary(alone),
        "ingest_latency_ms_under_reports": _latency_summary(during),
        "report_batches_answered": answered,
        "report_batches_refused_503": refused,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = args.postgres or os.environ.get("LLMLEDGER_TEST_POSTGRES_URL")
    if not base:
        print("not run: needs PostgreSQL (--postgres URL or LLMLEDGER_TEST_POSTGRES_URL)")
        sys.exit(0)
    schema = f"llmledger_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = (
        sa.engine.make_url(base)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    server: subprocess.Popen[bytes] | None = None
    try:
        with open_store(url) as store:
            keys = KeyStore(store)
            token = keys.create("ingest", tenant="bench", now=datetime.now(UTC)).secret
            reader = keys.create("reader", tenant="bench", now=datetime.now(UTC)).secret
        pricer = PriceResolver()
        latency_requests = args.latency_requests * 2 if args.heavy_reports else 0
        total = args.requests + args.warmup + latency_requests
        bodies = []
        for index in range(total):
            batch = make_events(args.batch, index * args.batch, not args.unpriced, pricer)
            body = json.dumps(
                {"events": [event_to_json(e) for e in batch]}, separators=(",", ":")
            ).encode()
            bodies.append(gzip.compress(body, compresslevel=5) if args.gzip else body)
        port = free_port()
        llmledger = str(Path(sys.executable).with_name("llmledger"))
        server = subprocess.Popen(
            [
                llmledger,
                "--database-url",
                url,
                "serve",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
            ],
        )
        address = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{address}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        asyncio.run(load(address, token, bodies[: args.warmup], 1, args.gzip, 60))
        cpu_before = server_cpu_seconds(server.pid)
        pg_before = postgres_cpu_seconds()
        timed = bodies[args.warmup : args.warmup + args.requests]
        latencies, wall, sent = asyncio.run(
            load(address, token, timed, args.concurrency, args.gzip, args.time_limit)
        )
        server_cpu = server_cpu_seconds(server.pid) - cpu_before
        pg_after = postgres_cpu_seconds()
        pg_cpu = None if pg_before is None or pg_after is None else pg_after - pg_before
        events = sent * args.batch
        with open_store(url) as store:
            stored = store.count()
        if stored != (sent + args.warmup) * args.batch:
            raise RuntimeError(
                f"{stored} events stored, expected {(sent + args.warmup) * args.batch}"
            )
        contention = None
        if latency_requests:
            contention = asyncio.run(
                contended(
                    address,
                    token,
                    reader,
                    bodies[args.warmup + args.requests :],
                    args.gzip,
                    args.heavy_reports,
                    args.report_clients,
                )
            )
        ms = [s * 1000 for s in latencies]
        return {
            "contention": contention,
            "requests": sent,
            "batch": args.batch,
            "events": events,
            "concurrency": args.concurrency,
            "workers": args.workers,
            "gzip": args.gzip,
            "priced_by": "server" if args.unpriced else "client, then the server",
            "wall_s": round(wall, 3),
            "events_per_s": round(events / wall),
            "server_cpu_us_per_event": round(server_cpu / events * 1e6, 1),
            "postgres_cpu_us_per_event": (
                None if pg_cpu is None else round(pg_cpu / events * 1e6, 1)
            ),
            "latency_ms": {
                "min": round(min(ms), 1),
                "p50": round(percentile(ms, 0.50), 1),
                "p90": round(percentile(ms, 0.90), 1),
                "p99": round(percentile(ms, 0.99), 1),
                "max": round(max(ms), 1),
                "mean": round(statistics.fmean(ms), 1),
            },
        }
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="PostgreSQL URL (default LLMLEDGER_TEST_POSTGRES_URL)")
    parser.add_argument("--requests", type=int, default=300, help="Batches to send (timed).")
    parser.add_argument("--warmup", type=int, default=3, help="Batches sent before the clock.")
    parser.add_argument("--batch", type=int, default=1000, help="Events per request (≤ 1000).")
    parser.add_argument("--concurrency", type=int, default=4, help="Connections in parallel.")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Worker processes of the one llmledger serve instance.",
    )
    parser.add_argument(
        "--time-limit", type=float, default=120.0, help="Stop sending after this many seconds."
    )
    parser.add_argument(
        "--no-gzip", dest="gzip", action="store_false", help="Send plain JSON instead of gzip."
    )
    parser.add_argument(
        "--unpriced",
        action="store_true",
        help="Send events without cost (the server prices every event either way).",
    )
    parser.add_argument(
        "--heavy-reports",
        type=int,
        default=20,
        help="Heavy queries per report batch while ingest latency is measured (0: skip).",
    )
    parser.add_argument(
        "--report-clients", type=int, default=2, help="Readers posting report batches at once."
    )
    parser.add_argument(
        "--latency-requests",
        type=int,
        default=50,
        help="Ingest batches timed one by one, idle and again under reports.",
    )
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    lat = result["latency_ms"]
    print(
        f"{result['requests']} requests x {result['batch']} events, "
        f"{result['concurrency']} connections, gzip={result['gzip']}, "
        f"priced by the {result['priced_by']}, one instance ({result['workers']} worker(s)) "
        "on PostgreSQL"
    )
    print(
        f"  {result['events_per_s']:,} events/s ({result['events']:,} events in "
        f"{result['wall_s']} s); CPU per event: server {result['server_cpu_us_per_event']} µs, "
        f"PostgreSQL {result['postgres_cpu_us_per_event']} µs"
    )
    print(
        f"  latency per request (ms): p50 {lat['p50']}, p90 {lat['p90']}, p99 {lat['p99']}, "
        f"min {lat['min']}, max {lat['max']}, mean {lat['mean']}"
    )
    contention = result["contention"]
    if contention is not None:
        idle = contention["ingest_latency_ms_idle"]
        busy = contention["ingest_latency_ms_under_reports"]
        print(
            f"  ingest latency, one connection (ms): idle p50 {idle['p50']} p90 {idle['p90']}; "
            f"while {contention['report_clients']} readers post batches of "
            f"{contention['heavy_queries_per_batch']} heavy reports: p50 {busy['p50']} "
            f"p90 {busy['p90']} max {busy['max']} ({contention['report_batches_answered']} "
            f"report batches answered, {contention['report_batches_refused_503']} refused)"
        )


if __name__ == "__main__":
    main()
