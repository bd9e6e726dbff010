"""Micro-benchmark: llmledger's compiled pricing fast path against genai_prices.calc_price.

Run: .venv/bin/python bench/bench_pricing.py [--calls N]

Both price the same mix of calls (several providers and models, cache reads and
writes, a long-context tier, a time-of-day priced model, a service tier) at the
same timestamps; the figure printed is microseconds per call.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import genai_prices

from llmledger.core.usage import BUCKETS, Usage
from llmledger.pricing import PriceResolver, to_nano
from llmledger.pricing.catalog import CATALOG_USAGE_KEYS

CALLS: list[tuple[str, str, str, str | None, Usage]] = [
    # (llmledger provider, genai-prices provider id, model, service tier, usage)
    (
        "openai",
        "openai",
        "gpt-4o-2024-08-06",
        None,
        Usage(input_tokens=4020, cache_read_tokens=4012, output_tokens=12),
    ),
    (
        "openai",
        "openai",
        "gpt-5-mini",
        "flex",
        Usage(input_tokens=1200, output_tokens=900, reasoning_tokens=640),
    ),
    (
        "anthropic",
        "anthropic",
        "claude-sonnet-4-5-20250929",
        None,
        Usage(
            input_tokens=250_000,
            cache_read_tokens=100_000,
            cache_write_tokens=20_000,
            cache_write_1h_tokens=5_000,
            output_tokens=800,
        ),
    ),
    (
        "bedrock",
        "aws",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        None,
        Usage(input_tokens=3000, output_tokens=200),
    ),
    (
        "google",
        "google",
        "gemini-2.5-flash",
        None,
        Usage(input_tokens=5000, cache_read_tokens=1000, input_audio_tokens=800, output_tokens=300),
    ),
    (
        "deepseek",
        "deepseek",
        "deepseek-chat",
        None,
        Usage(input_tokens=900, cache_read_tokens=100, output_tokens=90),
    ),
]


def _timed(label: str, n: int, call: Callable[[int], object]) -> float:
    for i in range(min(n, 1000)):  # warm caches on both sides
        call(i)
    start = time.perf_counter()
    for i in range(n):
        call(i)
    micros = (time.perf_counter() - start) / n * 1e6
    print(f"{label:<40} {micros:9.2f} µs/call")
    return micros


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000, help="calls timed on the fast path")
    args = parser.parse_args()
    resolver = PriceResolver()
    base = datetime(2025, 11, 3, tzinfo=UTC)
    times = [base + timedelta(minutes=37 * i) for i in range(64)]
    # genai-prices wants the cached-audio count spelled out once audio and cache
    # reads are both reported; llmledger has no such bucket, so it is zero.
    genai_usages = [
        genai_prices.Usage(
            cache_audio_read_tokens=0,
            **{CATALOG_USAGE_KEYS[b]: getattr(c[4], b) for b in BUCKETS},
        )
        for c in CALLS
    ]

    def fast(i: int) -> object:
        provider, _, model, tier, usage = CALLS[i % len(CALLS)]
        return resolver.price(provider, model, usage, times[i % 64], service_tier=tier)

    def reference(i: int) -> object:
        _, provider_id, model, tier, _ = CALLS[i % len(CALLS)]
        context = {"service_tier": tier} if tier else None
        return genai_prices.calc_price(
            genai_usages[i % len(CALLS)],
            model,
            provider_id=provider_id,
            genai_request_timestamp=times[i % 64],
            price_context=context,
        )

    total = Decimal(0)
    apart = []
    for i in range(len(CALLS)):
        result: Any = fast(i)
        ours = result.cost
        theirs = to_nano(reference(i).total_price)  # type: ignore[attr-defined]
        if result.source == "supplement":
            # A rate the catalog lacks, from llmledger's supplementary rows
            # (docs/accuracy.md): genai-prices bills it differently, on purpose.
            apart.append(f"{CALLS[i][2]} {CALLS[i][3] or ''}: ${ours} (genai-prices ${theirs})")
        else:
            assert ours == theirs, (CALLS[i][2], ours, theirs)
        total += ours
    print(
        f"mix of {len(CALLS)} calls agrees with genai-prices on {len(CALLS) - len(apart)}; "
        f"sample total ${total}"
    )
    for line in apart:
        print(f"  priced by a supplementary row instead: {line}")
    fast_us = _timed("llmledger PriceResolver.price()", args.calls, fast)
    slow_us = _timed("genai_prices.calc_price()", max(args.calls // 20, 1000), reference)
    print(f"speed-up: {slow_us / fast_us:.0f}x; fast path = {1e6 / fast_us:,.0f} calls/s")


if __name__ == "__main__":
    main()
