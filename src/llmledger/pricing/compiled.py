"""The fast path: a price row compiled once into plain Decimal arithmetic.

A :class:`CompiledPrice` turns a :class:`~llmledger.pricing.model.Price` into a
short list of steps, one per priced bucket, ordered most specific first.  Each
step reads its bucket, subtracts what more specific priced buckets already
claimed (the "leaf" count), and multiplies by a per-token rate.  This is the same
decomposition genai-prices applies to its unit lattice, restricted to the buckets
llmledger counts, so the two agree to the last digit (a property test holds them
to it) while a call costs a few microseconds instead of hundreds.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal

from llmledger.core.usage import INPUT_PARTS, OUTPUT_PARTS, Usage
from llmledger.pricing.model import NANO_USD, REQUESTS, Price

__all__ = [
    "BUCKET_PARENTS",
    "OWN_RATE_BUCKETS",
    "CompiledPrice",
    "bucket_ancestors",
    "usage_problem",
]

_MILLION = Decimal(1_000_000)
_ZERO = Decimal(0)
_IMAGE_OUT = "output_image_tokens"

#: Each part bucket and the total it is part of (cache-write TTL splits are
#: parts of ``cache_write_tokens``, itself part of ``input_tokens``).
BUCKET_PARENTS: dict[str, str] = {
    **{part: "input_tokens" for part in INPUT_PARTS},
    **{part: "output_tokens" for part in OUTPUT_PARTS},
    "cache_write_5m_tokens": "cache_write_tokens",
    "cache_write_1h_tokens": "cache_write_tokens",
}


#: Parts some provider bills at a rate of their own (cache, audio, image, tool-use
#: prompt, cache writes by how long they live): paid at their total's rate when a
#: price has no rate for them, which can be wrong, so such a cost is incomplete.
#: Reasoning tokens are output tokens at every provider, so they are not here.
OWN_RATE_BUCKETS: tuple[str, ...] = (
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "input_audio_tokens",
    "input_image_tokens",
    "output_audio_tokens",
    "tool_use_prompt_tokens",
)
#: A part whose rate, when a price names none, is rightly its total's: a cache
#: write rate without a lifetime is the five-minute one (Anthropic's, the catalog's).
_RATED_BY_TOTAL = frozenset({"cache_write_5m_tokens"})


def bucket_ancestors(bucket: str) -> tuple[str, ...]:
    """Every total a bucket is part of, nearest first.

    Example:
        >>> bucket_ancestors("cache_write_1h_tokens")
        ('cache_write_tokens', 'input_tokens')
    """
    found: list[str] = []
    while bucket in BUCKET_PARENTS:
        bucket = BUCKET_PARENTS[bucket]
        found.append(bucket)
    return tuple(found)


# One step: bucket, indices of earlier steps it contains, rate per token, and
# tiers as (above, rate per token), highest threshold first.
_Step = tuple[str, tuple[int, ...], Decimal, tuple[tuple[int, Decimal], ...]]


class CompiledPrice:
    """A price row ready to price usages quickly.

    Example:
        >>> p = Price(provider="openai", model="gpt-4o", rates={
        ...     "input_tokens": Decimal("2.5"), "cache_read_tokens": Decimal("1.25"),
        ...     "output_tokens": Decimal("10")})
        >>> total, parts = CompiledPrice(p).compute(
        ...     Usage(input_tokens=1000, cache_read_tokens=400, output_tokens=100))
        >>> total
        Decimal('0.003000000')
        >>> sorted(parts)
        ['cache_read_tokens', 'input_tokens', 'output_tokens']
    """

    __slots__ = ("_fees", "_per_request", "_steps", "_unrated", "_unrated_set", "price")

    def __init__(self, price: Price) -> None:
        self.price = price
        priced = sorted(
            (b for b in price.rates if price.rates[b] is not None),
            key=lambda b: (-len(bucket_ancestors(b)), b),
        )
        steps: list[_Step] = []
        for bucket in priced:
            inside = tuple(
                index
                for index, (other, *_rest) in enumerate(steps)
                if bucket in bucket_ancestors(other)
            )
            tiers = tuple(
                (tier.above, tier.usd_per_mtok / _MILLION)
                for tier in sorted(price.tiers.get(bucket, ()), key=lambda t: t.above, reverse=True)
            )
            steps.append((bucket, inside, price.rates[bucket] / _MILLION, tiers))
        self._steps: tuple[_Step, ...] = tuple(steps)
        self._per_request = price.per_request
        self._fees = dict(price.fees)
        self._unrated = tuple(
            bucket
            for bucket in OWN_RATE_BUCKETS
            if bucket not in price.rates
            and not (bucket in _RATED_BY_TOTAL and BUCKET_PARENTS[bucket] in price.rates)
        )
        self._unrated_set = frozenset(self._unrated)

    @property
    def counts_anything(self) -> bool:
        """False when the row prices only units llmledger does not count."""
        return (
            bool(self._steps)
            or self._per_request is not None
            or bool(self._fees)
            or self.price.is_free
        )

    def unpriced_units(
        self, usage: Usage, fee_counts: Mapping[str, int] | None = None
    ) -> list[str]:
        """The billed units this price has no rate for, as ``name=count``.

        Example:
            >>> p = Price(provider="openai", model="m", rates={
            ...     "input_tokens": Decimal("2.5"), "output_tokens": Decimal("10")})
            >>> CompiledPrice(p).unpriced_units(
            ...     Usage(input_tokens=900, input_audio_tokens=800), {"web_searches": 2})
            ['input_audio_tokens=800', 'web_searches=2']
        """
        if not fee_counts and self._unrated_set.isdisjoint(usage.__dict__):
            # A usage holds the counts it was given in its __dict__; a bucket it
            # leaves out is the class's 0.
            return []
        found: list[str] = []
        for bucket in self._unrated:
            count = getattr(usage, bucket)
            if count:
                found.append(f"{bucket}={count}")
        if fee_counts:
            found += [
                f"{fee}={count}"
                for fee, count in sorted(fee_counts.items())
                if count and fee not in self._fees
            ]
        return found

    def compute(
        self, usage: Usage, fee_counts: Mapping[str, int] | None = None
    ) -> tuple[Decimal, dict[str, Decimal]] | None:
        """Cost and per-bucket parts, each rounded to nano-USD; ``None`` when a
        priced bucket's parts exceed it (the usage breaks its invariants).

        Per-use fees the price has a rate for are charged per count (a part named
        after the fee).  The total is summed exactly and rounded once, so it
        equals what genai-prices computes, rounded the same way.
        """
        leaves: list[int] = []
        parts: dict[str, Decimal] = {}
        total = _ZERO
        input_tokens = usage.input_tokens
        # Output image tokens are inside output_tokens; rated apart, they leave it.
        images = 0
        if fee_counts and _IMAGE_OUT in self._fees:
            images = fee_counts.get(_IMAGE_OUT, 0)
        for bucket, inside, rate, tiers in self._steps:
            count: int = getattr(usage, bucket)
            for index in inside:
                count -= leaves[index]
            if bucket == "output_tokens":
                count -= images
            if count < 0:
                return None
            leaves.append(count)
            if count:
                for above, tier_rate in tiers:
                    if input_tokens > above:
                        rate = tier_rate
                        break
                amount = rate * count
                total += amount
                parts[bucket] = amount.quantize(NANO_USD, ROUND_HALF_EVEN)
        if self._per_request is not None:
            total += self._per_request
            parts[REQUESTS] = self._per_request.quantize(NANO_USD, ROUND_HALF_EVEN)
        if fee_counts:
            for fee, uses in fee_counts.items():
                fee_rate = self._fees.get(fee)
                if fee_rate is not None and uses:
                    amount = fee_rate * uses
                    total += amount
                    parts[fee] = amount.quantize(NANO_USD, ROUND_HALF_EVEN)
        return total.quantize(NANO_USD, ROUND_HALF_EVEN), parts


def usage_problem(usage: Usage) -> str | None:
    """The first broken usage invariant, or ``None``; cheap enough for every call.

    Example:
        >>> usage_problem(Usage(input_tokens=10, cache_read_tokens=11))
        'cache_read_tokens + cache_write_tokens (11 + 0) exceed input_tokens (10)'
        >>> usage_problem(Usage(input_tokens=10)) is None
        True
    """
    # Usage.problems() answers a sound usage in one expression: no second copy here.
    found = usage.problems()
    return found[0] if found else None
