"""``llmledger delete``: remove events by filter, leaving tombstones."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from llmledger.cli.common import echo_json, ledger_from, money

__all__ = ["COMMANDS", "delete_command"]


@click.command("delete")
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="DIM=V[,V…]",
    help="Delete calls whose DIM is one of the values (DIM!=V keeps them; tag:KEY=V for "
    "tags; (none) means not set). Repeat to combine.",
)
@click.option("--since", help="Start of the range: ISO 8601 time or date (in --tz).")
@click.option("--until", help="End of the range, exclusive (ISO 8601).")
@click.option("--last", help="The span ending now: 30m, 12h, 7d.")
@click.option("--period", help="A calendar period in --tz: today, 2025-03, last-month, …")
@click.option("--tz", default="UTC", show_default=True, help="IANA zone of dates and periods.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def delete_command(
    ctx: click.Context,
    where: tuple[str, ...],
    since: str | None,
    until: str | None,
    last: str | None,
    period: str | None,
    tz: str,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Delete events by filter (test data, a tenant that left), with a dry run.

    Each deleted id is kept as a tombstone, so replaying a journal, a spool or
    an import never brings the events back; the rollups are rebuilt from the
    remaining events in the same transaction. A range or a filter is required.

    \b
    Examples:
      llmledger delete --where tag:environment=test --dry-run
      llmledger delete --where tenant=acme --since 2025-01-01 --until 2025-02-01 --yes
    """
    from llmledger.query import build_query

    if not (where or since or until or last or period):
        raise click.UsageError("give a range or a filter (--where, --since, --until, --last)")
    now = datetime.now(UTC)
    query = build_query(
        now=now, where=where, since=since, until=until, last=last, period=period, tz=tz
    )
    store = ledger_from(ctx).store
    if not dry_run and not yes:
        preview = store.delete_events(query, now=now, dry_run=True)
        if preview.count:
            click.confirm(f"delete {preview.count} events ({money(preview.cost, 4)})?", abort=True)
    result = store.delete_events(query, now=now, dry_run=dry_run)
    if as_json:
        echo_json(result.to_dict())
        return
    verb = "would delete" if dry_run else "deleted"
    span = (
        f" from {result.first.isoformat()} to {result.last.isoformat()}"
        if result.first and result.last
        else ""
    )
    click.echo(f"{verb} {result.count} events ({money(result.cost, 4)}){span}")


COMMANDS = [delete_command]
