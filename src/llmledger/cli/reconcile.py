"""``llmledger reconcile``: the provider's bill beside the ledger, day by model."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import cast

import click

from llmledger.cli.common import echo_json, ledger_from, print_table
from llmledger.core.errors import ConfigError
from llmledger.query import build_query
from llmledger.reconcile.compare import compare, ledger_rows
from llmledger.reconcile.providers import (
    DEFAULT_KEY_ENVS,
    ReconcileProvider,
    fetch_provider_rows,
)

__all__ = ["COMMANDS", "reconcile_command"]

LEDGER_METRICS = (
    "calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost",
    "unpriced_calls",
    "incomplete_calls",
)


@click.command("reconcile")
@click.option(
    "--provider",
    type=click.Choice(["openai", "anthropic"]),
    required=True,
    help="Whose organisation usage and cost APIs to read.",
)
@click.option("--since", required=True, help="Start day (UTC, inclusive), e.g. 2025-03-01.")
@click.option("--until", required=True, help="End day (UTC, exclusive), e.g. 2025-04-01.")
@click.option(
    "--admin-key-env",
    default=None,
    help="Environment variable holding the admin key "
    "(default OPENAI_ADMIN_KEY or ANTHROPIC_ADMIN_KEY).",
)
@click.option(
    "--base-url",
    default=None,
    help="The provider API's base URL (default the provider's own), e.g. a proxy.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--all", "show_all", is_flag=True, help="Show every day and model, not only differences."
)
@click.pass_context
def reconcile_command(
    ctx: click.Context,
    provider: str,
    since: str,
    until: str,
    admin_key_env: str | None,
    base_url: str | None,
    as_json: bool,
    show_all: bool,
) -> None:
    """Compare the provider's billed usage and cost with the ledger, day by model.

    Reads OpenAI's Usage and Costs API or Anthropic's Usage and Cost Admin API with
    an admin key, and the ledger's report by day and model for that provider; names
    the likely cause of each difference (calls not tracked, unpriced, tier or price,
    rounding).  Exits with status 1 when a difference needs looking into.

    \b
      llmledger reconcile --provider openai --since 2025-03-01 --until 2025-04-01
      llmledger reconcile --provider anthropic --since 2025-03-01 --until 2025-03-08 --json
    """
    env_name = admin_key_env or DEFAULT_KEY_ENVS[provider]
    admin_key = os.environ.get(env_name)
    if not admin_key:
        raise ConfigError(f"no admin key: set {env_name} (or name another with --admin-key-env)")
    ledger = ledger_from(ctx)
    query = build_query(
        now=datetime.now(UTC),
        by=["model"],
        every="day",
        tz="UTC",
        since=since,
        until=until,
        where=[f"provider={provider}"],
        metrics=list(LEDGER_METRICS),
    )
    assert query.since is not None and query.until is not None
    billed = fetch_provider_rows(
        cast(ReconcileProvider, provider),
        admin_key=admin_key,
        since=query.since,
        until=query.until,
        base_url=base_url,
    )
    recorded = ledger_rows(ledger.store.report(query).rows)
    differences = compare(billed, recorded)
    attention = [d for d in differences if not d.ok]
    if as_json:
        echo_json(
            {
                "provider": provider,
                "since": query.since.isoformat(),
                "until": query.until.isoformat(),
                "differences": [d.to_dict() for d in differences],
                "needs_attention": len(attention),
            }
        )
    else:
        shown = differences if show_all else attention
        print_table(
            f"{provider}: provider vs ledger, {query.since.date()} to {query.until.date()}",
            ["day", "model", "billed tokens", "ledger tokens", "billed $", "ledger $", "cause"],
            [
                [
                    d.day.isoformat(),
                    d.model,
                    None
                    if d.provider is None
                    else d.provider.input_tokens + d.provider.output_tokens,
                    None if d.ledger is None else d.ledger.input_tokens + d.ledger.output_tokens,
                    None if d.provider is None else d.provider.cost,
                    None if d.ledger is None else d.ledger.cost,
                    d.cause,
                ]
                for d in shown
            ],
            right=["billed tokens", "ledger tokens", "billed $", "ledger $"],
        )
        for d in attention:
            click.echo(f"{d.day} {d.model}: {d.cause}: {d.explanation}")
        if not attention:
            click.echo("The ledger agrees with the provider's bill (within rounding).")
    if attention:
        ctx.exit(1)


COMMANDS = [reconcile_command]
