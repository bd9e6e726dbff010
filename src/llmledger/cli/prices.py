"""``llmledger prices``: the prices in force, one model's price, stale and unknown prices,
and refreshing the catalog from the network."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from llmledger.cli.common import echo_json, ledger_from, parse_time, print_table

if TYPE_CHECKING:
    from llmledger.pricing import Price

__all__ = ["COMMANDS"]

# Columns of the price table: the buckets most prices name, with short headings.
_COLUMNS = (
    ("input_tokens", "input"),
    ("cache_read_tokens", "cache read"),
    ("cache_write_tokens", "cache write"),
    ("output_tokens", "output"),
)


def price_json(price: Price) -> dict[str, Any]:
    """A price row as JSON-ready data (rates in USD per million tokens, as strings)."""
    return {
        "provider": price.provider,
        "model": price.model,
        "service_tier": price.service_tier,
        "valid_from": price.valid_from.isoformat() if price.valid_from else None,
        "source": price.source,
        "ref": price.ref,
        "checked": price.checked.isoformat() if price.checked else None,
        "currency": "USD",
        "unit": "per million tokens",
        "rates": {bucket: format(rate, "f") for bucket, rate in price.rates.items()},
        "tiers": {
            bucket: [{"above": t.above, "rate": format(t.usd_per_mtok, "f")} for t in tiers]
            for bucket, tiers in price.tiers.items()
        },
        "per_request": format(price.per_request, "f") if price.per_request is not None else None,
        "fees": {fee: format(rate, "f") for fee, rate in price.fees.items()},
        "discount": format(price.discount, "f") if price.discount is not None else None,
        "uncounted_units": list(price.uncounted_units),
        "filled": list(price.filled),
        "filled_ref": price.filled_ref,
        "source_url": price.source_url,
    }


def _rate(price: Price, bucket: str) -> str:
    rate = price.rates.get(bucket)
    if rate is None:
        return ""
    text = f"${rate.normalize():f}"
    return text + ("+" if price.tiers.get(bucket) else "")


@click.group("prices")
def prices_group() -> None:
    """Prices: the bundled catalog with your own price files on top."""


@prices_group.command("list")
@click.option("--provider", help="Only this provider's models.")
@click.option("--at", help="Prices in force at this ISO 8601 time (default: now).")
@click.option("--search", help="Only models whose name contains this text.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def prices_list(
    ctx: click.Context, provider: str | None, at: str | None, search: str | None, as_json: bool
) -> None:
    """Every price in force, USD per million tokens ("+" marks long-context tiers).

    \b
    Examples:
      llmledger prices list --provider anthropic
      llmledger prices list --search gpt-4o --at 2024-06-01
    """
    when = parse_time(at, "--at") or datetime.now(UTC)
    pricer = ledger_from(ctx).pricer
    rows = pricer.list_prices(provider, when)
    if search:
        rows = [p for p in rows if search.lower() in p.model.lower()]
    if as_json:
        echo_json([price_json(p) for p in rows])
        return
    print_table(
        f"prices in force at {when:%Y-%m-%d %H:%M} UTC (USD per million tokens)"
        + (f"; {pricer.catalog.name}" if pricer.catalog is not None else ""),
        ("provider", "model", *(title for _, title in _COLUMNS), "source"),
        [
            (p.provider, p.model, *(_rate(p, bucket) for bucket, _ in _COLUMNS), p.source)
            for p in rows
        ],
        right=tuple(title for _, title in _COLUMNS),
    )


@prices_group.command("show")
@click.argument("model")
@click.option("--provider", help="Provider (guessed from the model name when omitted).")
@click.option("--at", help="The price in force at this ISO 8601 time (default: now).")
@click.option("--tier", "service_tier", help="Service tier (e.g. flex, priority, batch).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def prices_show(
    ctx: click.Context,
    model: str,
    provider: str | None,
    at: str | None,
    service_tier: str | None,
    as_json: bool,
) -> None:
    """The price of one model, every bucket, and where it comes from.

    \b
    Example:
      llmledger prices show claude-sonnet-4-5 --at 2025-10-01
    """
    when = parse_time(at, "--at") or datetime.now(UTC)
    price = ledger_from(ctx).pricer.lookup(provider, model, when, service_tier=service_tier)
    if as_json:
        echo_json(price_json(price))
        return
    rows: list[tuple[str, str]] = []
    for bucket, rate in price.rates.items():
        rows.append((bucket, f"${rate.normalize():f}"))
        for tier in price.tiers.get(bucket, ()):
            rows.append(
                (f"  above {tier.above:,} input tokens", f"${tier.usd_per_mtok.normalize():f}")
            )
    if price.per_request is not None:
        rows.append(("per request", f"${price.per_request.normalize():f}"))
    for fee, rate in price.fees.items():
        rows.append((f"per use: {fee}", f"${rate.normalize():f}"))
    print_table(
        f"{price.provider} / {price.model} (USD per million tokens)",
        ("bucket", "rate"),
        rows,
        right=("rate",),
    )
    click.echo(f"source: {price.source} ({price.ref})")
    if price.valid_from:
        click.echo(f"in force since: {price.valid_from.isoformat()}")
    if price.checked:
        click.echo(f"checked: {price.checked.isoformat()}")
    if price.uncounted_units:
        click.echo(f"also billed, not counted by llmledger: {', '.join(price.uncounted_units)}")
    if price.filled:
        click.echo(f"filled from {price.filled_ref}: {', '.join(price.filled)}")
    if price.source_url:
        click.echo(f"read from: {price.source_url}")


@prices_group.command("stale")
@click.option(
    "--days",
    type=click.IntRange(min=0),
    default=90,
    show_default=True,
    help="A price not checked for this many days is stale.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def prices_stale(ctx: click.Context, days: int, as_json: bool) -> None:
    """Price rows (yours, the service's, llmledger's supplementary ones) not checked
    against the provider's page for a while."""
    before = date.today() - timedelta(days=days)
    rows = ledger_from(ctx).pricer.stale(before)
    if as_json:
        echo_json([price_json(p) for p in rows])
        return
    if not rows:
        click.echo(f"no price row unchecked since {before.isoformat()}")
        return
    print_table(
        f"not checked since {before.isoformat()}",
        ("provider", "model", "checked", "ref"),
        [
            (p.provider, p.model, p.checked.isoformat() if p.checked else "never", p.ref)
            for p in rows
        ],
    )


@prices_group.command("refresh")
@click.option("--url", help="Fetch from this URL (default: the price_catalog_url setting).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=600),
    help="Seconds the fetch may take (default: the price_catalog_timeout setting).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def prices_refresh(
    ctx: click.Context, url: str | None, timeout: float | None, as_json: bool
) -> None:
    """Fetch the price catalog from the network now and price with it from then on.

    The genai-prices data document is fetched, checked and kept in the ledger
    database; every process and service instance over that database prices with
    it instead of the bundled catalog. A document that cannot be fetched or read
    is refused and the catalog in force stays (exit status 1).

    \b
    Examples:
      llmledger prices refresh
      llmledger prices refresh --url https://prices.example.com/data.json
    """
    from llmledger.monitor import refresh_catalog

    ledger = ledger_from(ctx)
    settings = ledger.settings
    result = refresh_catalog(
        ledger.store,
        ledger.pricer.catalog,
        url=url or settings.price_catalog_url,
        timeout=timeout or settings.price_catalog_timeout,
        now=datetime.now(UTC),
    )
    if as_json:
        echo_json(
            {
                "refreshed": result.ok,
                "url": result.url,
                "at": result.at.isoformat(),
                "error": result.error,
                "stored": result.stored,
                "catalog": result.catalog.name if result.catalog is not None else None,
                "added": list(result.changes.added),
                "changed": list(result.changes.changed),
                "removed": list(result.changes.removed),
            }
        )
    else:
        for line in result.lines():
            click.echo(line)
    if not result.ok:
        raise SystemExit(1)


@prices_group.command("unpriced")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def prices_unpriced(ctx: click.Context, as_json: bool) -> None:
    """Models seen without a price, or priced without a rate for some billed unit.

    ``unpriced`` calls have no cost; ``incomplete`` ones were priced from the rates
    there were (each event's incomplete_reason names what was left out). Add the
    missing prices to a price file.
    """
    rows = ledger_from(ctx).store.price_gaps()
    if as_json:
        echo_json([{"provider": p, "model": m, "price": s, "calls": n} for p, m, s, n in rows])
        return
    if not rows:
        click.echo("every recorded call is priced")
        return
    print_table(
        "calls without a price or with an incomplete one",
        ("provider", "model", "price", "calls"),
        [(p, m, s, f"{n:,}") for p, m, s, n in rows],
        right=("calls",),
    )


COMMANDS = [prices_group]
