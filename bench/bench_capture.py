"""What capture costs the caller's thread (DESIGN.md §8): real SDK calls, bare against instrumented.

A real ``openai`` and ``anthropic`` client, over ``httpx2.MockTransport`` answering with
recorded responses (``tests/fixtures/recorded``), make the same call bare and instrumented,
interleaved call by call in ABBA order in one process.  Each call is timed in CPU time of
the calling thread (``time.thread_time_ns``), which is what the app pays: the background
writer's building, pricing and writing run in another thread and are not counted, while
anything the hook makes the caller do (including garbage collection it triggers) is.
The figure is the median of the paired differences (instrumented minus bare) with a 95%
interval from order statistics (distribution-free), per call and, for streams, per chunk
(the time to read a stream's chunks, divided by their number).

Bare and instrumented in one process: :func:`llmledger.instrument` is called once, and the
bare client is an instance of a subclass of the SDK's client whose ``request`` is the SDK's
own unhooked method.  Nothing is patched and unpatched between calls: doing so resets the
interpreter's caches of the SDK's classes, which costs tens of microseconds per call on its
own and would be counted as capture.  The ledger is a real one (SQLite in a temporary home,
background writer, prices loaded before the runs).

``record()`` is timed too: warm (prices loaded, per call, CPU of the caller) and cold (the
first ``record()`` of a new process, wall and CPU time, while the prices load elsewhere).

Run:
    .venv/bin/python bench/bench_capture.py [--pairs 2000] [--stream-pairs 400] [--chunks 100]
    BENCH_QUICK=1 bench/run bench/bench_capture.py     # a smoke run: small sizes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
from anthropic._base_client import AsyncAPIClient as AnthropicAsyncBase
from anthropic._base_client import SyncAPIClient as AnthropicSyncBase
from openai._base_client import AsyncAPIClient as OpenAIAsyncBase
from openai._base_client import SyncAPIClient as OpenAISyncBase

RECORDED = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "recorded"
MESSAGES: Any = [{"role": "user", "content": "hi"}]
JSON = {"content-type": "application/json"}
SSE = {"content-type": "text/event-stream"}
_clock = time.thread_time_ns

# The SDKs' own request methods, taken before instrument() hooks them: bare clients use these.
_BARE = {
    "openai": (OpenAISyncBase.request, OpenAIAsyncBase.request),
    "anthropic": (AnthropicSyncBase.request, AnthropicAsyncBase.request),
}


# -- recorded answers -----------------------------------------------------------------------


def _openai_stream(chunks: int) -> bytes:
    frames = [
        f
        for f in RECORDED.joinpath("openai_chat_stream_include_usage.sse")
        .read_bytes()
        .split(b"\n\n")
        if f.strip()
    ]
    # The recording streams a tool call: its second chunk (an argument delta) is repeated.
    usage = next(f for f in frames if b'"choices":[]' in f)
    return b"\n\n".join([frames[0], *([frames[1]] * (chunks - 2)), usage, b"data: [DONE]"]) + (
        b"\n\n"
    )


def _anthropic_stream(chunks: int) -> bytes:
    events = [
        e
        for e in RECORDED.joinpath("anthropic_sdk_basic_stream.sse").read_bytes().split(b"\n\n")
        if e.strip() and b"ping" not in e
    ]
    delta = next(e for e in events if b"content_block_delta" in e)
    head = [e for e in events if b"content_block_delta" not in e]
    # message_start, content_block_start, deltas, content_block_stop, message_delta, message_stop
    body = [*head[:2], *([delta] * (chunks - len(head))), *head[2:]]
    return b"\n\n".join(body) + b"\n\n"


def _handler(chunks: int) -> Callable[[Any], Any]:
    openai_chat = RECORDED.joinpath("openai_chat_prompt_cache_hit.json").read_bytes()
    anthropic_message = RECORDED.joinpath("anthropic_messages_cache_read.json").read_bytes()
    openai_stream = _openai_stream(chunks)
    anthropic_stream = _anthropic_stream(chunks)

    def handler(request: httpx2.Request) -> httpx2.Response:
        streamed = b'"stream":true' in request.content
        if request.url.path.endswith("/messages"):
            body, headers = (anthropic_stream, SSE) if streamed else (anthropic_message, JSON)
        else:
            body, headers = (openai_stream, SSE) if streamed else (openai_chat, JSON)
        return httpx2.Response(200, content=body, headers=headers)

    return handler


def _clients(sdk: str, asynchronous: bool, chunks: int) -> tuple[Any, Any]:
    """A bare and an instrumented client of one SDK, answered by the same replay."""
    cls: Any = {
        ("openai", False): openai.OpenAI,
        ("openai", True): openai.AsyncOpenAI,
        ("anthropic", False): anthropic.Anthropic,
        ("anthropic", True): anthropic.AsyncAnthropic,
    }[(sdk, asynchronous)]
    bare_cls = type(f"Bare{cls.__name__}", (cls,), {"request": _BARE[sdk][asynchronous]})
    handler = _handler(chunks)

    def make(client_cls: Any) -> Any:
        transport = httpx2.MockTransport(handler)
        http = (
            httpx2.AsyncClient(transport=transport)
            if asynchronous
            else httpx2.Client(transport=transport)
        )
        return client_cls(api_key="sk-bench", http_client=http, max_retries=0)

    return make(bare_cls), make(cls)


# -- one call, timed ----------------------------------------------------------------------


def _call(sdk: str, client: Any, stream: bool) -> Any:
    if sdk == "openai":
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=stream)
    return client.messages.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES, stream=stream
    )


def _sync_timer(sdk: str, client: Any, stream: bool) -> Callable[[], tuple[int, int]]:
    """Time one call: (CPU ns of the whole call, CPU ns of reading the stream's chunks)."""

    def run() -> tuple[int, int]:
        started = _clock()
        result = _call(sdk, client, stream)
        if not stream:
            return _clock() - started, 0
        reading = _clock()
        for _ in result:
            pass
        ended = _clock()
        return ended - started, ended - reading

    return run


def _async_timer(
    sdk: str, client: Any, stream: bool, loop: asyncio.AbstractEventLoop
) -> Callable[[], tuple[int, int]]:
    async def call() -> tuple[int, int]:
        started = _clock()
        result = await _call(sdk, client, stream)
        if not stream:
            return _clock() - started, 0
        reading = _clock()
        async for _ in result:
            pass
        ended = _clock()
        return ended - started, ended - reading

    def run() -> tuple[int, int]:
        awaited: Awaitable[tuple[int, int]] = call()
        return loop.run_until_complete(awaited)  # type: ignore[arg-type]

    return run


# -- statistics ---------------------------------------------------------------------------


@dataclass
class Estimate:
    """The median of paired differences and its 95% interval, in µs."""

    median: float
    low: float
    high: float
    pairs: int


def median_interval(diffs_ns: list[float], scale: float = 1.0) -> Estimate:
    """Median with a distribution-free 95% interval (order statistics of the sorted sample).

    The ranks are n/2 ± 0.98·√n (the normal approximation of Binomial(n, ½)).
    """
    values = sorted(d / scale / 1000 for d in diffs_ns)
    n = len(values)
    half = 0.98 * math.sqrt(n)
    low = max(0, math.floor(n / 2 - half))
    high = min(n - 1, math.ceil(n / 2 + half))
    return Estimate(statistics.median(values), values[low], values[high], n)


def abba(
    bare: Callable[[], tuple[int, int]],
    hooked: Callable[[], tuple[int, int]],
    pairs: int,
    flush: Callable[[], None],
) -> tuple[list[int], list[int], list[int]]:
    """Paired differences of whole calls and of chunk reading, and the bare calls' times."""
    calls: list[int] = []
    reads: list[int] = []
    base: list[int] = []
    for _ in range(4):  # warm both paths: imports, first-call caches
        bare()
        hooked()
    for round_ in range(pairs // 2):
        a1 = bare()
        b1 = hooked()
        b2 = hooked()
        a2 = bare()
        for a, b in ((a1, b1), (a2, b2)):
            calls.append(b[0] - a[0])
            reads.append(b[1] - a[1])
            base.append(a[0])
        if round_ % 100 == 99:
            flush()  # untimed: the writer's queue never grows past a few hundred events
    return calls, reads, base


# -- record() -----------------------------------------------------------------------------

_COLD = """
import json, os, sys, time
clock, cpu = time.perf_counter, time.thread_time
import llmledger
started, started_cpu = clock(), cpu()
from llmledger import record
imported, imported_cpu = clock(), cpu()
event = record(provider="openai", model="gpt-4o", input_tokens=100, output_tokens=20)
wall, used = clock() - imported, cpu() - imported_cpu
llmledger.flush(120)
stored = llmledger.get_ledger().store.recent(limit=1)[0]
print(json.dumps({"wall": wall, "cpu": used, "status": event.price_status,
                  "stored": stored.price_status, "import_wall": imported - started,
                  "import_cpu": imported_cpu - started_cpu}))
"""


def record_cold(runs: int) -> list[dict[str, Any]]:
    """The first record() of new processes; importing it (on first use of the name) apart.

    Byte code is cached, as it is for an installed package (in a folder of the run's
    own, warmed by one untimed process), so the figures are not the compiler's.
    """
    found = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": cache}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for run in range(runs + 1):
            with tempfile.TemporaryDirectory() as home:
                done = subprocess.run(
                    [sys.executable, "-c", _COLD],
                    env={**env, "LLMLEDGER_HOME": home},
                    capture_output=True,
                    text=True,
                    check=True,
                )
            if run:  # the first one wrote the byte code
                found.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return found


def record_warm(calls: int, rounds: int) -> tuple[float, list[float]]:
    """CPU µs per record() on the caller's thread, prices loaded: median over rounds."""
    import llmledger

    record = llmledger.record
    per_call = []
    for _ in range(rounds):
        started = _clock()
        for _ in range(calls):
            record(provider="openai", model="gpt-4o", input_tokens=1000, output_tokens=100)
        per_call.append((_clock() - started) / calls / 1000)
        llmledger.flush(120)  # untimed
    return statistics.median(per_call), per_call


# -- main ---------------------------------------------------------------------------------


def main() -> None:
    quick = bool(os.environ.get("BENCH_QUICK"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs",
        type=int,
        default=300 if quick else 3000,
        help="bare/instrumented pairs per non-streamed case",
    )
    parser.add_argument(
        "--stream-pairs", type=int, default=100 if quick else 600, help="pairs per streamed case"
    )
    parser.add_argument("--chunks", type=int, default=100, help="chunks per stream")
    parser.add_argument(
        "--cold-runs",
        type=int,
        default=3 if quick else 7,
        help="new processes for the first record()",
    )
    parser.add_argument(
        "--writer-process",
        action="store_true",
        help="store events from a writer process (the writer_process setting)",
    )
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="llmledger-bench-")
    os.environ["LLMLEDGER_HOME"] = home
    import llmledger

    ledger = llmledger.configure(home=home, writer_process=args.writer_process)
    assert ledger.prices.wait(300)
    llmledger.instrument()

    def flush() -> None:
        llmledger.flush(120)

    loop = asyncio.new_event_loop()
    rows = []
    for sdk in ("openai", "anthropic"):
        for asynchronous in (False, True):
            bare, hooked = _clients(sdk, asynchronous, args.chunks)
            for stream in (False, True):
                timers = [
                    _async_timer(sdk, client, stream, loop)
                    if asynchronous
                    else _sync_timer(sdk, client, stream)
                    for client in (bare, hooked)
                ]
                pairs = args.stream_pairs if stream else args.pairs
                calls, reads, base = abba(timers[0], timers[1], pairs, flush)
                name = f"{sdk} {'async' if asynchronous else 'sync'}"
                rows.append(
                    (
                        name,
                        stream,
                        statistics.median(base) / 1000,
                        median_interval(calls),
                        median_interval(reads, scale=args.chunks) if stream else None,
                    )
                )
                flush()
    loop.close()
    warm, warm_rounds = record_warm(2000 if not quick else 500, 9 if not quick else 5)
    stats = ledger.stats()
    cold = record_cold(args.cold_runs)

    load = (
        " ".join(Path("/proc/loadavg").read_text().split()[:3])
        if Path("/proc/loadavg").exists()
        else "unknown"
    )
    print(
        "Real SDK clients over `httpx2.MockTransport` replaying recorded responses; bare and "
        "instrumented calls interleaved ABBA in one process; CPU time of the calling thread; "
        "median of the paired differences with a 95% interval (order statistics). A real "
        "ledger (SQLite, "
        + ("a writer process: `writer_process`" if args.writer_process else "background writer")
        + f"). Streams of {args.chunks} chunks. "
        "Targets (DESIGN.md §8): ≤ 10 µs added per call, ≤ 1 µs per streamed chunk."
    )
    if quick:
        print()
        print(
            "**Smoke run (`BENCH_QUICK=1`, small samples), on a loaded machine: indicative "
            "only; the figures of record come from `bench/run bench/bench_capture.py` on an "
            "idle machine.**"
        )
    print()
    print(
        "| client | call | pairs | bare call µs (CPU) | added per call µs [95% interval] "
        "| added per chunk µs [95% interval] |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for name, stream, base_us, call, chunk in rows:
        chunk_text = f"{chunk.median:+.3f} [{chunk.low:+.3f}, {chunk.high:+.3f}]" if chunk else ""
        print(
            f"| {name} | {'stream' if stream else 'one response'} | {call.pairs:,} | "
            f"{base_us:,.0f} | {call.median:+.1f} [{call.low:+.1f}, {call.high:+.1f}] | "
            f"{chunk_text} |"
        )
    print()
    print("`record()` on the caller's thread (CPU µs per call):")
    print()
    print("| case | figure |")
    print("|---|---:|")
    print(
        f"| warm (prices loaded), median of {len(warm_rounds)} rounds | {warm:.1f} µs "
        f"(rounds {min(warm_rounds):.1f} to {max(warm_rounds):.1f}) |"
    )
    walls = [c["wall"] * 1000 for c in cold]
    cpus = [c["cpu"] * 1000 for c in cold]
    statuses = sorted({f"{c['status']} → stored {c['stored']}" for c in cold})
    print(
        f"| cold: first record() call of a new process, median of {len(cold)} | "
        f"{statistics.median(walls):.2f} ms wall, {statistics.median(cpus):.2f} ms CPU "
        f"(price status {', '.join(statuses)}) |"
    )
    print(
        "| cold: importing `llmledger.record` before it (`import llmledger` loads it on "
        f"first use) | {statistics.median(c['import_wall'] * 1000 for c in cold):.2f} ms wall, "
        f"{statistics.median(c['import_cpu'] * 1000 for c in cold):.2f} ms CPU |"
    )
    print()
    print(
        f"- writer: {stats['written']:,} written, {stats['dropped']} dropped, "
        f"{stats['failed']} failed; load average at the end: {load} "
        "(other work on the machine widens every interval)."
    )


if __name__ == "__main__":
    main()
