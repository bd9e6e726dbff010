"""``llmledger cost``: what a saved response, a stream transcript or a set of counts cost."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, BinaryIO, TypeVar

import click

from llmledger.cli.common import echo_json, ledger_from, money, parse_time, print_table
from llmledger.core.billing import UsagePart
from llmledger.core.errors import InvalidEventError, InvalidUsageError, UnknownModelError
from llmledger.core.events import UsageEvent
from llmledger.core.usage import BUCKETS, INPUT_PARTS, OUTPUT_PARTS, Usage
from llmledger.pricing import PriceResolver, PriceResult
from llmledger.wire.serialize import decimal_text

__all__ = ["COMMANDS"]

F = TypeVar("F", bound=Callable[..., Any])

# One option per bucket, named after it: --input, --cache-read, --cache-write-5m, ...
_COUNT_OPTIONS = {bucket.removesuffix("_tokens"): bucket for bucket in BUCKETS}


def _count_options(command: F) -> F:
    for name, bucket in reversed(_COUNT_OPTIONS.items()):
        flag = "--" + name.replace("_", "-")
        help_text = f"{bucket} (with --model, instead of FILE)."
        command = click.option(flag, name, type=int, default=None, help=help_text)(command)
    return command


def _price(
    pricer: PriceResolver,
    provider: str | None,
    model: str,
    usage: Usage,
    when: datetime,
    service_tier: str | None,
    reported_cost: Decimal | None,
) -> PriceResult:
    """Price the usage; without a provider, the one the model name points to."""
    if provider is None:
        try:
            provider = pricer.lookup(None, model, when, service_tier=service_tier).provider
        except UnknownModelError as exc:
            return PriceResult(
                cost=None, breakdown={}, source=None, ref=None, unpriced_reason=str(exc)
            )
    return pricer.price(
        provider, model, usage, when, service_tier=service_tier, reported_cost=reported_cost
    )


@click.command("cost")
@click.argument("file", type=click.File("rb"), required=False)
@click.option("--provider", help="Provider of the response (detected from its shape when omitted).")
@click.option("--model", help="Model to price (default: the one the response names).")
@click.option("--at", "at", help="Price as of this ISO 8601 time (default: now).")
@click.option("--tier", "service_tier", help="Service tier to price (e.g. flex, priority).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_count_options
@click.pass_context
def cost_command(
    ctx: click.Context,
    /,
    file: BinaryIO | None,
    provider: str | None,
    model: str | None,
    at: str | None,
    service_tier: str | None,
    as_json: bool,
    **counts: int | None,
) -> None:
    """What a call cost, bucket by bucket.

    FILE is a saved response body (JSON) or a whole stream transcript (SSE text, or
    Bedrock event-stream bytes); use - for standard input. Without FILE, give
    --model and the counts (--input, --output, --cache-read, ...).

    \b
    Examples:
      llmledger cost response.json
      llmledger cost stream.sse --provider anthropic --json
      llmledger cost --model gpt-4o --input 12000 --output 800 --cache-read 8000
    """
    from llmledger.normalize import read_response, read_stream

    given = {_COUNT_OPTIONS[k]: v for k, v in counts.items() if v is not None}
    when = parse_time(at, "--at") or datetime.now(UTC)
    reported_cost = None
    usage_source = "manual"
    parts: tuple[UsagePart, ...] = ()
    fee_counts: dict[str, int] = {}
    if file is not None:
        if given:
            raise InvalidEventError("give FILE or token counts, not both")
        data = file.read()
        if data.lstrip()[:1] in (b"{", b"["):
            reading = read_response(data, provider=provider)
        else:
            reading = read_stream(data, provider=provider)
        provider = reading.provider
        model = model or reading.response_model
        usage = reading.usage
        reported_cost = reading.reported_cost
        service_tier = service_tier or reading.service_tier
        usage_source = reading.usage_source
        parts = reading.usage_parts
        fee_counts = {str(fee): uses for fee, uses in reading.fee_counts.items()}
        warnings = list(reading.warnings)
        if not model:
            raise InvalidEventError("the response names no model; pass --model")
    else:
        if not model:
            raise click.UsageError("give FILE, or --model with token counts")
        usage = Usage(**given)
        problems = usage.problems()
        if problems:
            raise InvalidUsageError("; ".join(problems))
        warnings = []
    ledger = ledger_from(ctx)
    if provider is not None and (parts or fee_counts):
        # Priced as the ledger prices the call: each step at its model, fees per use.
        call = UsageEvent(
            provider=provider,
            model=model,
            ts=when,
            usage=usage,
            service_tier=service_tier,
            usage_parts=parts,
            fee_counts=fee_counts,
        )
        result = ledger.pricer.event_price(call, reported_cost=reported_cost)
    else:
        result = _price(ledger.pricer, provider, model, usage, when, service_tier, reported_cost)
    if provider is None and result.price is not None:
        provider = result.price.provider
    usage_dict: dict[str, Any] = usage.as_dict()
    usage_dict["total_tokens"] = usage.total_tokens
    if as_json:
        echo_json(
            {
                "provider": provider,
                "model": model,
                "at": when,
                "usage": usage_dict,
                "usage_source": usage_source,
                "cost": {
                    "total": decimal_text(result.cost),
                    "currency": "USD",
                    "source": result.source,
                    "status": result.status,
                    "reason": result.unpriced_reason or result.incomplete_reason,
                    "price_ref": result.ref,
                    "breakdown": {k: decimal_text(v) for k, v in (result.breakdown or {}).items()},
                },
                "warnings": warnings,
            }
        )
        return
    breakdown = result.breakdown or {}
    own = usage_dict
    if any(part.model for part in parts):
        # The bucket rows are the call's own model's share; other models' follow.
        own = sum((p.usage for p in parts if not p.model), Usage()).as_dict()
    rows = []
    for bucket, count in own.items():
        if not count and bucket not in ("input_tokens", "output_tokens"):
            continue
        billed = count
        # A total's own rate applies to what its separately priced parts leave over.
        if bucket in ("input_tokens", "output_tokens"):
            bucket_parts = INPUT_PARTS if bucket == "input_tokens" else OUTPUT_PARTS
            billed = count - sum(own[p] for p in bucket_parts if p in breakdown)
        part = breakdown.get(bucket)
        rows.append(
            (
                bucket,
                f"{count:,}",
                f"{billed:,}" if part is not None else "",
                "" if part is None else money(part, 9),
            )
        )
    if "requests" in breakdown:
        rows.append(("per request", "", "1", money(breakdown["requests"], 9)))
    for name, count in fee_counts.items():
        if count:
            part = breakdown.get(name)
            shown = "no rate" if part is None else money(part, 9)
            rows.append((name, f"{count:,}", "" if part is None else f"{count:,}", shown))
    # Parts of the call priced at another model (an advisor step) name that model.
    rows += [(key, "", "", money(part, 9)) for key, part in breakdown.items() if "@" in key]
    print_table(
        f"{provider or '?'} / {model}",
        ("bucket", "tokens", "billed at its rate", "cost"),
        rows,
        right=("tokens", "billed at its rate", "cost"),
    )
    click.echo(
        f"total: {money(result.cost, 9)}"
        + (
            f"  ({result.source}: {result.ref})"
            if result.cost is not None
            else f"  ({result.unpriced_reason})"
        )
    )
    if result.incomplete_reason:
        click.echo(f"incomplete: {result.incomplete_reason}")
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)


COMMANDS = [cost_command]
