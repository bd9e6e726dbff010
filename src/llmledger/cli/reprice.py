"""``llmledger reprice``: price stored events again from the prices in force at their time."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from llmledger.cli.common import echo_json, ledger_from, money, print_table
from llmledger.core.errors import ConfigError
from llmledger.query import build_query
from llmledger.runtime.reprice import DEFAULT_BATCH, RepriceSummary, reprice

__all__ = ["COMMANDS", "reprice_command"]


def _print_summary(summary: RepriceSummary) -> None:
    head = "Dry run: nothing changed." if summary.dry_run else "Repriced."
    if summary.resumed:
        head += " Resumed an interrupted run of the same range."
    click.echo(f"{head} Range: {summary.spec}.")
    rows = [
        (
            row.provider,
            row.model,
            f"{row.calls:,}",
            f"{row.changed:,}",
            money(row.before),
            money(row.after),
            money(row.difference),
            f"{row.newly_priced:,}",
            f"{row.unpriced:,}",
            f"{row.incomplete:,}",
            f"{row.kept:,}",
        )
        for row in summary.rows
    ]
    total = summary.total
    rows.append(
        (
            "total",
            "",
            f"{total.calls:,}",
            f"{total.changed:,}",
            money(total.before),
            money(total.after),
            money(total.difference),
            f"{total.newly_priced:,}",
            f"{total.unpriced:,}",
            f"{total.incomplete:,}",
            f"{total.kept:,}",
        )
    )
    columns = (
        "provider",
        "model",
        "calls",
        "changed",
        "before",
        "after",
        "difference",
        "newly priced",
        "unpriced",
        "incomplete",
        "kept",
    )
    print_table(None, columns, rows, right=columns[2:])


@click.command("reprice")
@click.option("--since", help="Start of the range: ISO 8601 time or date (UTC without offset).")
@click.option("--until", help="End of the range, exclusive (ISO 8601).")
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="DIM=V[,V…]",
    help="Only calls whose DIM is one of the values (DIM!=V drops them; tag:KEY=V for "
    "tags), as in 'llmledger report'. Repeat to combine.",
)
@click.option(
    "--dry-run", is_flag=True, help="Show the difference per provider and model; change nothing."
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=DEFAULT_BATCH,
    show_default=True,
    help="Events per batch; each batch is one transaction.",
)
@click.option(
    "--restart",
    is_flag=True,
    help="Start over instead of resuming an interrupted run of the same range and filters.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def reprice_command(
    ctx: click.Context,
    since: str | None,
    until: str | None,
    where: tuple[str, ...],
    dry_run: bool,
    batch_size: int,
    restart: bool,
    as_json: bool,
) -> None:
    """Price stored events again from the prices in force at each event's time.

    Run it after changing a price file, adding a price to the database or
    upgrading llmledger's catalog. Costs the caller gave or the provider
    reported are kept. Events and rollups are updated batch by batch; a run
    that is stopped resumes where it stopped when started again with the same
    range and filters, and running it twice changes nothing the second time.

    \b
    Examples:
      llmledger reprice --dry-run                          what would change
      llmledger reprice --since 2025-06-01 --where provider=openai
    """
    ledger = ledger_from(ctx)
    if ledger.settings.url:
        raise ConfigError(
            "this machine sends its events to a service (url is set): reprice there "
            "with POST /v1/admin/reprice"
        )
    now = datetime.now(UTC)
    query = build_query(now=now, since=since, until=until, tz="UTC", where=where)
    summary = reprice(
        ledger.store,
        ledger.pricer,
        query,
        now=now,
        dry_run=dry_run,
        batch_size=batch_size,
        restart=restart,
        clock=lambda: datetime.now(UTC),
    )
    if as_json:
        echo_json(summary.to_dict())
    else:
        _print_summary(summary)


COMMANDS = [reprice_command]
