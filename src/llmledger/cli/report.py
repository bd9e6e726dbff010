"""``llmledger report``: totals, and a breakdown by one dimension."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import click

from llmledger.cli.common import echo_json, ledger_from, money, parse_time, print_table
from llmledger.errors import InvalidEventError

__all__ = ["COMMANDS", "DIMENSIONS", "parse_last"]

DIMENSIONS = ("provider", "model", "tenant", "user", "feature", "session", "operation", "status")
_LAST = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_last(text: str) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` as a time span.

    Raises:
        InvalidEventError: on any other text.
    """
    match = _LAST.match(text.strip())
    if not match:
        raise InvalidEventError(f"--last takes a span like 30m, 12h, 7d or 2w, got {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _metrics(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in DIMENSIONS}


@click.command("report")
@click.option("--by", type=click.Choice(DIMENSIONS), default="model", show_default=True,
              help="Dimension to break the totals down by.")
@click.option("--since", help="Start of the period (ISO 8601; UTC when no offset).")
@click.option("--until", help="End of the period, exclusive (ISO 8601).")
@click.option("--last", help="The period ending now: 30m, 12h, 7d, 2w.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def report_command(ctx: click.Context, by: str, since: str | None, until: str | None,
                   last: str | None, as_json: bool) -> None:
    """What was spent: totals, then a breakdown by one dimension.

    \b
    Examples:
      llmledger report
      llmledger report --by feature --last 7d
      llmledger report --by tenant --since 2025-01-01 --json
    """
    start = parse_time(since, "--since")
    end = parse_time(until, "--until")
    if last:
        if start:
            raise click.UsageError("give --since or --last, not both")
        start = (end or datetime.now(timezone.utc)) - parse_last(last)
    store = ledger_from(ctx).store
    total_rows = store.totals(since=start, until=end)
    total = _metrics(total_rows[0]) if total_rows else {}
    rows = store.totals(since=start, until=end, by=by)
    if as_json:
        echo_json({
            "query": {"by": [by], "since": start, "until": end},
            "currency": "USD",
            "total": total,
            "rows": rows,
        })
        return
    print_report(by, total, rows)


def print_report(by: str, total: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Render totals and a breakdown as tables."""
    calls = int(total.get("calls") or 0)
    if not calls:
        click.echo("no calls in this period")
        return
    cost: Decimal | None = total.get("cost")
    click.echo(
        f"{calls:,} calls, {int(total.get('input_tokens') or 0):,} input and "
        f"{int(total.get('output_tokens') or 0):,} output tokens, {money(cost, 4)}"
        + (f" ({total['unpriced_calls']} unpriced)" if total.get("unpriced_calls") else "")
    )
    table_rows = []
    for row in rows:
        row_cost = row.get("cost")
        share = f"{row_cost / cost:.1%}" if cost and row_cost is not None else ""
        table_rows.append((
            row.get(by) if row.get(by) is not None else "(none)",
            f"{int(row['calls']):,}",
            f"{int(row.get('errors') or 0):,}",
            f"{int(row.get('input_tokens') or 0):,}",
            f"{int(row.get('cache_read_tokens') or 0):,}",
            f"{int(row.get('output_tokens') or 0):,}",
            money(row_cost, 4) if row_cost is not None or not row.get("unpriced_calls") else "unpriced",
            share,
        ))
    print_table(f"by {by}", (by, "calls", "errors", "input", "cached", "output", "cost", "share"),
                table_rows, right=("calls", "errors", "input", "cached", "output", "cost", "share"))


COMMANDS = [report_command]
