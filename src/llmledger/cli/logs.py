"""``llmledger logs`` (recent events) and ``llmledger record`` (one event from the shell)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from llmledger.cli.common import (
    echo_json,
    ledger_from,
    money,
    parse_tags,
    print_table,
    settings_from,
)
from llmledger.core.events import OPERATIONS, STATUSES
from llmledger.runtime.recording import build_event, check_service_tier
from llmledger.wire.serialize import event_to_json

__all__ = ["COMMANDS"]


@click.command("logs")
@click.option(
    "-n",
    "--count",
    "count",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many events to show, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of events.")
@click.pass_context
def logs_command(ctx: click.Context, count: int, as_json: bool) -> None:
    """The most recent events, newest first.

    \b
    Examples:
      llmledger logs -n 5
      llmledger logs --json | jq '.[0].usage'
    """
    from llmledger.store.quick import recent_events

    # A SQLite ledger at the newest schema is read without loading SQLAlchemy.
    events = recent_events(settings_from(ctx).resolved_database_url, count)
    if events is None:
        events = ledger_from(ctx).store.recent(limit=count)
    if as_json:
        echo_json([event_to_json(e) for e in events])
        return
    rows = [
        (
            e.ts.strftime("%Y-%m-%d %H:%M:%S"),
            e.provider,
            e.model,
            e.status,
            e.tenant or "",
            e.user or "",
            e.feature or "",
            f"{e.usage.input_tokens:,}",
            f"{e.usage.output_tokens:,}",
            money(e.cost),
            e.price_status,
        )
        for e in events
    ]
    print_table(
        None,
        (
            "time (UTC)",
            "provider",
            "model",
            "status",
            "tenant",
            "user",
            "feature",
            "input",
            "output",
            "cost",
            "price",
        ),
        rows,
        right=("input", "output", "cost"),
    )


@click.command("record")
@click.option("--provider", required=True, help="Provider name (openai, anthropic, google, ...).")
@click.option("--model", required=True, help="Model as requested.")
@click.option("--input", "input_tokens", type=int, default=0, help="Input tokens, cached included.")
@click.option(
    "--output", "output_tokens", type=int, default=0, help="Output tokens, reasoning included."
)
@click.option(
    "--cache-read", "cache_read_tokens", type=int, default=0, help="Part of input read from cache."
)
@click.option(
    "--cache-write",
    "cache_write_tokens",
    type=int,
    default=0,
    help="Part of input written to cache.",
)
@click.option(
    "--reasoning", "reasoning_tokens", type=int, default=0, help="Part of output spent reasoning."
)
@click.option(
    "--operation",
    type=click.Choice(OPERATIONS),
    default="chat",
    show_default=True,
    help="Kind of call.",
)
@click.option(
    "--status",
    type=click.Choice(STATUSES),
    default="ok",
    show_default=True,
    help="Outcome of the call.",
)
@click.option(
    "--tier",
    "service_tier",
    help="Service tier the call ran on (standard, flex, priority, batch, ...); "
    "one no price knows for the model is refused.",
)
@click.option("--duration-ms", type=float, help="How long the call took.")
@click.option("--cost", help="Cost in USD, when known (otherwise priced from the catalog).")
@click.option(
    "--ts", help="Start time, ISO 8601 with an offset such as Z (default: now); for backfills."
)
@click.option("--tenant", help="Organisation or customer the call was for.")
@click.option("--user", help="User who caused the call.")
@click.option("--feature", help="Feature or workflow that made the call.")
@click.option("--session", help="Conversation or trace id.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the recorded event as JSON.")
@click.pass_context
def record_command(
    ctx: click.Context, /, tags: Sequence[str], as_json: bool, ts: str | None, **values: Any
) -> None:
    """Record one call from the shell.

    \b
    Example:
      llmledger record --provider openai --model gpt-4o --input 1200 --output 300 \\
          --feature summary --tag ticket=T-42
    """
    ledger = ledger_from(ctx)
    fields = {k: v for k, v in values.items() if v is not None}
    # The time goes as given: build_event refuses one without an offset or in the future.
    event = build_event(features=ledger.features, tags=parse_tags(tags), ts=ts, **fields)
    check_service_tier(ledger.pricer, event)
    event = ledger.prepare(event)
    ledger.store.write([event])
    if as_json:
        echo_json(event_to_json(event))
    else:
        click.echo(
            f"recorded {event.id}: {event.provider}/{event.model} "
            f"{event.usage.total_tokens:,} tokens, {money(event.cost, 9)}"
        )


COMMANDS = [logs_command, record_command]
